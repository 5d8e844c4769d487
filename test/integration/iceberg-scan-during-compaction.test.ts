// A reader scanning sluice.events while the day's compaction runs: each scan loads the current table through the
// query API's REST catalog (iceberg-js) and reads every row with an independent Iceberg reader (icebird, data from the
// real S3 emulator). Compaction is paused before its table commit until scans have run there, and scans go on while
// it commits, so they land on both sides of the replace snapshot. Every scan sees each event of the day exactly
// once — never the raw batches and the compacted file together, never neither — and the last one equals the archive
// as DuckDB reads it. Nothing waits for a scan still reading the append snapshot when the replace lands: compaction
// leaves the raw batches for a run after SLUICE_COMPACTION_DELETE_GRACE (default 1h), so that scan never meets a
// deleted file (with the grace 0 it would fail with a 404).
import { IcebergRestCatalog } from 'iceberg-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config.js';
import { DAY_MS } from '../../shared/contracts/cold-layout.js';
import type { Event } from '../../shared/contracts/event.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { startQuery } from '../../query/main.js';
import { runCompaction, type CompactionStep } from '../../workers/cold/compaction.js';
import { openArchiveTable, runCommitJob } from '../../workers/iceberg/commit-job.js';
import { testConfig } from '../support/config.js';
import { randomEvents } from '../support/batches.js';
import { TEST_ENDPOINTS } from '../support/endpoints.js';
import { archiveBatches, archiveRows, routeS3ToLocal, rowsOfMetadata } from '../support/iceberg.js';

const log = createLogger('iceberg-scan-test', process.env.SLUICE_LOG_LEVEL ?? 'silent');
const OLD_DAY = Math.floor(Date.now() / DAY_MS) * DAY_MS - 3 * DAY_MS; // older than SLUICE_COMPACT_AFTER (2d)
const OLD_DT = new Date(OLD_DAY).toISOString().slice(0, 10);
/** Scans that must start and finish at each paused step before compaction goes on. */
const SCANS_PER_PAUSE = 2;
const PAUSE_TIMEOUT_MS = 60_000;

interface Scan {
  /** Order in which the scan began. */
  seq: number;
  /** When the scan began, relative to the compaction: which steps had completed by then. */
  after: CompactionStep | 'start';
  snapshotId: string;
  operation: string;
  rows: Map<string, [number, string, number]>;
}

let restore: () => void;
beforeAll(() => {
  restore = routeS3ToLocal(TEST_ENDPOINTS.awsEndpoint);
});
afterAll(() => restore());

