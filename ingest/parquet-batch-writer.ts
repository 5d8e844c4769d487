// Converts a sealed WAL segment (staged event lines, contracts/event.ts) into the raw Parquet batches of
// contracts/parquet-schema.ts: one file per event-time hour, every column of the current schema version, sorted
// by entity_id, event_time, event_id. Memory stays bounded whatever the segment size (see writeEventBatches).
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { EVENT_LINE_COLUMNS } from '../shared/contracts/event-line.js';
import { PARQUET_SCHEMA_VERSION, columnsOf, partitionOf, type Partition } from '../shared/contracts/parquet-schema.js';
import { castColumns, copyToParquet, parquetFiles, sqlIdent, sqlString, withConnection } from '../shared/parquet.js';

export interface WrittenBatch {
  partition: Partition;
  file: string;
  eventCount: number;
  minEventTimeMs: number;
  maxEventTimeMs: number;
}

/**
 * The engine settings of an ingest node (ingest/main.ts opens the engine with them). One engine thread: conversion
 * runs beside the request path and must not starve it of CPU; 128 MB: a segment of any size converts within it (see
 * writeEventBatches), and the process stays well inside its memory limit (deploy/k8s/ingest.yaml).
 */
export const INGEST_ENGINE = { memoryLimit: '128MB', threads: 1 } as const;

/** Where each Parquet column comes from in a staged event line (EventLine keys), before the cast to its type. */
const FROM_LINE: Readonly<Record<string, string>> = {
  event_id: 'i',
  entity_id: 'n',
  event_type: 't',
  // Epoch milliseconds as instants (microseconds since the epoch, UTC), whatever the engine's session time zone.
  event_time: 'make_timestamptz(ts * 1000)',
  value: 'v',
  dims: 'd',
  ingest_time: 'make_timestamptz(it * 1000)',
  producer: 'p',
  schema_version: String(PARQUET_SCHEMA_VERSION),
  // Staged lines carry no session (the event contract has none yet): the column is written, empty.
  session_id: 'NULL',
};

/** Every column of the current schema version, from the contract. */
const COLUMNS = columnsOf(PARQUET_SCHEMA_VERSION);

/** The staged line's fields as those columns. */
const FROM_LINE_COLUMNS = COLUMNS.map((col) => {
  const from = FROM_LINE[col.name];
  if (from === undefined) {
    throw new Error(
      `Parquet column ${col.name} (schema version ${PARQUET_SCHEMA_VERSION}) has no source in the staged event line: add it to FROM_LINE in ingest/parquet-batch-writer.ts`,
    );
  }
  return `${from}::${col.duckdbType} AS ${sqlIdent(col.name)}`;
});

/**
 * Rows per row group of the scratch file: the Parquet writer holds one row group in memory, and a full-size one
 * (ROW_GROUP_SIZE) of wide rows took most of a 128 MB engine before the sort even began.
 */
const SCRATCH_ROW_GROUP_SIZE = 16_384;

/** Sort order of a raw batch (documented in contracts/parquet-schema.ts: readers skip row groups by entity). */
const BATCH_ORDER = 'entity_id, event_time, event_id';

/** The conversion in progress (or settled); the next one starts when it ends. */
let converting: Promise<unknown> = Promise.resolve();

/**
 * Converts staged event lines into one Parquet file per event-time hour partition, zstd-compressed, with
 * statistics. Output names are `<outDir>/<dt>_<hour>.parquet`; the caller picks the final S3 key.
 *
 * Memory stays within the engine's limit whatever SLUICE_FLUSH_MAX_BYTES is: the lines are streamed into an
 * uncompressed scratch Parquet file in small row groups (no table of the whole segment in memory), each hour is
 * then sorted from that file (DuckDB spills a sort beyond its memory limit to its temp directory), and a process
 * converts one segment at a time — uploads and manifests still run SLUICE_UPLOAD_CONCURRENCY at once. Two 128 MiB
 * conversions side by side needed more than ingest's 128 MB engine limit; one at a time costs no throughput on
 * ingest's single engine thread (measured in test/integration/ingest-large-segment.test.ts).
 */
export function writeEventBatches(lineFiles: readonly string[], outDir: string): Promise<WrittenBatch[]> {
  const run = converting.then(() => convert(lineFiles, outDir));
  converting = run.catch(() => undefined);
  return run;
}

async function convert(lineFiles: readonly string[], outDir: string): Promise<WrittenBatch[]> {
  mkdirSync(outDir, { recursive: true });
  const scratch = path.join(outDir, 'staged.parquet');
  return withConnection(async (c) => {
    try {
      await c.run(`COPY (
          SELECT ${FROM_LINE_COLUMNS.join(', ')}, ts // 3600000 AS hour_no
          FROM read_json(${parquetFiles(lineFiles)}, format = 'newline_delimited', columns = ${EVENT_LINE_COLUMNS})
        ) TO ${sqlString(scratch)} (FORMAT parquet, COMPRESSION uncompressed, ROW_GROUP_SIZE ${SCRATCH_ROW_GROUP_SIZE})`);
      const staged = `read_parquet(${sqlString(scratch)})`;
      const parts = (
        await c.runAndReadAll(`SELECT hour_no, count(*)::BIGINT, epoch_ms(min(event_time)), epoch_ms(max(event_time)) FROM ${staged} GROUP BY 1 ORDER BY 1`)
      ).getRowsJS() as [bigint, bigint, bigint, bigint][];
      const out: WrittenBatch[] = [];
      for (const [h, n, lo, hi] of parts) {
        const partition = partitionOf(Number(h) * 3_600_000);
        const file = path.join(outDir, `${partition.dt}_${partition.hour}.parquet`);
        // Cast again: the scratch file stores TIMESTAMP_MS as microseconds.
        await copyToParquet(c, `SELECT ${castColumns(COLUMNS)} FROM ${staged} WHERE hour_no = ${h} ORDER BY ${BATCH_ORDER}`, file);
        out.push({ partition, file, eventCount: Number(n), minEventTimeMs: Number(lo), maxEventTimeMs: Number(hi) });
      }
      return out;
    } finally {
      rmSync(scratch, { force: true });
    }
  });
}
