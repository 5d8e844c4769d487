// The Parquet engine of Sluice, behind one module: every Parquet write and read in the pipeline goes
// through these functions, so the rest of the code never knows the library (DuckDB's Node API; see the
// README for the benchmark that chose it over parquetjs-lite and parquet-wasm).
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { PermanentError } from './errors.js';
import { EVENT_LINE_COLUMNS, EVENT_TYPE_PATTERN, VALUE_MAX_ABS } from './contracts/event.js';
import { PARQUET_SCHEMA_VERSION, partitionOf, type Partition } from './contracts/parquet-schema.js';

export interface EngineOptions {
  /** Folder for DuckDB spill files. */
  tempDir: string;
  /** Memory DuckDB may use in this process, e.g. "256MB". */
  memoryLimit?: string;
  threads?: number;
}

let instance: Promise<DuckDBInstance> | undefined;

/** Opens (once per process) the embedded engine. */
export function openEngine(opts: EngineOptions): Promise<DuckDBInstance> {
  if (!instance) {
    mkdirSync(opts.tempDir, { recursive: true });
    instance = DuckDBInstance.create(':memory:', {
      temp_directory: opts.tempDir,
      memory_limit: opts.memoryLimit ?? '512MB',
      threads: String(opts.threads ?? 2),
    });
  }
  return instance;
}

async function withConnection<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
  if (!instance) throw new Error('Parquet engine not opened: call openEngine() first');
  const c = await (await instance).connect();
  try {
    return await fn(c);
  } finally {
    c.closeSync();
  }
}

const sqlString = (s: string) => `'${s.replaceAll("'", "''")}'`;
const fileList = (files: readonly string[]) => `[${files.map(sqlString).join(', ')}]`;

export interface WrittenBatch {
  partition: Partition;
  file: string;
  eventCount: number;
  minEventTimeMs: number;
  maxEventTimeMs: number;
}

/** Rows per Parquet row group: large enough for fast scans, small enough that min/max stats let readers skip. */
export const ROW_GROUP_SIZE = 122_880;

/**
 * Converts staged event lines (NDJSON written by ingest, see contracts/event.ts) into one Parquet file
 * per event-time hour partition, sorted by entity_id then event_time, zstd-compressed, with statistics.
 * Output names are `<outDir>/<dt>_<hour>.parquet`; the caller picks the final S3 key.
 */
export async function writeEventBatches(lineFiles: readonly string[], outDir: string): Promise<WrittenBatch[]> {
  mkdirSync(outDir, { recursive: true });
  return withConnection(async (c) => {
    await c.run(`CREATE TEMP TABLE staged AS SELECT * FROM read_json(${fileList(lineFiles)}, format = 'newline_delimited', columns = ${EVENT_LINE_COLUMNS})`);
    try {
      const parts = (
        await c.runAndReadAll(`SELECT (ts // 3600000) AS h, count(*)::BIGINT AS n, min(ts) AS lo, max(ts) AS hi FROM staged GROUP BY 1 ORDER BY 1`)
      ).getRowsJS();
      const out: WrittenBatch[] = [];
      for (const [h, n, lo, hi] of parts as [bigint, bigint, bigint, bigint][]) {
        const partition = partitionOf(Number(h) * 3_600_000);
        const file = path.join(outDir, `${partition.dt}_${partition.hour}.parquet`);
        await c.run(`COPY (
            SELECT i AS event_id, n AS entity_id, t AS event_type, epoch_ms(ts)::TIMESTAMP_MS AS event_time, v AS value,
                   d AS dims, epoch_ms(it)::TIMESTAMP_MS AS ingest_time, p AS producer, ${PARQUET_SCHEMA_VERSION}::INTEGER AS schema_version
            FROM staged WHERE ts // 3600000 = ${h} ORDER BY entity_id, event_time, event_id
          ) TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${ROW_GROUP_SIZE})`);
        out.push({ partition, file, eventCount: Number(n), minEventTimeMs: Number(lo), maxEventTimeMs: Number(hi) });
      }
      return out;
    } finally {
      await c.run('DROP TABLE IF EXISTS staged');
    }
  });
}

/** A per-minute aggregate of one (entity, event type). */
export interface MinuteAggregate {
  entityId: string;
  eventType: string;
  minuteMs: number;
  count: number;
  sum: number;
  min: number;
  max: number;
}