describe('scanning sluice.events while its day is compacted', () => {
  let cfg: Config;
  let query: Service;
  let catalog: IcebergRestCatalog;
  const events: Event[] = [];

  beforeAll(async () => {
    cfg = await testConfig({ SLUICE_RECONCILE_GRACE: '0s' });
    // Four arrivals of 750 events over three hours of the day each: one raw batch per arrival and hour.
    let batches = 0;
    for (const [i, prefix] of ['a', 'b', 'c', 'd'].entries()) {
      const part = randomEvents(750, { start: OLD_DAY + (1 + 4 * i) * 3_600_000, minutes: 180, entities: 8, idPrefix: prefix });
      batches += (await archiveBatches(cfg, part)).length;
      events.push(...part);
    }
    expect(batches).toBe(12);
    const t = openArchiveTable(cfg, log);
    try {
      expect(await runCommitJob(t.deps)).toMatchObject({ appended: 12 });
    } finally {
      t.close();
    }
    query = await startQuery(cfg, log);
    catalog = new IcebergRestCatalog({ baseUrl: `${query.url}/iceberg` });
  });
  afterAll(() => query?.close());

  it('every scan sees each event once, on both sides of the replace snapshot; the last equals the archive', async () => {
    let step: CompactionStep | 'start' = 'start';
    const scans: Scan[] = [];
    let started = 0;
    let readerFailed = false;
    const held = new Map<CompactionStep, Scan[]>();

    const scan = async (): Promise<void> => {
      const seq = started++;
      const after = step;
      const metadata = (await catalog.loadTable({ namespace: ['sluice'], name: 'events' })) as unknown as Record<string, unknown> & {
        'current-snapshot-id': number | string;
        snapshots: { 'snapshot-id': number | string; summary: { operation: string } }[];
      };
      const snapshotId = String(metadata['current-snapshot-id']);
      const current = metadata.snapshots.find((s) => String(s['snapshot-id']) === snapshotId);
      scans.push({ seq, after, snapshotId, operation: current?.summary.operation ?? '?', rows: await rowsOfMetadata(metadata) });
    };

    // Holds compaction after `s` until SCANS_PER_PAUSE scans that began after it have finished.
    const pauseAfter = async (s: CompactionStep) => {
      step = s;
      if (s !== 'manifest-written') return;
      const from = started;
      const deadline = Date.now() + PAUSE_TIMEOUT_MS;
      while (scans.filter((x) => x.seq >= from).length < SCANS_PER_PAUSE) {
        if (readerFailed) throw new Error(`the reader failed while compaction waited after ${s}`);
        if (Date.now() > deadline) throw new Error(`no ${SCANS_PER_PAUSE} scans finished within ${PAUSE_TIMEOUT_MS} ms after ${s}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      // These scans began and ended while compaction stood still after s.
      held.set(
        s,
        scans.filter((x) => x.seq >= from),
      );
    };

    let done = false;
    const reader = (async () => {
      while (!done) await scan();
      await scan(); // one more once the compaction has finished
    })().catch((err: unknown) => {
      readerFailed = true;
      throw err;
    });
    const compaction = runCompaction(cfg, { log, days: [OLD_DT], onStep: pauseAfter }).finally(() => {
      done = true;
    });
    const [compacted, read] = await Promise.allSettled([compaction, reader]); // neither left running on a failure
    if (read.status === 'rejected') throw read.reason;
    if (compacted.status === 'rejected') throw compacted.reason;
    const [day] = compacted.value;
    expect(scans.length).toBe(started);
    expect(day).toMatchObject({ dt: OLD_DT, inputs: 12, rows: events.length });

    // Each scan: every event id exactly once, with its values.
    for (const [i, s] of scans.entries()) {
      const where = `scan ${i + 1}/${scans.length} (after ${s.after}, snapshot ${s.snapshotId} ${s.operation})`;
      const dups = [...s.rows.keys()].filter((k) => k.includes('#dup'));
      const missing = events.filter((e) => !s.rows.has(e.eventId)).map((e) => e.eventId);
      expect({ dups: dups.length, missing: missing.slice(0, 5), rows: s.rows.size }, where).toEqual({ dups: 0, missing: [], rows: events.length });
      for (const e of events) expect(s.rows.get(e.eventId), `${where}: ${e.eventId}`).toEqual([e.timestamp, e.entityId, e.value]);
    }

    // Scans landed on both sides of the replace: the append snapshot before it, the replace snapshot after.
    const ops = new Map(scans.map((s) => [s.snapshotId, s.operation]));
    expect(ops.size, `snapshots seen: ${JSON.stringify([...ops])}`).toBeGreaterThanOrEqual(2);
    expect(new Set(ops.values())).toEqual(new Set(['append', 'replace']));
    const during = held.get('manifest-written') ?? [];
    expect(during.length, 'scans while paused after manifest-written').toBeGreaterThanOrEqual(SCANS_PER_PAUSE);
    expect(new Set(during.map((s) => s.operation)), 'snapshots read while paused after manifest-written').toEqual(new Set(['append']));
    expect(day!.pendingDeletes, 'raw batches left for a run after the grace').toBe(12);
    const last = scans.at(-1)!;
    expect(last.operation).toBe('replace');
    expect(last.rows).toEqual(await archiveRows(cfg, [OLD_DT]));
  });
});
