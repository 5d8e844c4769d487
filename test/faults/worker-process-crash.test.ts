// A worker process SIGKILLed after each step of a batch (and between two InfluxDB write chunks of a batch split
// into many) dies without releasing its message; once the visibility timeout lapses a fresh worker takes the batch
// and InfluxDB, top-K and the all-time totals hold each event exactly once. Every case runs on the shared single
// Redis and again on a private 3-master Redis Cluster (SLUICE_REDIS_CLUSTER=true).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRedis } from '../../shared/clients/redis.js';
import type { Config } from '../../shared/config.js';
import type { Event } from '../../shared/contracts/event.js';
import { readEntityTotal } from '../../shared/entity-totals-store.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { readTopK } from '../../shared/topk-store.js';
import { BATCH_STEPS, type BatchStep } from '../../workers/batch-processor.js';
import { startWorker } from '../../workers/main.js';
import {
  FAST_WORKER_ENV,
  diffAggregates,
  groundTruth,
  influxAggregates,
  metricValueOrZero,
  pastHour,
  queueDepth,
  randomEvents,
  sendManifests,
  totalCount,
  uploadBatches,
  waitUntil,
} from '../support/batches.js';
import { testConfig } from '../support/config.js';
import { exitSignal, startEntry, type ChildService } from '../support/processes.js';
import { startTestRedisCluster, type TestRedisCluster } from '../support/redis-cluster.js';

const log = createLogger('worker-process-crash', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const running: Service[] = [];
const children: ChildService[] = [];
afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.kill('SIGKILL')));
  await Promise.all(running.splice(0).map((s) => s.close()));
});

/** Runs one batch through a worker process that SIGKILLs itself at `crashAt`; returns once it is dead. */
async function crashOnce(cfg: Config & { env: Record<string, string> }, body: string, crashAt: string): Promise<void> {
  const child = await startEntry('test/support/crashing-worker.ts', { ...cfg.env, SLUICE_TEST_CRASH_AT: crashAt }, `crash-${crashAt.replace(':', '-')}`);
  children.push(child);
  await sendManifests(cfg, [body]);
  expect(await exitSignal(child.proc, 60_000)).toBe('SIGKILL');
}

/** A fresh worker finishes the batch; then InfluxDB, top-K and totals must count every event exactly once. */
async function recoverAndCheck(cfg: Config, events: Event[], start: number): Promise<void> {
  const w = await startWorker(cfg, log);
  running.push(w);
  await waitUntil(
    'batch delivered by a fresh worker',
    async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1,
    45_000,
  );
  expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(events))).toEqual([]);
  expect(await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)).toBe(0);
  const redis = createRedis(cfg);
  try {
    for (const type of ['view', 'like']) {
      const exact = new Map<string, { count: number; sum: number }>();
      for (const e of events) {
        if (e.eventType !== type) continue;
        const t = exact.get(e.entityId) ?? { count: 0, sum: 0 };
        t.count++;
        t.sum += e.value;
        exact.set(e.entityId, t);
      }
      const top = await readTopK(redis, cfg.SLUICE_REDIS_PREFIX, type, '1d', 1_000);
      expect(new Map(top.map((t) => [t.entityId, t.count]))).toEqual(new Map([...exact].map(([k, v]) => [k, v.count])));
      for (const [entity, want] of exact) {
        const got = await readEntityTotal(redis, cfg.SLUICE_REDIS_PREFIX, entity, type);
        expect({ entity, type, count: got?.count }).toEqual({ entity, type, count: want.count });
        expect(Math.abs(got!.sum - want.sum)).toBeLessThan(1e-6);
      }
    }
  } finally {
    redis.disconnect();
  }
}

/** The Redis a case runs on: the shared test Redis (no settings to add), or a Redis Cluster started for the file. */
const REDIS_KINDS: { kind: string; start(): Promise<TestRedisCluster | undefined>; steps: readonly BatchStep[] }[] = [
  { kind: 'single Redis', start: async () => undefined, steps: BATCH_STEPS },
  // On the cluster only the steps around the Redis effects: the steps before them touch no Redis key.
  { kind: 'Redis Cluster', start: startTestRedisCluster, steps: ['written', 'topk_updated', 'totals_updated', 'before_ack'] },
];

describe.each(REDIS_KINDS)('worker process SIGKILL on $kind', ({ start, steps }) => {
  let cluster: TestRedisCluster | undefined;
  let redisEnv: Record<string, string> = {};
  beforeAll(async () => {
    cluster = await start();
    redisEnv = cluster?.env ?? {};
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it.each([...steps])(
    'a worker killed after "%s" loses nothing and counts nothing twice',
    async (step) => {
      const cfg = await testConfig({ ...FAST_WORKER_ENV, ...redisEnv, SLUICE_MAX_TRANSIENT_RETRY: '0s' });
      const start = pastHour();
      const events = randomEvents(2_000, { start, minutes: 6, entities: 25 });
      const [batch] = await uploadBatches(cfg, events);
      await crashOnce(cfg, batch!.body, step);
      await recoverAndCheck(cfg, events, start);
    },
    90_000,
  );

  it('a worker killed between InfluxDB write chunks of a large batch loses nothing and counts nothing twice', async () => {
    // 100 points per request (the smallest allowed) and ~2,000 points: a batch of about 20 write requests.
    const cfg = await testConfig({ ...FAST_WORKER_ENV, ...redisEnv, SLUICE_MAX_TRANSIENT_RETRY: '0s', SLUICE_INFLUX_BATCH_POINTS: '100' });
    const start = pastHour();
    const events = randomEvents(8_000, { start, minutes: 10, entities: 100 });
    const points = groundTruth(events).size;
    expect(points).toBeGreaterThan(1_000);
    const [batch] = await uploadBatches(cfg, events);
    await crashOnce(cfg, batch!.body, 'influx_chunk:4');
    // InfluxDB holds some of the batch's points, not all: the kill really fell between chunks.
    const partial = totalCount(await influxAggregates(cfg, start, start + 3_600_000));
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(events.length);
    await recoverAndCheck(cfg, events, start);
  }, 90_000);
});