// Rows a worker can never store, and why: the first broken rule as `<quarantine reason>:<field>` (NULL for a good
// row). Ingest enforces the same rules (contracts/event.ts); files written before those rules, or by another writer,
// still reach workers, and one such row must never stop its batch. Control characters break line-oriented formats;
// InfluxDB 1.x line protocol cannot carry a tag value that ends in a backslash (it reads `\ ` as an escaped space);
// values beyond ±VALUE_MAX_ABS (and NaN, ±Infinity) would let a sum overflow to a value InfluxDB cannot parse.
const CONTROL_SQL = `'[\\x00-\\x1f\\x7f]'`;
// One regular-expression pass over the three strings for every row; which field it was is worked out only for bad rows.
const UNSTORABLE_REASON_SQL = `CASE
    WHEN event_id IS NULL OR event_id = '' THEN 'not_an_event_line:event_id'
    WHEN producer IS NULL THEN 'not_an_event_line:producer'
    WHEN entity_id IS NULL OR entity_id = '' THEN 'not_an_event_line:entity_id'
    WHEN regexp_matches(event_id || producer || entity_id, ${CONTROL_SQL}) THEN CASE
      WHEN regexp_matches(event_id, ${CONTROL_SQL}) THEN 'control_character:event_id'
      WHEN regexp_matches(producer, ${CONTROL_SQL}) THEN 'control_character:producer'
      ELSE 'control_character:entity_id' END
    WHEN ends_with(entity_id, chr(92)) THEN 'unstorable_tag:entity_id'
    WHEN event_type IS NULL THEN 'not_an_event_line:event_type'
    WHEN NOT regexp_full_match(event_type, ${sqlString(EVENT_TYPE_PATTERN.source)}) THEN 'invalid_event_type:event_type'
    WHEN event_time IS NULL THEN 'not_an_event_line:event_time'
    WHEN NOT coalesce(abs(value) <= ${VALUE_MAX_ABS}, false) THEN 'value_out_of_range:value'
  END`;

/**
 * The identity dedup works on: an event id is unique per producer, so one producer's ids never suppress another's.
 * chr(31) cannot occur in either part (validated strings hold no control characters; rows that do are quarantined).
 */
const DEDUP_ID_SQL = `coalesce(producer, '') || chr(31) || event_id`;

async function readBatchTable(c: DuckDBConnection, file: string): Promise<void> {
  try {
    await c.run(`CREATE TEMP TABLE batch AS SELECT file_row_number AS row_no, ${DEDUP_ID_SQL} AS uid, entity_id, event_type,
      epoch_ms(event_time) AS ts, value, ${UNSTORABLE_REASON_SQL} AS reason FROM read_parquet(${sqlString(file)}, file_row_number = true)`);
  } catch (err) {
    throw new PermanentError(`${file} is not a readable Sluice Parquet batch: ${(err as Error).message}`, 'batch_corrupt', { cause: err });
  }
}

/** Events of one (entity, event type) in one event-time bucket starting at `bucketMs`. */
export interface BucketCount {
  entityId: string;
  eventType: string;
  bucketMs: number;
  count: number;
}

async function loadExcluded(c: DuckDBConnection, excluded: readonly string[]): Promise<void> {
  await c.run('CREATE OR REPLACE TEMP TABLE excluded (uid VARCHAR)');
  if (excluded.length) {
    const app = await c.createAppender('excluded', 'main', 'temp'); // temp tables live in catalog temp, schema main
    for (const id of excluded) {
      app.appendVarchar(id);
      app.endRow();
    }
    app.closeSync();
  }
}

