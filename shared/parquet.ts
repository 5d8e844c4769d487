// The Parquet engine of Sluice, behind one module: every Parquet write and read in the pipeline goes
// through these functions, so the rest of the code never knows the library (DuckDB's Node API; see the
// README for the benchmark that chose it over parquetjs-lite and parquet-wasm).
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { PermanentError } from './errors.js';
import { EVENT_LINE_COLUMNS } from './contracts/event.js';
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
      const parts = (await c.runAndReadAll(`SELECT (ts // 3600000) AS h, count(*)::BIGINT AS n, min(ts) AS lo, max(ts) AS hi FROM staged GROUP BY 1 ORDER BY 1`)).getRowsJS();
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

async function readBatchTable(c: DuckDBConnection, file: string): Promise<void> {
  try {
    await c.run(`CREATE TEMP TABLE batch AS SELECT event_id, entity_id, event_type, epoch_ms(event_time) AS ts, value FROM read_parquet(${sqlString(file)})`);
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

/** The batch's rows minus `excluded` ids, one row per event id (the rule both aggregate() and countBuckets() follow). */
const UNIQUE_EVENTS_CTE = `unique_events AS (
            SELECT * FROM batch ANTI JOIN excluded USING (event_id)
            QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ts, entity_id, event_type, value) = 1
          )`;

async function loadExcluded(c: DuckDBConnection, excluded: readonly string[]): Promise<void> {
  await c.run('CREATE OR REPLACE TEMP TABLE excluded (event_id VARCHAR)');
  if (excluded.length) {
    const app = await c.createAppender('excluded', 'main', 'temp'); // temp tables live in catalog temp, schema main
    for (const id of excluded) { app.appendVarchar(id); app.endRow(); }
    app.closeSync();
  }
}

export interface BatchScan {
  /** Distinct event ids of the batch, in a stable order. */
  eventIds: string[];
  /** Rows in the file (≥ eventIds.length when a file repeats an id). */
  rowCount: number;
  /**
   * Aggregates per minute, counting each event id once and skipping `excluded` ids.
   * Within a file, the first row of an id in (ingest_time, entity_id, event_time) order wins.
   */
  aggregate(excluded: readonly string[]): Promise<MinuteAggregate[]>;
  /**
   * Event counts per (entity, event type, `bucketMs`-wide event-time bucket), with the same id rules as
   * aggregate(): each id once, `excluded` ids skipped. Used for top-K buckets finer than a minute.
   */
  countBuckets(excluded: readonly string[], bucketMs: number): Promise<BucketCount[]>;
  close(): void;
}

/**
 * Opens a downloaded batch for a worker: validates that it is Parquet with the event columns, returns its
 * ids (for cross-batch dedup claims) and an aggregate() that runs the per-minute GROUP BY in the engine.
 */
export async function scanBatch(file: string): Promise<BatchScan> {
  if (!instance) throw new Error('Parquet engine not opened: call openEngine() first');
  const c = await (await instance).connect();
  try {
    await readBatchTable(c, file);
    const rowCount = Number((await c.runAndReadAll('SELECT count(*)::BIGINT FROM batch')).getRowsJS()[0]![0]);
    const ids = (await c.runAndReadAll('SELECT DISTINCT event_id FROM batch ORDER BY event_id')).getColumnsJS()[0] as string[] | undefined;
    return {
      eventIds: ids ?? [],
      rowCount,
      async aggregate(excluded) {
        await loadExcluded(c, excluded);
        const rows = (await c.runAndReadAll(`
          WITH ${UNIQUE_EVENTS_CTE}
          SELECT entity_id, event_type, (ts // 60000) * 60000 AS minute, count(*)::BIGINT, sum(value), min(value), max(value)
          FROM unique_events GROUP BY ALL`)).getRowsJS();
        return rows.map(([entityId, eventType, minute, count, sum, min, max]) => ({
          entityId: entityId as string, eventType: eventType as string, minuteMs: Number(minute), count: Number(count),
          sum: sum as number, min: min as number, max: max as number,
        }));
      },
      async countBuckets(excluded, bucketMs) {
        if (!Number.isInteger(bucketMs) || bucketMs <= 0) throw new RangeError(`bucketMs must be a positive integer, got ${bucketMs}`);
        await loadExcluded(c, excluded);
        const rows = (await c.runAndReadAll(`
          WITH ${UNIQUE_EVENTS_CTE}
          SELECT entity_id, event_type, (ts // ${bucketMs}) * ${bucketMs} AS bucket, count(*)::BIGINT
          FROM unique_events GROUP BY ALL`)).getRowsJS();
        return rows.map(([entityId, eventType, bucket, count]) => ({
          entityId: entityId as string, eventType: eventType as string, bucketMs: Number(bucket), count: Number(count),
        }));
      },
      close() { c.closeSync(); },
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
