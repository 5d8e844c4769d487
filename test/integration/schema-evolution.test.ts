// Parquet schema evolution: v1 files (TIMESTAMP(MILLIS) without the UTC flag), v2 files (+ optional session_id) and
// v3 files (event_time and ingest_time as TIMESTAMP(MICROS, isAdjustedToUTC=true)) are read by the worker's scan,
// merged by compaction into one v3-typed file and counted by the audit's recomputation — each path reads every
// version by column name, with the same instants. The process runs in a time zone other than UTC, so a reader that
// let the machine's zone into a cast would shift the v1/v2 times by hours and fail here. An independent Parquet
// reader (hyparquet) checks the logical types written.
import { DuckDBInstance } from '@duckdb/node-api';
import { parquetMetadata } from 'hyparquet';
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../shared/config.js';
import type { Event } from '../../shared/contracts/event.js';
import { encodeEventLine } from '../../shared/contracts/event-line.js';
import { PARQUET_SCHEMA_VERSION } from '../../shared/contracts/parquet-schema.js';
import { archiveTotals } from '../../workers/cold/audit-sql.js';
import { compactEventFiles, fingerprintEventFiles } from '../../workers/cold/compaction-sql.js';
import { ENGINE_TIME_ZONE, openEngine, queryParquet } from '../../shared/parquet.js';
import { scanBatch } from '../../workers/batch-scan.js';
import { writeEventBatches } from '../../ingest/parquet-batch-writer.js';
import { groundTruth, randomEvents } from '../support/batches.js';
import { expectedTotals, sameTotals, writeV2File } from '../support/archive.js';

// Before the engine opens: its time-zone support starts from the machine's zone.
const MACHINE_ZONE = 'America/New_York';
process.env.TZ = MACHINE_ZONE;

const dir = path.join(PROJECT_ROOT, '.data', 'tests', `schema-${Date.now().toString(36)}`);
const start = Date.UTC(2026, 0, 10, 8);
const v1Events = randomEvents(1_200, { start, minutes: 50, entities: 9, idPrefix: 'one' });
const v2Events = randomEvents(800, { start, minutes: 50, entities: 9, idPrefix: 'two' });
const v3Events = randomEvents(600, { start, minutes: 50, entities: 9, idPrefix: 'three' });
const v1File = path.join(dir, 'v1.parquet');
const v2File = path.join(dir, 'v2.parquet');
let v3File: string;

const sql = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** A schema-v1 batch as ingest wrote it before v2/v3: no session_id, TIMESTAMP_MS columns, schema_version 1. */
async function writeV1File(events: readonly Event[], file: string): Promise<void> {
  const values = events.map((e) => `(${sql(e.eventId)}, ${sql(e.entityId)}, ${sql(e.eventType)}, ${e.timestamp}, ${e.value})`).join(',\n');
  await queryParquet(`COPY (
      SELECT id AS event_id, ent AS entity_id, typ AS event_type, epoch_ms(ts)::TIMESTAMP_MS AS event_time, v::DOUBLE AS value,
             NULL::MAP(VARCHAR, VARCHAR) AS dims, epoch_ms(ts + 5)::TIMESTAMP_MS AS ingest_time, 'test' AS producer, 1::INTEGER AS schema_version
      FROM (VALUES ${values}) t(id, ent, typ, ts, v) ORDER BY entity_id, event_time, event_id
    ) TO ${sql(file)} (FORMAT parquet, COMPRESSION zstd)`);
}