export interface BatchScan {
  /** Distinct dedup identities (producer, event id) among the storable rows. */
  distinctIds: number;
  /** Rows in the file (≥ distinctIds when a file repeats an id, or holds rows that cannot be stored). */
  rowCount: number;
  /** Rows that break the event contract and are never counted (see quarantineRows()). */
  unstorableRows: number;
  /**
   * The distinct dedup identities (`<producer>\u001f<event id>`) of the storable rows in a stable order, joined by
   * newlines into chunks of at most `size`: ready to send as one argument each (ids hold no control characters),
   * without one JavaScript string per id.
   */
  idChunks(size: number): Promise<string[]>;
  /**
   * Aggregates per minute, counting each dedup identity once and skipping `excluded` identities and rejected points.
   * Within a file, the first row of an identity in (event_time, entity_id, event_type, value) order wins.
   */
  aggregate(excluded: readonly string[]): Promise<MinuteAggregate[]>;
  /**
   * Event counts per (entity, event type, `bucketMs`-wide event-time bucket), with the same rules as
   * aggregate(). Used for top-K buckets finer than a minute.
   */
  countBuckets(excluded: readonly string[], bucketMs: number): Promise<BucketCount[]>;
  /**
   * The same per-minute aggregates as aggregate(), formatted by the engine as InfluxDB line protocol
   * (`<measurement>,<entity tag>=…,<type tag>=… count=<n>i,sum=…,min=…,max=… <minute ns + offsetNs>`), in
   * request-sized chunks: the hot path creates no per-point JavaScript objects. Line `j` of chunk `i` is the point
   * pointsAt() returns for `{ chunk: i, line: j }`.
   */
  minuteLines(excluded: readonly string[], o: LineProtocolOptions): Promise<LineChunks>;
  /** The (entity, event type, minute) of points of the last minuteLines() call, by chunk and line, in the order asked. */
  pointsAt(refs: readonly PointRef[]): Promise<PointKey[]>;
  /** Leaves these points out of every later aggregate (InfluxDB refused them); their events go to quarantineRows(). */
  rejectPoints(points: readonly RejectedPoint[]): Promise<void>;
  /** Count and sum per (entity, event type) with the same rules, ordered by entity then type. */
  entityTotals(excluded: readonly string[]): Promise<EntityTotal[]>;
  /**
   * Every row that is not counted for a reason other than dedup, in file order: rows that break the contract, and
   * the counted-once rows of rejected points (with `excluded` as for the aggregates).
   */
  quarantineRows(excluded: readonly string[]): Promise<QuarantineRow[]>;
  close(): void;
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
  measurement: string;
  entityTag: string;
  typeTag: string;
  /** Added to every point's minute start, in nanoseconds (0 ≤ offset < 60e9). */
  offsetNs: bigint;
  linesPerChunk: number;
}

export interface LineChunks {
  /** Newline-separated line protocol, at most linesPerChunk points each. */
  chunks: string[];
  points: number;
  /** Events the points count (after dedup and exclusions). */
  events: number;
}

/**
 * InfluxDB 1.x line-protocol escaping of a tag value, as SQL: comma, equals sign and space get a backslash. A
 * backslash itself is not an escape character in 1.x tag values (checked on InfluxDB 1.6: `\\` is stored as two
 * backslashes, and `a\,b` written as `a\\,b` reads back as `a\,b`), so it is written as it is; the one value this
 * cannot express, a trailing backslash, never gets here (UNSTORABLE_REASON_SQL). Control characters never get here.
 */
const tagSql = (col: string) => `replace(replace(replace(${col}, ',', '\\,'), '=', '\\='), ' ', '\\ ')`;

/**
 * Opens a downloaded batch for a worker: validates that it is Parquet with the event columns, sets aside rows that
 * can never be stored, returns the dedup ids of the rest (for cross-batch claims) and runs the per-minute GROUP BYs
 * in the engine.
 */
