// Event-level dedup across batches: an event id carried by two batches is counted once (by the batch that
// claimed it first), and a batch redelivered after claiming its ids still counts them.
import { afterEach, describe, expect, it } from 'vitest';
import { createRedis } from '../../shared/clients/redis.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { CLAIM_BUCKET_MS, EventDedup, claimShard, claimTag } from '../../workers/event-dedup.js';
import { startWorker } from '../../workers/main.js';
import { testConfig } from '../support/config.js';
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
  testEvent,
  uploadBatches,
  waitUntil,
} from '../support/batches.js';

const log = createLogger('worker-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const running: Service[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

describe('worker event dedup', () => {
  it('counts an event id shared by two batches once', async () => {
    const cfg = await testConfig(FAST_WORKER_ENV);
    const start = pastHour();
    const first = randomEvents(3_000, { start, minutes: 5, idPrefix: 'a' });
    // the second batch repeats 1,000 ids of the first (a producer retry landing in another batch) plus 2,000 new ones
    const second = [...first.slice(0, 1_000), ...randomEvents(2_000, { start, minutes: 5, idPrefix: 'b' })];
    const [b1] = await uploadBatches(cfg, first);
    const [b2] = await uploadBatches(cfg, second);
    const w = await startWorker(cfg, log);
    running.push(w);
    await sendManifests(cfg, [b1!.body]);
    await waitUntil('first batch', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1);
    await sendManifests(cfg, [b2!.body]);
    await waitUntil('second batch', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 2);
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth([...first, ...second]))).toEqual([]);
    expect(await metricValue(w.url, 'sluice_worker_duplicates_dropped_total')).toBe(1_000);
    // redelivering the second batch later changes nothing: it still skips the ids the first batch owns
    await sendManifests(cfg, [b2!.body]);
    await waitUntil('second batch again', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 3);
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth([...first, ...second]))).toEqual([]);
  });

  it('keeps the ids a batch claimed itself and excludes ids of other batches', async () => {
    const cfg = await testConfig();
    const redis = createRedis(cfg);
    try {
      const dedup = new EventDedup(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_DEDUP_WINDOW);
      const ids = Array.from({ length: 12_000 }, (_, i) => `id-${i}`); // more than two Lua chunks
      expect((await dedup.claim('bucket/a.parquet', ids.slice(0, 7_000))).excluded).toEqual([]);
      expect((await dedup.claim('bucket/a.parquet', ids.slice(0, 7_000))).excluded).toEqual([]);
      const b = await dedup.claim('bucket/b.parquet', ids);
      expect(b.excluded).toEqual(ids.slice(0, 7_000));
      expect((await dedup.claim('bucket/b.parquet', ids)).excluded).toEqual(ids.slice(0, 7_000));
      // Claims live in the hash of the current minute, which expires one window after that minute ends.
      const [current] = dedup.windowKeys(Date.now(), claimShard('id-11999'));
      expect(await redis.hget(current!, 'id-11999')).toBe(claimTag('bucket/b.parquet'));
      const ttl = await redis.ttl(current!);
      expect(ttl).toBeGreaterThan(cfg.SLUICE_DEDUP_WINDOW / 1000 - 10);
      expect(ttl).toBeLessThanOrEqual((cfg.SLUICE_DEDUP_WINDOW + CLAIM_BUCKET_MS) / 1000);
    } finally {
      redis.disconnect();
    }
  });

  it('still recognises a claim made in an earlier minute of the window', async () => {
    const cfg = await testConfig();
    const redis = createRedis(cfg);
    try {
      const dedup = new EventDedup(redis, cfg.SLUICE_REDIS_PREFIX, 10 * 60_000);
      const t = Math.floor(Date.now() / CLAIM_BUCKET_MS) * CLAIM_BUCKET_MS + 1_000; // aligned: the test does not depend on the clock
      expect((await dedup.claim('bucket/a.parquet', ['x', 'y'], t - 9 * 60_000)).excluded).toEqual([]);
      expect((await dedup.claim('bucket/b.parquet', ['x', 'z'], t)).excluded).toEqual(['x']);
      expect((await dedup.claim('bucket/a.parquet', ['x', 'y'], t)).excluded).toEqual([]); // its own, from 9 minutes ago
      expect((await dedup.claim('bucket/b.parquet', ['y'], t + 6 * 60_000)).excluded).toEqual([]); // a's claim has left the window
    } finally {
      redis.disconnect();
    }
  });

  it('reports Redis being down as a transient error', async () => {
    const cfg = await testConfig({ SLUICE_REDIS_URL: 'redis://127.0.0.1:1' });
    const redis = createRedis(cfg);
    redis.on('error', () => undefined);
    try {
      const dedup = new EventDedup(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_DEDUP_WINDOW);
      await expect(dedup.claim('bucket/a.parquet', [testEvent('x', 'e', 0).eventId])).rejects.toMatchObject({ code: 'dedup_unavailable', retryable: true });
    } finally {
      redis.disconnect();
    }
  });
});
