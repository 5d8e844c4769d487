// A failure injected after each step of a batch (after reading it, after aggregating it, before any write, after writing
// InfluxDB, after updating top-K, just before deleting its message) sends the batch back to SQS; its redelivery
// leaves InfluxDB and top-K exactly as if the batch had been processed once.
import { describe, expect, it } from 'vitest';
import { createRedis } from '../../shared/clients/redis.js';
import { TransientError } from '../../shared/errors.js';
import { readEntityTotal } from '../../shared/entity-totals-store.js';
import { readTopK } from '../../shared/topk-store.js';
import type { BatchStep } from '../../workers/batch-processor.js';
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

const CRASH_POINTS: BatchStep[] = ['fetched', 'aggregated', 'written', 'topk_updated', 'totals_updated', 'before_ack'];

describe('worker crash recovery', () => {
  it.each(CRASH_POINTS)('a failure after "%s" is repaired by redelivery', async (crashAt) => {
    // No in-process retries: the failure releases the message and SQS delivers it again.
    const cfg = await testConfig({ ...FAST_WORKER_ENV, SLUICE_MAX_TRANSIENT_RETRY: '0s' });
    const start = pastHour();
    const events = randomEvents(4_000, { start, minutes: 6, entities: 25 });
    const [batch] = await uploadBatches(cfg, events);
    const seen: string[] = [];
    let crashed = false;
    const w = await startWorker(cfg, log, {
      onStep: (step) => {
        seen.push(step);
        if (step === crashAt && !crashed) {
          crashed = true;
          throw new TransientError(`injected failure after ${step}`, 'injected');
        }
      },
    });
    running.push(w);
    await sendManifests(cfg, [batch!.body]);
    await waitUntil('redelivered batch delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1);
    expect(crashed).toBe(true);
    expect(seen.filter((s) => s === crashAt)).toHaveLength(2);
    expect(await metricValue(w.url, 'sluice_worker_batches_total', 'outcome="retry"')).toBe(1);
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(events))).toEqual([]);
    expect(await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)).toBe(0);

    // top-K was applied exactly once as well
    const exact = new Map<string, number>();
    for (const e of events) if (e.eventType === 'view') exact.set(e.entityId, (exact.get(e.entityId) ?? 0) + 1);
    const redis = createRedis(cfg);
    try {
      const top = await readTopK(redis, cfg.SLUICE_REDIS_PREFIX, 'view', '1d', 100);
      expect(new Map(top.map((t) => [t.entityId, t.count]))).toEqual(exact);
      // and so were the all-time entity totals
      for (const [entity, count] of exact) {
        const t = await readEntityTotal(redis, cfg.SLUICE_REDIS_PREFIX, entity, 'view');
        const sum = events.filter((e) => e.entityId === entity && e.eventType === 'view').reduce((n, e) => n + e.value, 0);
        expect(t?.count).toBe(count);
        expect(Math.abs(t!.sum - sum)).toBeLessThan(1e-6);
      }
    } finally {
      redis.disconnect();
    }
  });

  it('retries a transient failure in-process, keeping the message, without releasing it', async () => {
    const cfg = await testConfig({ ...FAST_WORKER_ENV, SLUICE_MAX_TRANSIENT_RETRY: '1m' });
    const start = pastHour();
    const events = randomEvents(1_000, { start, minutes: 3 });
    const [batch] = await uploadBatches(cfg, events);
    let failures = 0;
    const w = await startWorker(cfg, log, {
      onStep: (step) => {
        if (step === 'written' && failures < 3) {
          failures++;
          throw new TransientError('InfluxDB hiccup', 'influx_unavailable');
        }
      },
    });
    running.push(w);
    await sendManifests(cfg, [batch!.body]);
    await waitUntil('delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1);
    expect(failures).toBe(3);
    expect(await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="retry"')).toBe(0);
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(events))).toEqual([]);
  });
});