export async function scanBatch(file: string): Promise<BatchScan> {
  if (!instance) throw new Error('Parquet engine not opened: call openEngine() first');
  const c = await (await instance).connect();
  try {
    await readBatchTable(c, file);
    const [[rows, bad]] = (await c.runAndReadAll('SELECT count(*)::BIGINT, count(reason)::BIGINT FROM batch')).getRowsJS() as [[bigint, bigint]];
    const rowCount = Number(rows);
    const unstorableRows = Number(bad);
    // The storable rows; a copy only when some row is not (rare), so the hot path reads the batch table itself.
    let good = 'batch';
    if (unstorableRows > 0) {
      await c.run('CREATE TEMP TABLE good AS SELECT * FROM batch WHERE reason IS NULL');
      good = 'good';
    }
    const distinctIds = Number((await c.runAndReadAll(`SELECT count(DISTINCT uid)::BIGINT FROM ${good}`)).getRowsJS()[0]![0]);
    // The rows to count: each id once, minus ids excluded by other batches. Built once per exclusion set and shared
    // by every aggregate; when the file repeats no id and nothing is excluded it is the storable rows themselves.
    let prepared: { excluded: readonly string[]; table: string } | undefined;
    const uniqueEvents = async (excluded: readonly string[]): Promise<string> => {
      if (prepared?.excluded === excluded) return prepared.table;
      let table = good;
      if (excluded.length > 0 || distinctIds !== rowCount - unstorableRows) {
        await loadExcluded(c, excluded);
        await c.run(`CREATE OR REPLACE TEMP TABLE unique_events AS
          SELECT * FROM ${good} ANTI JOIN excluded USING (uid)
          QUALIFY row_number() OVER (PARTITION BY uid ORDER BY ts, entity_id, event_type, value) = 1`);
        table = 'unique_events';
      }
      prepared = { excluded, table };
      return table;
    };
    // Points InfluxDB refused: their events are left out of everything counted afterwards.
    let rejected = 0;
    const counted = async (excluded: readonly string[]): Promise<string> => {
      const from = await uniqueEvents(excluded);
      return rejected === 0
        ? from
        : `(SELECT u.* FROM ${from} u ANTI JOIN rejected_points r ON u.entity_id = r.entity_id AND u.event_type = r.event_type AND u.ts // 60000 = r.m)`;
    };
    let linesPerChunk = 1;
    return {
      distinctIds,
      rowCount,
      unstorableRows,
      async idChunks(size) {
        const n = Math.max(1, Math.floor(size));
        const [chunks = []] = (
          await c.runAndReadAll(`
          SELECT string_agg(uid, chr(10) ORDER BY uid) FROM (
            SELECT uid, (row_number() OVER (ORDER BY uid) - 1) // ${n} AS k FROM (SELECT DISTINCT uid FROM ${good})
          ) GROUP BY k ORDER BY k`)
        ).getColumnsJS() as [string[]];
        return chunks;
      },
      async aggregate(excluded) {
        const from = await counted(excluded);
        const rows = (
          await c.runAndReadAll(`
          SELECT entity_id, event_type, (ts // 60000) * 60000 AS minute, count(*)::BIGINT, sum(value), min(value), max(value)
          FROM ${from} GROUP BY ALL`)
        ).getRowsJS();
        return rows.map(([entityId, eventType, minute, count, sum, min, max]) => ({
          entityId: entityId as string,
          eventType: eventType as string,
          minuteMs: Number(minute),
          count: Number(count),
          sum: sum as number,
          min: min as number,
          max: max as number,
        }));
      },
      async minuteLines(excluded, o) {
        if (o.offsetNs < 0n || o.offsetNs >= 60_000_000_000n) throw new RangeError(`offsetNs must be in [0, 60e9), got ${o.offsetNs}`);
        const from = await counted(excluded);
        linesPerChunk = Math.max(1, Math.floor(o.linesPerChunk));
        // Points are numbered in a fixed order (rn) and kept, so a line InfluxDB refuses maps back to its series.
        await c.run(`CREATE OR REPLACE TEMP TABLE points AS
          SELECT row_number() OVER (ORDER BY entity_id, event_type, m) - 1 AS rn, * FROM (
            SELECT entity_id, event_type, ts // 60000 AS m, count(*) AS n, sum(value) AS s, min(value) AS lo, max(value) AS hi
            FROM ${from} GROUP BY ALL)`);
        const rows = (
          await c.runAndReadAll(`
          WITH lines AS (
            SELECT rn, n,
              '${o.measurement},${o.entityTag}=' || ${tagSql('entity_id')} || ',${o.typeTag}=' || ${tagSql('event_type')}
              || ' count=' || n || 'i,sum=' || s || ',min=' || lo || ',max=' || hi || ' ' || (m * 60000000000 + ${o.offsetNs}) AS line
            FROM points
          )
          SELECT string_agg(line, chr(10) ORDER BY rn) AS body, count(*)::INTEGER AS points, sum(n)::DOUBLE AS events
          FROM lines GROUP BY rn // ${linesPerChunk} ORDER BY rn // ${linesPerChunk}`)
        ).getColumnsJS();
        const [bodies = [], points = [], events = []] = rows as [string[], number[], number[]];
        return { chunks: bodies, points: points.reduce((a, b) => a + b, 0), events: events.reduce((a, b) => a + b, 0) };
      },
      async pointsAt(refs) {
        if (!refs.length) return [];
        const rns = refs.map((r) => r.chunk * linesPerChunk + r.line);
        const [found = [], entities = [], types = [], minutes = []] = (
          await c.runAndReadAll(`SELECT rn::DOUBLE, entity_id, event_type, (m * 60000)::DOUBLE FROM points WHERE rn IN (${rns.join(', ')})`)
        ).getColumnsJS() as [number[], string[], string[], number[]];
        const at = new Map(found.map((rn, i) => [rn, { entityId: entities[i]!, eventType: types[i]!, minuteMs: minutes[i]! }]));
        return rns.map((rn, i) => {
          const p = at.get(rn);
          if (!p) throw new RangeError(`no point at chunk ${refs[i]!.chunk}, line ${refs[i]!.line} of the last minuteLines()`);
          return p;
        });
      },
      async rejectPoints(points) {
        if (!points.length) return;
        await c.run('CREATE TEMP TABLE IF NOT EXISTS rejected_points (entity_id VARCHAR, event_type VARCHAR, m BIGINT, reason VARCHAR, detail VARCHAR)');
        const app = await c.createAppender('rejected_points', 'main', 'temp');
        for (const p of points) {
          app.appendVarchar(p.entityId);
          app.appendVarchar(p.eventType);
          app.appendBigInt(BigInt(Math.floor(p.minuteMs / 60_000)));
          app.appendVarchar(p.reason);
          app.appendVarchar(p.detail);
          app.endRow();
        }
        app.closeSync();
        rejected += points.length;
      },
      async entityTotals(excluded) {
        const from = await counted(excluded);
        const [entities = [], types = [], counts = [], sums = []] = (
          await c.runAndReadAll(`
          SELECT entity_id, event_type, count(*)::INTEGER, sum(value) FROM ${from} GROUP BY ALL ORDER BY entity_id, event_type`)
        ).getColumnsJS() as [string[], string[], number[], number[]];
        return entities.map((entityId, i) => ({ entityId, eventType: types[i]!, count: counts[i]!, sum: sums[i]! }));
      },
      async countBuckets(excluded, bucketMs) {
        if (!Number.isInteger(bucketMs) || bucketMs <= 0) throw new RangeError(`bucketMs must be a positive integer, got ${bucketMs}`);
        const from = await counted(excluded);
        const rows = (
          await c.runAndReadAll(`
          SELECT entity_id, event_type, (ts // ${bucketMs}) * ${bucketMs} AS bucket, count(*)::BIGINT
          FROM ${from} GROUP BY ALL`)
        ).getRowsJS();
        return rows.map(([entityId, eventType, bucket, count]) => ({
          entityId: entityId as string,
          eventType: eventType as string,
          bucketMs: Number(bucket),
          count: Number(count),
        }));
      },
      async quarantineRows(excluded) {
        if (unstorableRows === 0 && rejected === 0) return [];
        const parts = ['SELECT row_no, reason, NULL AS detail FROM batch WHERE reason IS NOT NULL'];
        if (rejected > 0) {
          const from = await uniqueEvents(excluded);
          parts.push(`SELECT u.row_no, r.reason, r.detail FROM ${from} u
            JOIN rejected_points r ON u.entity_id = r.entity_id AND u.event_type = r.event_type AND u.ts // 60000 = r.m`);
        }
        const rows = (
          await c.runAndReadAll(`
          SELECT q.row_no::DOUBLE, q.reason, q.detail, f.event_id, f.entity_id, f.event_type, epoch_ms(f.event_time)::DOUBLE, f.value,
                 CASE WHEN f.dims IS NULL THEN NULL ELSE to_json(f.dims)::VARCHAR END, epoch_ms(f.ingest_time)::DOUBLE, f.producer
          FROM (${parts.join(' UNION ALL ')}) q
          JOIN read_parquet(${sqlString(file)}, file_row_number = true) f ON f.file_row_number = q.row_no
          ORDER BY q.row_no`)
        ).getRowsJS();
        return rows.map(([rowNo, reason, detail, eventId, entityId, eventType, ts, value, dims, it, producer]) => {
          const [code, field] = String(reason).split(':');
          return {
            rowNo: Number(rowNo),
            reason: code!,
            ...(detail === null ? { field } : { detail: detail as string }),
            eventId: eventId as string | null,
            entityId: entityId as string | null,
            eventType: eventType as string | null,
            timestampMs: ts as number | null,
            value: value as number | null,
            dimsJson: dims as string | null,
            ingestTimeMs: it as number | null,
            producer: producer as string | null,
          };
        });
      },
      close() {
        c.closeSync();
      },
    };
  } catch (err) {
    c.closeSync();
    throw err;
  }
}

