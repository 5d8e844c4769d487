// The worker's batch scan (embedded engine, no services): a clean file and the same events with repeated ids and
// unstorable rows give the same points, buckets and totals; buckets nest in cells or are computed from the rows;
// refused points leave every later count and come back as quarantine rows; line numbers map back to their points.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeEventBatches } from '../../ingest/parquet-batch-writer.js';
import type { Event } from '../../shared/contracts/event.js';
import { encodeEventLine } from '../../shared/contracts/event-line.js';
import { connect, openEngine } from '../../shared/parquet.js';
import { numberColumns } from '../../workers/batch-scan-columns.js';
import { CELL_MS, escapeTag, sumCells, totalsOfCells, type Cells } from '../../workers/batch-scan-lines.js';
import { scanBatch } from '../../workers/batch-scan.js';
import type { BatchScan } from '../../workers/batch-scan-types.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'scan-'));
const t0 = Date.UTC(2026, 0, 31, 12, 0);
const ev = (eventId: string, entityId: string, ts: number, value = 1, eventType = 'view'): Event => ({
  eventId,
  entityId,
  eventType,
  timestamp: ts,
  value,
  dims: null,
});

let seq = 0;
async function file(events: Event[], extraLines = ''): Promise<string> {
  const name = `b${seq++}`;
  const f = path.join(dir, `${name}.ndjson`);
  writeFileSync(f, events.map((e) => encodeEventLine(e, t0, 'p')).join('') + extraLines);
  const written = await writeEventBatches([f], path.join(dir, name));
  expect(written).toHaveLength(1);
  return written[0]!.file;
}

async function withScan<T>(f: string, fn: (s: BatchScan) => Promise<T>): Promise<T> {
  const scan = await scanBatch(f);
  try {
    return await fn(scan);
  } finally {
    await scan.close();
  }
}

/** Everything a scan answers, for comparing two scans. */
const answers = (s: BatchScan) =>
  Promise.all([s.minuteLines({ offsetNs: 7n, linesPerChunk: 3 }), s.countBuckets(10_000), s.countBuckets(60_000), s.entityTotals()]);

const events: Event[] = [
  ev('1', 'b', t0 + 1_000, 2),
  ev('2', 'a', t0 + 9_000, 5),
  ev('3', 'a', t0 + 11_000, 1.5),
  ev('4', 'a', t0 + 61_000, 7, 'like'),
  ev('5', 'a b,c=d', t0 + 62_000, -3),
  ev('6', 'b', t0 + 125_000, 4),
];