/** The logical type of a top-level column, read by hyparquet from the file footer. */
function logicalType(file: string, column: string): unknown {
  const buf = readFileSync(file);
  const meta = parquetMetadata(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  return meta.schema.find((s) => s.name === column)?.logical_type;
}

/** event id → event time (epoch ms) as the engine reads `files`, all versions together. */
async function eventTimes(files: readonly string[]): Promise<Map<string, number>> {
  const rows = await queryParquet(`SELECT event_id, epoch_ms(event_time)::DOUBLE AS t FROM read_parquet([${files.map(sql).join(', ')}], union_by_name = true)`);
  return new Map(rows.map((r) => [String(r.event_id), Number(r.t)]));
}

beforeAll(async () => {
  mkdirSync(dir, { recursive: true });
  await openEngine({ tempDir: path.join(dir, 'duckdb-tmp') });
  await writeV1File(v1Events, v1File);
  await writeV2File(v2Events, v2File);
  writeFileSync(path.join(dir, 'lines.ndjson'), v3Events.map((e) => encodeEventLine(e, start + 3_600_000, 'test')).join(''));
  const [written] = await writeEventBatches([path.join(dir, 'lines.ndjson')], path.join(dir, 'v3'));
  v3File = written!.file;
});

describe('schema v1 + v2 + v3', () => {
  it('the machine is in another zone than the engine: a naive cast would shift v1/v2 times (the premise of these tests)', async () => {
    const raw = await DuckDBInstance.create(':memory:');
    const c = await raw.connect();
    try {
      const [[zone, shifted]] = (await c.runAndReadAll(`SELECT current_setting('TimeZone'), epoch_ms(epoch_ms(${start})::TIMESTAMPTZ)`)).getRowsJS() as [
        [string, bigint],
      ];
      expect(zone).toBe(MACHINE_ZONE);
      expect(Number(shifted)).not.toBe(start);
    } finally {
      c.closeSync();
    }
    const [r] = await queryParquet(`SELECT current_setting('TimeZone') AS zone`);
    expect(r!.zone).toBe(ENGINE_TIME_ZONE);
  });

  it('ingest writes v3: event_time and ingest_time as TIMESTAMP(MICROS, isAdjustedToUTC=true), by an independent reader', async () => {
    expect(PARQUET_SCHEMA_VERSION).toBe(3);
    for (const column of ['event_time', 'ingest_time']) {
      expect(logicalType(v3File, column)).toEqual({ type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MICROS' });
      expect(logicalType(v1File, column)).toEqual({ type: 'TIMESTAMP', isAdjustedToUTC: false, unit: 'MILLIS' });
    }
    const [r] = await queryParquet(
      `SELECT min(schema_version) AS lo, max(schema_version) AS hi, count(session_id)::BIGINT AS sessions,
              min(epoch_ms(ingest_time))::DOUBLE AS it FROM read_parquet(${sql(v3File)})`,
    );
    expect(r).toEqual({ lo: 3, hi: 3, sessions: 0n, it: start + 3_600_000 });
  });

  it('every reader sees the same instants in every version, read together', async () => {
    const times = await eventTimes([v1File, v2File, v3File]);
    expect(times.size).toBe(2_600);
    for (const e of [...v1Events, ...v2Events, ...v3Events]) expect(times.get(e.eventId), e.eventId).toBe(e.timestamp);
  });

  it.each([
    ['v1', () => v1File, v1Events],
    ['v2', () => v2File, v2Events],
    ['v3', () => v3File, v3Events],
  ] as const)('the worker scan aggregates a %s file exactly', async (_v, file, events) => {
    const scan = await scanBatch(file());
    try {
      expect(scan.rowCount).toBe(events.length);
      // What the worker writes: the per-minute line protocol (series tags unescaped here: the test ids need none).
      const { chunks } = await scan.minuteLines({ offsetNs: 0n, linesPerChunk: 10_000 });
      const got = new Map(
        chunks
          .flatMap((c) => c.split('\n'))
          .map((line) => {
            const [, entityId, eventType, count, sum, min, max, ns] =
              /^events_1m,entity_id=(.*),event_type=(.*) count=(\d+)i,sum=(.*),min=(.*),max=(.*) (\d+)$/.exec(line)!;
            return [
              `${entityId}|${eventType}|${Number(BigInt(ns!) / 1_000_000n)}`,
              { count: Number(count), sum: Number(sum), min: Number(min), max: Number(max) },
            ];
          }),
      );
      expect(got).toEqual(groundTruth(events));
    } finally {
      await scan.close();
    }
  });

  it('compaction merges v1, v2 and v3 files by column name into a v3-typed file, keeping every row, instant and session id', async () => {
    const out = path.join(dir, 'compacted.parquet');
    const fp = await compactEventFiles([v1File, v2File, v3File], out);
    expect(fp.rows).toBe(2_600);
    expect(await fingerprintEventFiles([out])).toEqual(fp);
    const [r] = await queryParquet(
      `SELECT count(session_id)::BIGINT AS s, count(*) FILTER (WHERE schema_version = 1)::BIGINT AS v1,
              count(*) FILTER (WHERE schema_version = 3)::BIGINT AS v3 FROM read_parquet('${out}')`,
    );
    expect(r).toEqual({ s: 800n, v1: 1_200n, v3: 600n });
    for (const column of ['event_time', 'ingest_time']) expect(logicalType(out, column)).toEqual({ type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MICROS' });
    const times = await eventTimes([out]);
    for (const e of [...v1Events, ...v2Events, ...v3Events]) expect(times.get(e.eventId), e.eventId).toBe(e.timestamp);
  });

  it('the audit recomputation counts v1, v2 and v3 files together, over the exact event-time range', async () => {
    const all = [...v1Events, ...v2Events, ...v3Events];
    const totals = await archiveTotals([v1File, v2File, v3File], { fromMs: start, toMs: start + 3_600_000 });
    expect(sameTotals(totals, expectedTotals(all))).toBe(true);
    // A range ending before the last event leaves it out in every version (no file's times are shifted into it).
    const last = Math.max(...all.map((e) => e.timestamp));
    const before = await archiveTotals([v1File, v2File, v3File], { fromMs: start, toMs: last });
    expect(sameTotals(before, expectedTotals(all.filter((e) => e.timestamp < last)))).toBe(true);
  });
});