/** Runs a read-only query over Parquet files and returns plain rows (for audits, tests and analysts' checks). */
export async function queryParquet(sql: string): Promise<Record<string, unknown>[]> {
  return withConnection(async (c) => (await c.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[]);
}

/** A SQL list literal of file paths, for queries passed to queryParquet. */
export const parquetFiles = fileList;

// ---- cold tier: rollup files, compaction, audits ---------------------------------------------

/** One rollup row: the aggregate of one (entity, event type) over the hour or day starting at `periodMs`. */
export interface RollupRow {
  entityId: string;
  eventType: string;
  periodMs: number;
  count: number;
  sum: number;
  min: number;
  max: number;
}

const ROLLUP_TABLE_DDL = 'entity_id VARCHAR, event_type VARCHAR, period_ms BIGINT, count BIGINT, sum DOUBLE, min DOUBLE, max DOUBLE';

/**
 * Writes a rollup file (columns of contracts/cold-layout.ts ROLLUP_COLUMNS, sorted by entity, type, period).
 * With `merge`, rows of an existing rollup file are kept unless their period lies in [merge.replaceFromMs,
 * merge.replaceToMs) — the periods `rows` recompute — so a file is rewritten whole and stays idempotent.
 */
export async function writeRollupFile(
  rows: readonly RollupRow[],
  file: string,
  merge?: { file: string; replaceFromMs: number; replaceToMs: number },
): Promise<number> {
  mkdirSync(path.dirname(file), { recursive: true });
  return withConnection(async (c) => {
    await c.run(`CREATE OR REPLACE TEMP TABLE rollup_rows (${ROLLUP_TABLE_DDL})`);
    try {
      const app = await c.createAppender('rollup_rows', 'main', 'temp');
      for (const r of rows) {
        app.appendVarchar(r.entityId);
        app.appendVarchar(r.eventType);
        app.appendBigInt(BigInt(r.periodMs));
        app.appendBigInt(BigInt(r.count));
        app.appendDouble(r.sum);
        app.appendDouble(r.min);
        app.appendDouble(r.max);
        app.endRow();
      }
      app.closeSync();
      const kept = merge
        ? `UNION ALL SELECT entity_id, event_type, period_start::TIMESTAMP_MS, count::BIGINT, sum::DOUBLE, min::DOUBLE, max::DOUBLE FROM read_parquet(${sqlString(merge.file)})
           WHERE NOT (epoch_ms(period_start) >= ${Math.trunc(merge.replaceFromMs)} AND epoch_ms(period_start) < ${Math.trunc(merge.replaceToMs)})`
        : '';
      await c.run(`COPY (SELECT * FROM (SELECT entity_id, event_type, epoch_ms(period_ms)::TIMESTAMP_MS AS period_start, count, sum, min, max FROM rollup_rows ${kept}) ORDER BY entity_id, event_type, period_start)
        TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${ROW_GROUP_SIZE})`);
      const n = (await c.runAndReadAll(`SELECT count(*)::BIGINT FROM read_parquet(${sqlString(file)})`)).getRowsJS()[0]![0];
      return Number(n);
    } finally {
      await c.run('DROP TABLE IF EXISTS rollup_rows');
    }
  });
}

/** Rollup rows of one series over [fromMs, toMs) from local rollup files (periods starting in the range). */
export async function readRollups(files: readonly string[], q: { entityId: string; eventType: string; fromMs: number; toMs: number }): Promise<RollupRow[]> {
  if (!files.length) return [];
  const rows = await queryParquet(`SELECT epoch_ms(period_start) AS p, count::BIGINT AS c, sum AS s, min AS mn, max AS mx FROM read_parquet(${fileList(files)})
    WHERE entity_id = ${sqlString(q.entityId)} AND event_type = ${sqlString(q.eventType)}
      AND epoch_ms(period_start) >= ${Math.trunc(q.fromMs)} AND epoch_ms(period_start) < ${Math.trunc(q.toMs)} ORDER BY p`);
  return rows.map((r) => ({
    entityId: q.entityId,
    eventType: q.eventType,
    periodMs: Number(r.p),
    count: Number(r.c),
    sum: r.s as number,
    min: r.mn as number,
    max: r.mx as number,
  }));
}

/** What a set of event files holds, computed the same way on both sides of a copy: rows and an id checksum. */
export interface ArchiveFingerprint {
  rows: number;
  /** md5 over every row's event_id in sorted order (duplicates included), newline-separated. */
  idChecksum: string;
}

const FINGERPRINT_SQL = (from: string) =>
  `SELECT count(*)::BIGINT AS rows, coalesce(md5(string_agg(event_id, chr(10) ORDER BY event_id)), '') AS ids FROM ${from}`;

/** Reads any mix of event-file schema versions (columns matched by name; missing optional ones are NULL). */
const eventFiles = (files: readonly string[]) => `read_parquet(${fileList(files)}, union_by_name = true)`;

export async function fingerprintEventFiles(files: readonly string[]): Promise<ArchiveFingerprint> {
  const [r] = await queryParquet(FINGERPRINT_SQL(eventFiles(files)));
  return { rows: Number(r!.rows), idChecksum: String(r!.ids) };
}

/**
 * Merges event files of any readable schema version into one file with every column of the current
 * contract (EVENT_COLUMNS; columns absent from all inputs are written as NULL), sorted by entity_id,
 * event_time, event_id, zstd. Every row is kept (no dedup: the archive stays a faithful copy).
 * Returns the fingerprint of the inputs.
 */
export async function compactEventFiles(
  inputs: readonly string[],
  out: string,
  columns: readonly { name: string; duckdbType: string }[],
): Promise<ArchiveFingerprint> {
  if (!inputs.length) throw new RangeError('compactEventFiles needs at least one input file');
  mkdirSync(path.dirname(out), { recursive: true });
  return withConnection(async (c) => {
    const present = new Set((await c.runAndReadAll(`DESCRIBE SELECT * FROM ${eventFiles(inputs)}`)).getRowObjectsJS().map((r) => String(r.column_name)));
    const select = columns
      .map((col) => (present.has(col.name) ? `"${col.name}"::${col.duckdbType} AS "${col.name}"` : `NULL::${col.duckdbType} AS "${col.name}"`))
      .join(', ');
    await c.run(`COPY (SELECT ${select} FROM ${eventFiles(inputs)} ORDER BY entity_id, event_time, event_id)
      TO ${sqlString(out)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${ROW_GROUP_SIZE})`);
    const r = (await c.runAndReadAll(FINGERPRINT_SQL(eventFiles(inputs)))).getRowObjectsJS()[0]!;
    return { rows: Number(r.rows), idChecksum: String(r.ids) };
  });
}

/** Count and sum of one (entity, event type) from the archive, each event id once. */
export interface ArchiveTotal {
  entityId: string;
  eventType: string;
  count: number;
  sum: number;
}

/**
 * Recomputes totals per (entity, event type) over event times in [fromMs, toMs) from event files of any
 * schema version, the way workers count: rows that cannot be stored left out, each (producer, event id) once
 * (first row in event_time, entity_id, event_type, value order, the rule workers follow within a batch).
 */
export async function archiveTotals(
  files: readonly string[],
  q: { fromMs: number; toMs: number; entityId?: string; eventType?: string },
): Promise<ArchiveTotal[]> {
  if (!files.length) return [];
  const filters = [
    `epoch_ms(event_time) >= ${Math.trunc(q.fromMs)}`,
    `epoch_ms(event_time) < ${Math.trunc(q.toMs)}`,
    ...(q.entityId !== undefined ? [`entity_id = ${sqlString(q.entityId)}`] : []),
    ...(q.eventType !== undefined ? [`event_type = ${sqlString(q.eventType)}`] : []),
  ].join(' AND ');
  const rows = await queryParquet(`
    WITH unique_events AS (
      SELECT event_id, entity_id, event_type, value FROM ${eventFiles(files)} WHERE ${filters} AND (${UNSTORABLE_REASON_SQL}) IS NULL
      QUALIFY row_number() OVER (PARTITION BY ${DEDUP_ID_SQL} ORDER BY event_time, entity_id, event_type, value) = 1
    )
    SELECT entity_id, event_type, count(*)::BIGINT AS c, sum(value) AS s FROM unique_events GROUP BY ALL ORDER BY entity_id, event_type`);
  return rows.map((r) => ({ entityId: String(r.entity_id), eventType: String(r.event_type), count: Number(r.c), sum: Number(r.s) }));
}
