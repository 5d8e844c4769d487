// What a worker's scan of one raw batch answers (workers/batch-scan.ts implements it): per-minute line protocol,
// top-K buckets, entity totals and the rows set aside for quarantine, each event id counted once within the batch.
import type { DuckDBConnection } from '../shared/parquet.js';

/** Events of one (entity, event type) in one event-time bucket starting at `bucketMs`. */
export interface BucketCount {
  entityId: string;
  eventType: string;
  bucketMs: number;
  count: number;
}

/** A line of one minuteLines() chunk. */
export interface PointRef {
  chunk: number;
  line: number;
}

/** The series and minute of one InfluxDB point. */
export interface PointKey {
  entityId: string;
  eventType: string;
  minuteMs: number;
}

export interface RejectedPoint extends PointKey {
  /** Quarantine reason of its events (e.g. series_limit). */
  reason: string;
  /** What InfluxDB answered. */
  detail: string;
}

/** A row of the batch file that is not counted, with the fields of an event line (contracts/event.ts EventLine). */
export interface QuarantineRow {
  /** 0-based position in the file. */
  rowNo: number;
  /** Quarantine reason (contracts/quarantine.ts). */
  reason: string;
  /** The field that broke the contract, for contract reasons. */
  field?: string;
  /** InfluxDB's answer, for rejected points. */
  detail?: string;
  eventId: string | null;
  entityId: string | null;
  eventType: string | null;
  timestampMs: number | null;
  value: number | null;
  /** JSON object text of the dims, or null. */
  dimsJson: string | null;
  ingestTimeMs: number | null;
  producer: string | null;
}

export interface EntityTotal {
  entityId: string;
  eventType: string;
  count: number;
  sum: number;
}

export interface LineProtocolOptions {
  /** Added to every point's minute start, in nanoseconds (0 ≤ offset < 60e9). */
  offsetNs: bigint;
  linesPerChunk: number;
}

export interface LineChunks {
  /** Newline-separated line protocol, at most linesPerChunk points each. */
  chunks: string[];
  points: number;
  /** Events the points count (after dedup within the batch and rejected points). */
  events: number;
}

/**
 * One downloaded batch, open in the engine. Every count follows the rules of workers/batch-scan-rules.ts: rows
 * that cannot be stored are left out, each dedup identity counts once within the batch (the first row in
 * DEDUP_ORDER_SQL order), and rejected points are skipped. Across batches an event id reaches the archive at most
 * once within SLUICE_DEDUP_WINDOW (ingest reserves it before its WAL append), so the scan never looks beyond its file.
 */
export interface BatchScan {
  /** Distinct dedup identities (producer, event id) among the storable rows. */
  distinctIds: number;
  /** Rows in the file (≥ distinctIds when a file repeats an id, or holds rows that cannot be stored). */
  rowCount: number;
  /** Rows that break the event contract and are never counted (see quarantineRows()). */
  unstorableRows: number;
  /** Event counts per (entity, event type, `bucketMs`-wide event-time bucket). Used for top-K buckets. */
  countBuckets(bucketMs: number): Promise<BucketCount[]>;
  /**
   * The per-minute aggregates as InfluxDB line protocol in the series layout of contracts/influx-series.ts
   * (`events_1m,entity_id=…,event_type=… count=<n>i,sum=…,min=…,max=… <minute ns + offsetNs>`), formatted by the
   * engine in request-sized chunks: the hot path creates no per-point JavaScript objects. Line `j` of chunk `i` is
   * the point pointsAt() returns for `{ chunk: i, line: j }`.
   */
  minuteLines(o: LineProtocolOptions): Promise<LineChunks>;
  /** The (entity, event type, minute) of points of the last minuteLines() call, by chunk and line, in the order asked. */
  pointsAt(refs: readonly PointRef[]): Promise<PointKey[]>;
  /** Leaves these points out of every later count (InfluxDB refused them); their events go to quarantineRows(). */
  rejectPoints(points: readonly RejectedPoint[]): Promise<void>;
  /** Count and sum per (entity, event type), ordered by entity then type. */
  entityTotals(): Promise<EntityTotal[]>;
  /**
   * Every row that is not counted for a reason other than dedup, in file order: rows that break the contract, and
   * the counted-once rows of rejected points.
   */
  quarantineRows(): Promise<QuarantineRow[]>;
  /**
   * Runs `fn` on the scan's engine connection with the counted rows (an SQL FROM item with columns entity_id,
   * event_type, ts, value: after dedup and rejected points), for stages that query the batch in the engine — the
   * dimension enrichment (workers/dimensions/). It runs once the scan's other queries ended, and they wait for it.
   */
  withCountedRows<T>(fn: (c: DuckDBConnection, rows: string) => Promise<T>): Promise<T>;
  /** Closes the engine connection once every query of the scan started before has ended; later ones are refused. */
  close(): Promise<void>;
}
