// Compaction stopped after every one of its steps, then rerun, against the real S3 emulator: at each moment
// every event of the day is in exactly one place readers look (live raw or verified compacted files), so the
// deduplicated totals and the row count never change; the rerun finishes with no raw files left and one
// verified compacted file, and a later late batch gets its own compaction. With SLUICE_COMPACTION_DELETE_GRACE the
// replaced raw files stay (superseded, so counts do not change) until a run after the replace is older than the grace.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { createS3 } from '../../shared/clients/aws.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { DAY_MS } from '../../shared/contracts/cold-layout.js';
import type { Config } from '../../shared/config.js';
import type { Event } from '../../shared/contracts/event.js';
import { createLogger } from '../../shared/logger.js';
import { openEngine, queryParquet } from '../../shared/parquet.js';
import { deleteRaw } from '../../workers/cold/archive.js';
import { runCompaction, type CompactionStep } from '../../workers/cold/compaction.js';
import { testConfig } from '../support/config.js';
import { randomEvents, uploadBatches } from '../support/batches.js';
import { archiveView, expectedTotals, sameTotals, uploadRawFile, writeV2File } from '../support/archive.js';

const log = createLogger('compaction-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const DAY = Math.floor(Date.now() / DAY_MS) * DAY_MS - 3 * DAY_MS;
const DT = new Date(DAY).toISOString().slice(0, 10);

let cfg: Config;
const events: Event[] = [];
let rows = 0;

const crashAt = (step: CompactionStep) => (s: CompactionStep) => {
  if (s === step) throw new Error(`crash after ${s}`);
};

async function expectIntact(): Promise<Awaited<ReturnType<typeof archiveView>>> {
  const v = await archiveView(cfg, DT);
  expect(v.rows).toBe(rows);
  expect(sameTotals(v.totals, expectedTotals(events))).toBe(true);
  return v;
}

beforeAll(async () => {
  cfg = await testConfig({ SLUICE_COMPACTION_DELETE_GRACE: '0s' }); // deletes right after the replace
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  // Three v1 batches spread over hours of the day, one repeating ids of another (a replayed batch), and a v2 file.
  const a = randomEvents(3_000, { start: DAY + 3_600_000, minutes: 300, entities: 25, idPrefix: 'a' });
  const b = randomEvents(2_000, { start: DAY + 10 * 3_600_000, minutes: 120, entities: 25, idPrefix: 'b' });
  const replay = a.slice(0, 500);
  for (const batch of [a, b, replay]) {
    for (const u of await uploadBatches(cfg, batch)) rows += u.events.length;
    events.push(...batch);
  }
  const v2 = randomEvents(700, { start: DAY + 20 * 3_600_000, minutes: 30, entities: 25, idPrefix: 'v2' });
  const file = path.join(cfg.SLUICE_DATA_DIR, 'v2.parquet');
  await writeV2File(v2, file);
  await uploadRawFile(cfg, file, DAY + 20 * 3_600_000);
  rows += v2.length;
  events.push(...v2);
});

afterAll(async () => undefined);

describe('compaction crash safety', () => {
  it('loses and duplicates nothing when stopped after any step and rerun', async () => {
    const before = await expectIntact();
    expect(before.liveRaw.length).toBeGreaterThan(4);
    const inputs = before.liveRaw.length;

    await expect(runCompaction(cfg, { log, onStep: crashAt('uploaded') })).rejects.toThrow('crash after uploaded');
    let v = await expectIntact();
    expect(v.unverified).toHaveLength(1); // uploaded but unverified: ignored by readers
    expect(v.liveRaw).toHaveLength(inputs);

    await expect(runCompaction(cfg, { log, onStep: crashAt('verified') })).rejects.toThrow('crash after verified');
    v = await expectIntact();
    expect(v.compacted).toHaveLength(0);

    await expect(runCompaction(cfg, { log, onStep: crashAt('manifest-written') })).rejects.toThrow('crash after manifest-written');
    v = await expectIntact();
    expect(v.compacted).toHaveLength(1);
    expect(v.liveRaw).toHaveLength(0);
    expect(v.supersededRaw).toHaveLength(inputs); // still there, but superseded

    // A crash in the middle of deleting the originals: some are gone, some are not.
    const s3 = createS3(cfg);
    await deleteRaw(s3, cfg.SLUICE_RAW_BUCKET, v.supersededRaw.slice(0, 2));
    s3.destroy();
    v = await expectIntact();

    const [done] = await runCompaction(cfg, { log });
    expect(done!.id).toBeUndefined(); // nothing live to compact…
    expect(done!.finishedDeletes).toBe(inputs - 2); // …but the interrupted deletes are finished
    v = await expectIntact();
    expect(v.supersededRaw).toHaveLength(0);
    expect(v.liveRaw).toHaveLength(0);
    expect(v.compacted).toHaveLength(1);

    // The compacted file: every column of the current contract, v2 session ids kept, sorted by entity then time.
    const cold = new ColdStorage(cfg);
    const local = path.join(cfg.SLUICE_DATA_DIR, 'c.parquet');
    await cold.getToFile(v.compacted[0]!, local);
    const [stats] = await queryParquet(
      `SELECT count(*)::BIGINT AS n, count(session_id)::BIGINT AS sessions, max(schema_version) AS v FROM read_parquet('${local}')`,
    );
    expect(Number(stats!.n)).toBe(rows);
    expect(Number(stats!.sessions)).toBe(700);
    const [unsorted] = await queryParquet(
      `SELECT count(*)::BIGINT AS n FROM (SELECT entity_id, event_time, lag(entity_id) OVER () AS pe, lag(event_time) OVER () AS pt FROM read_parquet('${local}')) WHERE pe > entity_id OR (pe = entity_id AND pt > event_time)`,
    );
    expect(Number(unsorted!.n)).toBe(0);
  });

  it('compacts a late batch of an already compacted day into a second verified file; a rerun changes nothing', async () => {
    const late = randomEvents(400, { start: DAY + 22 * 3_600_000, minutes: 20, entities: 5, idPrefix: 'late' });
    for (const u of await uploadBatches(cfg, late)) rows += u.events.length;
    events.push(...late);
    await expectIntact();
    const [r] = await runCompaction(cfg, { log });
    expect(r!.rows).toBe(400);
    const v = await expectIntact();
    expect(v.compacted).toHaveLength(2);
    expect(v.liveRaw).toHaveLength(0);
    expect((await runCompaction(cfg, { log })).filter((d) => d.id)).toEqual([]); // raw folder of the day is empty now
    await expectIntact();
  });

  it('leaves days younger than SLUICE_COMPACT_AFTER alone', async () => {
    const recent = Date.now() - 3_600_000;
    await uploadBatches(cfg, randomEvents(50, { start: recent, minutes: 1, idPrefix: 'recent' }));
    const results = await runCompaction(cfg, { log });
    expect(results.map((d) => d.dt)).not.toContain(new Date(recent).toISOString().slice(0, 10));
  });
});

describe('compaction delete grace', () => {
  // Four days back: a run may be dated two hours earlier and still find the day due (SLUICE_COMPACT_AFTER 2d).
  const OLD = DAY - DAY_MS;
  const OLD_DT = new Date(OLD).toISOString().slice(0, 10);
  const MIN = 60_000;

  async function graceDay(prefix: string) {
    const g = await testConfig({ SLUICE_COMPACTION_DELETE_GRACE: '1h' });
    const evs = randomEvents(900, { start: OLD + 2 * 3_600_000, minutes: 240, entities: 6, idPrefix: prefix });
    let n = 0;
    for (const u of await uploadBatches(g, evs)) n += u.events.length;
    const intact = async () => {
      const v = await archiveView(g, OLD_DT);
      expect(v.rows).toBe(n);
      expect(sameTotals(v.totals, expectedTotals(evs))).toBe(true);
      return v;
    };
    const inputs = (await intact()).liveRaw.length;
    expect(inputs).toBeGreaterThan(1);
    return { g, intact, inputs };
  }

  it('keeps the replaced raw files until the replace is older than the grace; readers skip them meanwhile', async () => {
    const { g, intact, inputs } = await graceDay('g');
    const t0 = Date.now();
    const [first] = await runCompaction(g, { log, nowMs: t0 });
    expect(first).toMatchObject({ dt: OLD_DT, inputs, finishedDeletes: 0, pendingDeletes: inputs });
    let v = await intact();
    expect(v).toMatchObject({ liveRaw: [], compacted: [expect.any(String)] });
    expect(v.supersededRaw).toHaveLength(inputs);

    const [early] = await runCompaction(g, { log, nowMs: Date.now() + 30 * MIN });
    expect(early).toMatchObject({ finishedDeletes: 0, pendingDeletes: inputs });
    expect((await intact()).supersededRaw).toHaveLength(inputs);

    const [late] = await runCompaction(g, { log, nowMs: Date.now() + 61 * MIN });
    expect(late).toMatchObject({ finishedDeletes: inputs, pendingDeletes: 0 });
    expect(late!.id).toBeUndefined(); // nothing live was left to compact
    v = await intact();
    expect(v).toMatchObject({ liveRaw: [], supersededRaw: [], compacted: [expect.any(String)] });
  });

  it('counts the grace from the table commit: a replace a rerun commits waits again, however old the manifest', async () => {
    const { g, intact, inputs } = await graceDay('m');
    const twoHoursAgo = Date.now() - 120 * MIN;
    await expect(runCompaction(g, { log, nowMs: twoHoursAgo, onStep: crashAt('manifest-written') })).rejects.toThrow('crash after manifest-written');
    expect((await intact()).supersededRaw).toHaveLength(inputs);

    const [rerun] = await runCompaction(g, { log }); // commits the replace now
    expect(rerun!.id).toBeUndefined();
    expect(rerun).toMatchObject({ finishedDeletes: 0, pendingDeletes: inputs });
    const [early] = await runCompaction(g, { log, nowMs: Date.now() + 30 * MIN });
    expect(early).toMatchObject({ finishedDeletes: 0, pendingDeletes: inputs });
    expect((await intact()).supersededRaw).toHaveLength(inputs);

    const [late] = await runCompaction(g, { log, nowMs: Date.now() + 61 * MIN });
    expect(late).toMatchObject({ finishedDeletes: inputs, pendingDeletes: 0 });
    expect(await intact()).toMatchObject({ liveRaw: [], supersededRaw: [] });
  });
});
