// Parquet schema evolution: a v2 batch file (v1 columns + optional session_id) next to v1 files is read by the
// worker's scan (same aggregates as its events), merged by compaction with v1 files (session ids kept, v1 rows
// NULL) and counted by the audit's recomputation — each path reads both versions by column name.
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../shared/config.js';
import { encodeEventLine } from '../../shared/contracts/event.js';
import { archiveTotals } from '../../workers/cold/audit-sql.js';
import { compactEventFiles, fingerprintEventFiles } from '../../workers/cold/compaction-sql.js';
import { openEngine, queryParquet } from '../../shared/parquet.js';
import { scanBatch } from '../../workers/batch-scan.js';
import { writeEventBatches } from '../../ingest/parquet-batch-writer.js';
import { groundTruth, randomEvents } from '../support/batches.js';
import { expectedTotals, sameTotals, writeV2File } from '../support/archive.js';

const dir = path.join(PROJECT_ROOT, '.data', 'tests', `schema-${Date.now().toString(36)}`);
const start = Date.UTC(2026, 0, 10, 8);
const v1Events = randomEvents(1_200, { start, minutes: 50, entities: 9, idPrefix: 'one' });
const v2Events = randomEvents(800, { start, minutes: 50, entities: 9, idPrefix: 'two' });
let v1File: string;
const v2File = path.join(dir, 'v2.parquet');

beforeAll(async () => {
  mkdirSync(dir, { recursive: true });
  await openEngine({ tempDir: path.join(dir, 'duckdb-tmp') });
  writeFileSync(path.join(dir, 'lines.ndjson'), v1Events.map((e) => encodeEventLine(e, Date.now(), 'test')).join(''));
  const [written] = await writeEventBatches([path.join(dir, 'lines.ndjson')], path.join(dir, 'v1'));
  v1File = written!.file;
  await writeV2File(v2Events, v2File);
});

describe('schema v1 + v2', () => {
  it('the worker scan aggregates a v2 file exactly', async () => {
    const scan = await scanBatch(v2File);
    try {
      expect(scan.rowCount).toBe(800);
      // What the worker writes: the per-minute line protocol (series tags unescaped here: the test ids need none).
      const { chunks } = await scan.minuteLines([], { offsetNs: 0n, linesPerChunk: 10_000 });
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
      expect(got).toEqual(groundTruth(v2Events));
    } finally {
      scan.close();
    }
  });

  it('compaction merges v1 and v2 files by column name, keeping every row and the session ids', async () => {
    const out = path.join(dir, 'compacted.parquet');
    const fp = await compactEventFiles([v1File, v2File], out);
    expect(fp.rows).toBe(2_000);
    expect(await fingerprintEventFiles([out])).toEqual(fp);
    const [r] = await queryParquet(
      `SELECT count(session_id)::BIGINT AS s, count(*) FILTER (WHERE schema_version = 1)::BIGINT AS v1 FROM read_parquet('${out}')`,
    );
    expect(Number(r!.s)).toBe(800);
    expect(Number(r!.v1)).toBe(1_200);
  });

  it('the audit recomputation counts v1 and v2 files together', async () => {
    const totals = await archiveTotals([v1File, v2File], { fromMs: start, toMs: start + 3_600_000 });
    expect(sameTotals(totals, expectedTotals([...v1Events, ...v2Events]))).toBe(true);
  });
});
