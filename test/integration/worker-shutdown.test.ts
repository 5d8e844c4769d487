// Stopping a worker: batches that finish within SLUICE_WORKER_SHUTDOWN_GRACE are delivered; a batch that
// cannot finish is released at once (visibility 0), so another worker delivers it long before its
// visibility timeout would have expired. Readiness turns false while stopping.
import { describe, expect, it } from 'vitest';
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
  queueDepth,
  randomEvents,
  sendManifests,
  uploadBatches,
  waitUntil,
} from '../support/batches.js';

const log = workerTestLog;
const running = closedAfterEach();

/** Resolves after `ms` or when `signal` aborts. */
const hold = (ms: number, signal: AbortSignal) =>
  new Promise<void>((r) => {
    const t = setTimeout(r, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      r();
    });
  });

describe('worker shutdown', () => {
  it('releases a batch that cannot finish, and another worker delivers it promptly', async () => {
    // A long visibility timeout: without the release, the batch would stay hidden for 60 s.
    const cfg = await testConfig({ ...FAST_WORKER_ENV, SLUICE_VISIBILITY_TIMEOUT: '60s', SLUICE_WORKER_SHUTDOWN_GRACE: '500ms' });
    const start = pastHour();
    const events = randomEvents(1_000, { start, minutes: 2 });
    const [batch] = await uploadBatches(cfg, events);
    let entered = false;
    const stuck = await startWorker(cfg, log, {
      workerId: 'stuck',
      onStep: async (step, { signal }) => {
        if (step === 'written') {
          entered = true;
          await hold(120_000, signal);
        }
      },
    });
    await sendManifests(cfg, [batch!.body]);
    await waitUntil('batch in flight on the stuck worker', () => entered);
    expect(await metricValue(stuck.url, 'sluice_worker_batches_in_flight')).toBe(1);

    const closing = stuck.close();
    await waitUntil(
      'not ready while stopping',
      async () =>
        (await fetch(`${stuck.url}/readyz`).then(
          (r) => r.status,
          () => 503,
        )) === 503,
      5_000,
    );
    const t0 = Date.now();
    await closing;
    expect(Date.now() - t0).toBeLessThan(8_000);

    const t1 = Date.now();
    const other = await startWorker(cfg, log, { workerId: 'other' });
    running.push(other);
    await waitUntil(
      'released batch delivered by another worker',
      async () => (await metricValueOrZero(other.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1,
      20_000,
    );
    expect(Date.now() - t1).toBeLessThan(20_000);
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(events))).toEqual([]);
    expect(await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)).toBe(0);
  });

  it('lets a batch finish when it completes within the grace period', async () => {
    const cfg = await testConfig({ ...FAST_WORKER_ENV, SLUICE_VISIBILITY_TIMEOUT: '60s', SLUICE_WORKER_SHUTDOWN_GRACE: '10s' });
    const start = pastHour();
    const events = randomEvents(1_000, { start, minutes: 2 });
    const [batch] = await uploadBatches(cfg, events);
    let entered = false;
    const w = await startWorker(cfg, log, {
      onStep: async (step, { signal }) => {
        if (step === 'scanned') {
          entered = true;
          await hold(1_500, signal);
        }
      },
    });
    await sendManifests(cfg, [batch!.body]);
    await waitUntil('batch in flight', () => entered);
    await w.close();
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(events))).toEqual([]);
    expect(await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)).toBe(0);
  });
});
