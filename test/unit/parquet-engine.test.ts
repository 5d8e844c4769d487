// The Parquet engine (embedded DuckDB, no services): staged lines → Parquet per event-time hour, sorted and
// typed as the v1 schema says; batch scans that dedup ids within the batch and format InfluxDB line protocol exactly.
import { describe, expect, it, beforeAll } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openEngine, queryParquet } from '../../shared/parquet.js';
import { scanBatch } from '../../workers/batch-scan.js';
import { archiveTotals } from '../../workers/cold/audit-sql.js';
import { writeEventBatches } from '../../ingest/parquet-batch-writer.js';
import type { Event } from '../../shared/contracts/event.js';
import { encodeEventLine } from '../../shared/contracts/event-line.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'engine-'));
const t0 = Date.UTC(2026, 0, 31, 12, 0);
const ev = (eventId: string, entityId: string, ts: number, value = 1, eventType = 'view'): Event => ({
  eventId,
  entityId,
  eventType,
  timestamp: ts,
  value,
  dims: null,
});

async function batch(events: Event[], name: string): Promise<string[]> {
  const f = path.join(dir, `${name}.ndjson`);
  writeFileSync(f, events.map((e) => encodeEventLine(e, t0, 'p')).join(''));
  return (await writeEventBatches([f], path.join(dir, name))).map((w) => w.file);
}

describe('Parquet engine', () => {
  beforeAll(async () => {
    await openEngine({ tempDir: path.join(dir, 'tmp') });
  });

  it('writes one file per event-time hour with the current (v3) schema, sorted by entity then time', async () => {
    const files = await batch([ev('a', 'z', t0 + 5), ev('b', 'a', t0 + 9), ev('c', 'a', t0 + 1), ev('d', 'a', t0 + 3_600_000)], 'hours');
    expect(files.map((f) => path.basename(f))).toEqual(['2026-01-31_12.parquet', '2026-01-31_13.parquet']);
    const schema = await queryParquet(`SELECT name, converted_type, logical_type FROM parquet_schema('${files[0]}') WHERE name = 'event_time'`);
    expect(schema[0]).toMatchObject({ converted_type: 'TIMESTAMP_MICROS', logical_type: expect.stringContaining('isAdjustedToUTC=1') });
    const rows = await queryParquet(`SELECT event_id FROM read_parquet('${files[0]}')`);
    expect(rows.map((r) => r.event_id)).toEqual(['c', 'b', 'a']);
  });

  it('formats per-minute line protocol with escaped tags, each id once within the batch', async () => {
    const [file] = await batch(
      [
        ev('1', 'a b,c=d', t0 + 1_000, 2),
        ev('2', 'a b,c=d', t0 + 2_000, 5),
        ev('2', 'a b,c=d', t0 + 2_000, 5), // id 2 repeated in the file
        ev('3', 'x', t0 + 61_000, 1.5),
        ev('4', 'x', t0 + 62_000, 7),
      ],
      'lines',
    );
    const scan = await scanBatch(file!);
    try {
      expect(scan.rowCount).toBe(5);
      expect(scan.distinctIds).toBe(4);
      const out = await scan.minuteLines({ offsetNs: 42n, linesPerChunk: 1 });
      expect(out).toEqual({
        chunks: [
          `events_1m,entity_id=a\\ b\\,c\\=d,event_type=view count=2i,sum=7,min=2,max=5 ${BigInt(t0) * 1_000_000n + 42n}`,
          `events_1m,entity_id=x,event_type=view count=2i,sum=8.5,min=1.5,max=7 ${BigInt(t0 + 60_000) * 1_000_000n + 42n}`,
        ],
        points: 2,
        events: 4,
      });
    } finally {
      await scan.close();
    }
  });
  it('counts the first row of a repeated id in (event_time, entity_id, event_type, value) order, in the scan and the audit alike', async () => {
    const [file] = await batch(
      [
        ev('r', 'a', t0 + 2_000, 9), // later: never counted
        ev('r', 'a', t0 + 1_000, 8), // earliest event time: counted
        ev('s', 'b', t0 + 1_000, 6),
        ev('s', 'b', t0 + 1_000, 4), // same time and series: the smaller value is counted
        ev('t', 'c', t0 + 1_000, 5, 'view'),
        ev('t', 'c', t0 + 1_000, 7, 'like'), // same time and entity: 'like' sorts before 'view'
      ],
      'dedup-order',
    );
    const expected = [
      { entityId: 'a', eventType: 'view', count: 1, sum: 8 },
      { entityId: 'b', eventType: 'view', count: 1, sum: 4 },
      { entityId: 'c', eventType: 'like', count: 1, sum: 7 },
    ];
    const scan = await scanBatch(file!);
    try {
      expect(await scan.entityTotals()).toEqual(expected);
    } finally {
      await scan.close();
    }
    expect(await archiveTotals([file!], { fromMs: t0, toMs: t0 + 60_000 })).toEqual(expected);
  });
});
