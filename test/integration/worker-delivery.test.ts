// A batch goes through a real worker (fauxqs SQS+S3, Redis, InfluxDB) and what a reader sees in InfluxDB
// equals the exact aggregates of its events — once, however often and however concurrently it is delivered.
import { describe, expect, it } from 'vitest';
import { startWorker } from '../../workers/main.js';
import { testConfig } from '../support/config.js';
import { closedAfterEach, workerTestLog } from '../support/in-process.js';
import {
  FAST_WORKER_ENV,
  diffAggregates,
  groundTruth,
  metricValue,
  metricValueOrZero,
  influxAggregates,
  pastHour,
  queueDepth,
  randomEvents,
  sendManifests,
  totalCount,
  uploadBatches,
  waitUntil,
} from '../support/batches.js';

const WORKER_ENV = FAST_WORKER_ENV;
const log = workerTestLog;
const running = closedAfterEach();

const metric = metricValue;

describe('worker delivery', () => {
  it('writes the exact per-minute aggregates of a batch and deletes its message', async () => {
    const cfg = await testConfig(WORKER_ENV);
    const start = pastHour();
    const events = randomEvents(3_000, { start, minutes: 7, entities: 15 });
    // ids repeated inside the file are counted once
    events.push({ ...events[0]!, value: 1_000 }, { ...events[1]!, entityId: 'other' });
    const [batch] = await uploadBatches(cfg, events);
    await sendManifests(cfg, [batch!.body]);
    const w = await startWorker(cfg, log);
    running.push(w);
    await waitUntil('batch delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1);
    const truth = groundTruth(events);
    expect(totalCount(truth)).toBe(3_000);
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), truth)).toEqual([]);
    expect(await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)).toBe(0);
    expect(await metric(w.url, 'sluice_worker_events_total')).toBe(3_000);
    expect(await metric(w.url, 'sluice_worker_duplicates_dropped_total')).toBe(2);
    expect((await fetch(`${w.url}/readyz`)).status).toBe(200);
  });

  it('counts a batch once when its manifest is delivered again later', async () => {
    const cfg = await testConfig(WORKER_ENV);
    const start = pastHour();
    const events = randomEvents(2_000, { start, minutes: 4 });
    const [batch] = await uploadBatches(cfg, events);
    const w = await startWorker(cfg, log);
    running.push(w);
    await sendManifests(cfg, [batch!.body]);
    await waitUntil('first delivery', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1);
    const first = await influxAggregates(cfg, start, start + 3_600_000);
    expect(diffAggregates(first, groundTruth(events))).toEqual([]);
    await sendManifests(cfg, [batch!.body]);
    await waitUntil('second delivery', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 2);
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(events))).toEqual([]);
  });

  it('counts a batch once when two workers process it at the same time', async () => {
    const cfg = await testConfig({ ...WORKER_ENV, SLUICE_WORKER_CONCURRENCY: '1' });
    const start = pastHour();
    const events = randomEvents(20_000, { start, minutes: 10, entities: 200 });
    const [batch] = await uploadBatches(cfg, events);
    // Two messages with the same manifest, held back until both workers are ready to take one each.
    let arrived = 0;
    let release!: () => void;
    const together = new Promise<void>((r) => {
      release = r;
    });
    const onStep = async (step: string) => {
      if (step !== 'scanned') return;
      if (++arrived === 2) release();
      await Promise.race([together, new Promise((r) => setTimeout(r, 15_000))]);
    };
    const a = await startWorker(cfg, log, { onStep, workerId: 'a' });
    const b = await startWorker(cfg, log, { onStep, workerId: 'b' });
    running.push(a, b);
    await sendManifests(cfg, [batch!.body, batch!.body]);
    await waitUntil(
      'both deliveries',
      async () =>
        (await metricValueOrZero(a.url, 'sluice_worker_batches_total', 'outcome="delivered"')) +
          (await metricValueOrZero(b.url, 'sluice_worker_batches_total', 'outcome="delivered"')) ===
        2,
    );
    expect(arrived).toBe(2);
    expect(await metric(a.url, 'sluice_worker_batches_total', 'outcome="delivered"')).toBe(1);
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(events))).toEqual([]);
    expect(await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)).toBe(0);
  });
});