describe('batch scan', () => {
  beforeAll(async () => {
    await openEngine({ tempDir: path.join(dir, 'tmp') });
  });

  it('gives the same answers for a clean file and for the same events with repeats and unstorable rows', async () => {
    const clean = await file(events);
    // Copies of 2 and 5 (same fields: whichever is kept counts the same) and an entity with a trailing backslash.
    const dirty = await file([...events, { ...events[1]! }, { ...events[4]! }, ev('7', 'x\\', t0 + 3_000)]);
    const a = await withScan(clean, async (s) => {
      expect({ rows: s.rowCount, unstorable: s.unstorableRows, distinct: s.distinctIds }).toEqual({ rows: 6, unstorable: 0, distinct: 6 });
      expect(await s.quarantineRows()).toEqual([]);
      return answers(s);
    });
    const b = await withScan(dirty, async (s) => {
      expect({ rows: s.rowCount, unstorable: s.unstorableRows, distinct: s.distinctIds }).toEqual({ rows: 9, unstorable: 1, distinct: 6 });
      expect((await s.quarantineRows()).map((r) => [r.reason, r.field, r.eventId])).toEqual([['unstorable_tag', 'entity_id', '7']]);
      return answers(s);
    });
    expect(b).toEqual(a);
    const [lines, b10, b60, totals] = a;
    expect(lines.points).toBe(5);
    expect(lines.events).toBe(6);
    expect(lines.chunks).toHaveLength(2);
    const ns = (ms: number) => `${BigInt(ms) * 1_000_000n + 7n}`;
    expect(lines.chunks.join('\n').split('\n')).toEqual([
      `events_1m,entity_id=a,event_type=like count=1i,sum=7,min=7,max=7 ${ns(t0 + 60_000)}`,
      `events_1m,entity_id=a,event_type=view count=2i,sum=6.5,min=1.5,max=5 ${ns(t0)}`,
      `events_1m,entity_id=a\\ b\\,c\\=d,event_type=view count=1i,sum=-3,min=-3,max=-3 ${ns(t0 + 60_000)}`,
      `events_1m,entity_id=b,event_type=view count=1i,sum=2,min=2,max=2 ${ns(t0)}`,
      `events_1m,entity_id=b,event_type=view count=1i,sum=4,min=4,max=4 ${ns(t0 + 120_000)}`,
    ]);
    const sorted = (xs: { entityId: string; eventType: string; bucketMs: number; count: number }[]) =>
      xs.map((x) => `${x.entityId}|${x.eventType}|${x.bucketMs - t0}|${x.count}`).sort();
    expect(sorted(b10)).toEqual(['a b,c=d|view|60000|1', 'a|like|60000|1', 'a|view|0|1', 'a|view|10000|1', 'b|view|0|1', 'b|view|120000|1']);
    expect(sorted(b60)).toEqual(['a b,c=d|view|60000|1', 'a|like|60000|1', 'a|view|0|2', 'b|view|0|1', 'b|view|120000|1']);
    expect(totals).toEqual([
      { entityId: 'a', eventType: 'like', count: 1, sum: 7 },
      { entityId: 'a', eventType: 'view', count: 2, sum: 6.5 },
      { entityId: 'a b,c=d', eventType: 'view', count: 1, sum: -3 },
      { entityId: 'b', eventType: 'view', count: 2, sum: 6 },
    ]);
  });

  it('computes buckets that do not nest in cells from the rows', async () => {
    const f = await file(events);
    await withScan(f, async (s) => {
      const got = (await s.countBuckets(7_000)).map((x) => `${x.entityId}|${x.eventType}|${x.bucketMs}|${x.count}`).sort();
      const byBucket = new Map<string, number>();
      for (const e of events) {
        const k = `${e.entityId}|${e.eventType}|${Math.floor(e.timestamp / 7_000) * 7_000}`;
        byBucket.set(k, (byBucket.get(k) ?? 0) + 1);
      }
      const want = [...byBucket].map(([k, n]) => `${k}|${n}`).sort();
      expect(got).toEqual(want);
      await expect(s.countBuckets(0)).rejects.toThrow(/bucketMs must be a positive integer, got 0/);
    });
  });

  it('maps refused lines to their points and leaves those points out of every later count and into the quarantine', async () => {
    const f = await file(events);
    await withScan(f, async (s) => {
      const lines = await s.minuteLines({ offsetNs: 0n, linesPerChunk: 2 });
      expect(lines.chunks).toHaveLength(3);
      const [p] = await s.pointsAt([{ chunk: 0, line: 1 }]);
      expect(p).toEqual({ entityId: 'a', eventType: 'view', minuteMs: t0 });
      await expect(s.pointsAt([{ chunk: 2, line: 1 }])).rejects.toThrow('no point at chunk 2, line 1 of the last minuteLines()');
      await expect(s.pointsAt([{ chunk: 0, line: 2 }])).rejects.toThrow('no point at chunk 0, line 2');
      await s.rejectPoints([{ ...p!, reason: 'series_limit', detail: 'limit exceeded' }]);
      expect(await s.entityTotals()).toEqual([
        { entityId: 'a', eventType: 'like', count: 1, sum: 7 },
        { entityId: 'a b,c=d', eventType: 'view', count: 1, sum: -3 },
        { entityId: 'b', eventType: 'view', count: 2, sum: 6 },
      ]);
      expect((await s.countBuckets(10_000)).some((b) => b.entityId === 'a' && b.eventType === 'view')).toBe(false);
      expect((await s.minuteLines({ offsetNs: 0n, linesPerChunk: 10 })).points).toBe(4);
      const q = await s.quarantineRows();
      expect(q.map((r) => [r.rowNo, r.reason, r.detail, r.eventId, r.entityId])).toEqual([
        [expect.any(Number), 'series_limit', 'limit exceeded', '2', 'a'],
        [expect.any(Number), 'series_limit', 'limit exceeded', '3', 'a'],
      ]);
    });
  });

  it('answers queries asked at once, closes only after those still running, and refuses queries after close', async () => {
    const many = Array.from({ length: 3000 }, (_, i) => ev(`m${i}`, `e${i % 97}`, t0 + (i % 600) * 1_000, i % 7));
    const f = await file(many);
    const expected = await withScan(f, answers);
    for (let round = 0; round < 5; round++) {
      const scan = await scanBatch(f);
      // The worker's pattern: the Redis inputs computed while something else runs, then a failure closes the scan.
      const all = answers(scan);
      const odd = scan.countBuckets(7_000);
      const counted = scan.withCountedRows(async (c, rows) => (await c.runAndReadAll(`SELECT count(*)::INTEGER FROM ${rows}`)).getRowsJS());
      const closed = scan.close();
      expect(await all).toEqual(expected);
      expect((await odd).reduce((n, b) => n + b.count, 0)).toBe(many.length);
      expect(await counted).toEqual([[many.length]]);
      await closed;
      // A query that needs the engine (cached answers need none) is refused once closed.
      await expect(scan.countBuckets(7_000)).rejects.toThrow(`the engine scan of ${f} is closed`);
    }
  });

  it('refuses a file that is not a Sluice Parquet batch, naming it', async () => {
    const f = path.join(dir, 'not.parquet');
    writeFileSync(f, 'not parquet');
    await expect(scanBatch(f)).rejects.toMatchObject({ code: 'batch_corrupt', message: expect.stringContaining(f) });
  });
});

