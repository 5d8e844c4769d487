// What workers guarantee about event ids: within one batch each (producer, event id) counts once, and a redelivered
// batch counts nothing twice (its points are rewritten, top-K and totals guarded per batch). Across batches workers
// no longer claim ids: ingest reserves each id before its WAL append and never lets an id into the archive twice
// within SLUICE_DEDUP_WINDOW (ingest/event-reservations.ts, test/integration/event-reservations.test.ts), so two
// batches sharing an id cannot come from one pipeline within the window — and if they do (e.g. files written by
// hand), each batch counts its own copy, as the last test shows.
import { describe, expect, it } from 'vitest';
import { createRedis } from '../../shared/clients/redis.js';
import type { Event } from '../../shared/contracts/event.js';
import { readEntityTotal } from '../../shared/entity-totals-store.js';
import { startWorker } from '../../workers/main.js';
import { testConfig } from '../support/config.js';
import { closedAfterEach, workerTestLog } from '../support/in-process.js';
import {
  FAST_WORKER_ENV,
  diffAggregates,
  groundTruth,
  influxAggregates,
  metricValue,
  metricValueOrZero,
  pastHour,
  randomEvents,
  sendManifests,
  uploadBatches,
  waitUntil,
} from '../support/batches.js';

const log = workerTestLog;
const running = closedAfterEach();

const delivered = (url: string) => metricValueOrZero(url, 'sluice_worker_batches_total', 'outcome="delivered"');

/** The entity total of `entityId` ('view') that `events` give when each event id counts once. */
const viewTotal = (events: readonly Event[], entityId: string) => {
  const seen = new Set<string>();
  let count = 0;
  for (const e of events)
    if (e.entityId === entityId && e.eventType === 'view' && !seen.has(e.eventId)) {
      seen.add(e.eventId);
      count++;
    }
  return count;
};

describe('worker event ids', () => {
  it('counts an id repeated within one batch once, and a redelivered batch nothing twice', async () => {
    const cfg = await testConfig(FAST_WORKER_ENV);
    const start = pastHour();
    const unique = randomEvents(3_000, { start, minutes: 5, entities: 12, idPrefix: 'a' });
    // 700 events sent again inside the same batch (a producer retry that the same segment caught), exact copies
    const events = [...unique, ...unique.slice(100, 800).map((e) => ({ ...e }))];
    const [batch] = await uploadBatches(cfg, events);
    const w = await startWorker(cfg, log);
    running.push(w);
    await sendManifests(cfg, [batch!.body]);
    await waitUntil('batch delivered', async () => (await delivered(w.url)) === 1);
    const truth = groundTruth(unique);
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), truth)).toEqual([]);
    expect(await metricValue(w.url, 'sluice_worker_events_total')).toBe(3_000);
    expect(await metricValue(w.url, 'sluice_worker_duplicates_dropped_total')).toBe(700);

    // The same manifest again (a redelivery, a reconcile, a replay): the same points are rewritten, nothing is added.
    await sendManifests(cfg, [batch!.body]);
    await waitUntil('batch delivered again', async () => (await delivered(w.url)) === 2);
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), truth)).toEqual([]);
    const redis = createRedis(cfg);
    try {
      for (const entity of ['e0', 'e5', 'e11']) {
        const t = await readEntityTotal(redis, cfg.SLUICE_REDIS_PREFIX, entity, 'view');
        expect({ entity, count: t?.count }).toEqual({ entity, count: viewTotal(unique, entity) });
      }
    } finally {
      redis.disconnect();
    }
  });

  it('counts an id carried by two different batches in each (ingest keeps such batches from existing)', async () => {
    const cfg = await testConfig(FAST_WORKER_ENV);
    const start = pastHour();
    const first = randomEvents(2_000, { start, minutes: 4, idPrefix: 'a' });
    const second = [...first.slice(0, 500), ...randomEvents(1_000, { start, minutes: 4, idPrefix: 'b' })];
    const [b1] = await uploadBatches(cfg, first);
    const [b2] = await uploadBatches(cfg, second);
    const w = await startWorker(cfg, log);
    running.push(w);
    await sendManifests(cfg, [b1!.body, b2!.body]);
    await waitUntil('both batches delivered', async () => (await delivered(w.url)) === 2);
    // Each batch counts its own copy: the expected aggregates are those of the two batches with distinct ids.
    const both = [...first, ...second.map((e) => ({ ...e, eventId: `second:${e.eventId}` }))];
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(both))).toEqual([]);
    expect(await metricValue(w.url, 'sluice_worker_events_total')).toBe(3_500);
    expect(await metricValueOrZero(w.url, 'sluice_worker_duplicates_dropped_total')).toBe(0);
  });
});