describe('cells', () => {
  const cells: Cells = {
    ei: [0, 0, 0, 1, 1],
    ti: [0, 0, 1, 0, 0],
    b: [0, 5, 6, 11, 12],
    n: [1, 2, 3, 4, 5],
    s: [1, 2, 3, 4, 5],
    lo: [1, 0.5, 3, 4, -1],
    hi: [1, 2, 3, 4, 9],
  };

  it('sums consecutive cells of a series into buckets and totals', () => {
    expect(sumCells(cells, CELL_MS)).toBe(cells);
    expect(sumCells(cells, 60_000)).toEqual({
      ei: [0, 0, 1, 1],
      ti: [0, 1, 0, 0],
      b: [0, 1, 1, 2],
      n: [3, 3, 4, 5],
      s: [3, 3, 4, 5],
      lo: [0.5, 3, 4, -1],
      hi: [2, 3, 4, 9],
    });
    expect(sumCells(cells, 120_000)).toEqual({
      ei: [0, 0, 1, 1],
      ti: [0, 1, 0, 0],
      b: [0, 0, 0, 1],
      n: [3, 3, 4, 5],
      s: [3, 3, 4, 5],
      lo: [0.5, 3, 4, -1],
      hi: [2, 3, 4, 9],
    });
    expect(totalsOfCells(cells)).toEqual({ ei: [0, 0, 1], ti: [0, 1, 0], n: [3, 3, 9], s: [3, 3, 9] });
    expect(() => sumCells(cells, 15_000)).toThrow('bucket width must be a positive multiple of 10000 ms, got 15000');
  });

  it('escapes comma, equals sign and space in tag values, and nothing else', () => {
    expect(escapeTag('plain')).toBe('plain');
    expect(escapeTag('a b,c=d')).toBe('a\\ b\\,c\\=d');
    expect(escapeTag('a\\b "q" it\'s')).toBe('a\\b\\ "q"\\ it\'s');
  });

  it('reads numeric columns and names a column that is not a number', async () => {
    const c = await connect();
    try {
      const r = await c.run(`SELECT 'x' AS s`);
      const n = await c.run('SELECT NULL::INTEGER AS n');
      expect(numberColumns(await c.run('SELECT range::INTEGER AS i, range / 2 AS d FROM range(3000)'), ['i', 'd'])[1]!.slice(2998)).toEqual([1499, 1499.5]);
      expect(() => numberColumns(r, ['s'])).toThrow('column s of the result, row 0, is string, not a number');
      expect(() => numberColumns(n, ['n'])).toThrow('column n of the result, row 0, is NULL, not a number');
    } finally {
      c.closeSync();
    }
  });
});
