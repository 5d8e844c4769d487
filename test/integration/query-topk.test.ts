// GET /v1/topk against real Redis holding top-K buckets written by the workers' update code: the k biggest entities of
// the requested window and event type, most first, with their bounds and whether the list is certain; answers from the
// in-process window cache that are never older than the last merged batch; and 400s naming bad parameters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, type RedisClient } from '../../shared/clients/redis.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { readTopKWindow, TOPK_RESOLUTIONS, topKBucketKey } from '../../shared/topk-store.js';
import { startQuery } from '../../query/main.js';
import { TopKWindowCache } from '../../query/topk-cache.js';
import { TopKUpdater } from '../../workers/topk.js';
import { testConfig } from '../support/config.js';

let service: Service;
let redis: RedisClient;
let prefix: string;
let exact: TopKUpdater;
let batchNo = 0;
const now = Date.now();

/** Merges one batch of `counts` at event time `atMs`, as a worker does. */
async function add(updater: TopKUpdater, eventType: string, atMs: number, counts: Record<string, number>): Promise<void> {
  const bucketMs = Math.floor(atMs / 10_000) * 10_000;
  await updater.apply(
    `b${batchNo++}.parquet`,
    Object.entries(counts).map(([entityId, count]) => ({ entityId, eventType, bucketMs, count })),
  );
}

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any; cache: string | null }> {
  const res = await fetch(service.url + path, { headers });
  return { status: res.status, body: await res.json(), cache: res.headers.get('x-sluice-cache') };
}

const exactItem = (entityId: string, count: number) => ({ entityId, count, lowerBound: count, upperBound: count });

beforeAll(async () => {
  const cfg = await testConfig();
  redis = createRedis(cfg);
  prefix = cfg.SLUICE_REDIS_PREFIX;
  exact = new TopKUpdater(redis, cfg.SLUICE_REDIS_PREFIX, 1000);
  await add(exact, 'click', now - 5_000, { a: 5, b: 3, c: 9 });
  await add(exact, 'click', now - 20 * 60_000, { a: 6, d: 1 });
  await add(exact, 'click', now - 3 * 3_600_000, { b: 1000 }); // outside the hour, inside the day
  await add(exact, 'view', now - 5_000, { z: 100 });
  // more entities than a capacity of 2: approximate (the worked example of test/integration/worker-topk.test.ts)
  const small = new TopKUpdater(redis, cfg.SLUICE_REDIS_PREFIX, 2);
  const batches: Record<string, number>[] = [{ a: 5, b: 5 }, { c: 6, d: 6 }, { a: 2 }, { e: 9, f: 8, g: 1 }];
  for (const counts of batches) await add(small, 'share', now - 5_000, counts);
  service = await startQuery(cfg, createLogger('query-test', 'warn'));
});

afterAll(async () => {
  await service?.close();
  redis?.disconnect();
});

describe('GET /v1/topk', () => {
  it('answers the k biggest entities of the window, summed over its buckets, most first, exact and guaranteed', async () => {
    const { status, body } = await get('/v1/topk?eventType=click&window=1h&k=3');
    expect(status).toBe(200);
    expect(body).toEqual({
      eventType: 'click',
      window: '1h',
      k: 3,
      items: [exactItem('a', 11), exactItem('c', 9), exactItem('b', 3)],
      guaranteed: true,
      unlistedUpperBound: 1,
      maxError: 0,
      events: 24,
    });
  });

  it('defaults k to 10 and keeps windows and event types apart', async () => {
    expect((await get('/v1/topk?eventType=click&window=1m')).body).toMatchObject({
      window: '1m',
      k: 10,
      items: [exactItem('c', 9), exactItem('a', 5), exactItem('b', 3)],
      guaranteed: true,
      unlistedUpperBound: 0,
      events: 17,
    });
    expect((await get('/v1/topk?eventType=click&window=1d&k=2')).body.items).toEqual([exactItem('b', 1003), exactItem('a', 11)]);
    expect((await get('/v1/topk?eventType=view&window=1h&k=1')).body.items).toEqual([exactItem('z', 100)]);
    expect((await get('/v1/topk?eventType=buy&window=1d')).body).toMatchObject({ items: [], guaranteed: true, unlistedUpperBound: 0, events: 0 });
  });

  it('answers bounds, and says whether the list is certain, beyond the capacity', async () => {
    // true counts: e 9, f 8, a 7, c 6, d 6, b 5, g 1
    const one = (await get('/v1/topk?eventType=share&window=1m&k=1')).body;
    expect(one).toMatchObject({
      items: [{ entityId: 'e', count: 15, lowerBound: 9, upperBound: 15 }],
      guaranteed: false,
      unlistedUpperBound: 14,
      maxError: 8,
      events: 42,
    });
    // e ≥ 9 and f ≥ 8, and no other entity has more than 8: {e, f} is certainly the top 2
    const two = (await get('/v1/topk?eventType=share&window=1h&k=2')).body;
    expect(two).toMatchObject({
      items: [
        { entityId: 'e', lowerBound: 9 },
        { entityId: 'f', lowerBound: 8 },
      ],
      guaranteed: true,
      unlistedUpperBound: 8,
    });
    expect((await get('/v1/topk?eventType=share&window=1d&k=3')).body).toMatchObject({ guaranteed: false, unlistedUpperBound: 8 });
  });

  it('serves from its cache until a batch is merged, then shows that batch', async () => {
    const path = '/v1/topk?eventType=cache&window=1h&k=5';
    await add(exact, 'cache', now - 5_000, { x: 1 });
    expect(await get(path)).toMatchObject({ cache: 'miss', body: { items: [exactItem('x', 1)] } });
    expect(await get(path)).toMatchObject({ cache: 'hit', body: { items: [exactItem('x', 1)] } });
    // a batch into the newest bucket, then one into a bucket 30 minutes back: each is seen by the next request
    await add(exact, 'cache', now - 5_000, { x: 2, y: 1 });
    expect(await get(path)).toMatchObject({ cache: 'miss', body: { items: [exactItem('x', 3), exactItem('y', 1)] } });
    await add(exact, 'cache', now - 30 * 60_000, { y: 7 });
    expect(await get(path)).toMatchObject({ cache: 'miss', body: { items: [exactItem('y', 8), exactItem('x', 3)] } });
    expect(await get(path)).toMatchObject({ cache: 'hit', body: { items: [exactItem('y', 8), exactItem('x', 3)] } });
    // Cache-Control: no-cache checks every bucket, not only the version: a bucket written without one is seen
    await redis.zincrby(topKBucketKey(prefix, 'cache', TOPK_RESOLUTIONS['1h'], Math.floor((now - 5_000) / 60_000) * 60_000), 10, 'x');
    await redis.hincrby(`${topKBucketKey(prefix, 'cache', TOPK_RESOLUTIONS['1h'], Math.floor((now - 5_000) / 60_000) * 60_000)}:meta`, 'N', 10);
    expect(await get(path)).toMatchObject({ cache: 'hit', body: { items: [exactItem('y', 8), exactItem('x', 3)] } });
    expect(await get(path, { 'cache-control': 'no-cache' })).toMatchObject({ cache: 'revalidated', body: { items: [exactItem('x', 13), exactItem('y', 8)] } });
    expect(await get(path)).toMatchObject({ cache: 'hit', body: { items: [exactItem('x', 13), exactItem('y', 8)] } });
  });

  it('merges a window once for concurrent requests', async () => {
    await add(exact, 'burst', now - 5_000, { p: 3, q: 2 });
    const answers = await Promise.all(Array.from({ length: 20 }, () => get('/v1/topk?eventType=burst&window=1h&k=2')));
    expect(answers.filter((a) => a.cache === 'miss')).toHaveLength(1);
    expect(answers.every((a) => a.cache === 'miss' || a.cache === 'coalesced' || a.cache === 'hit')).toBe(true);
    for (const a of answers) expect(a.body.items).toEqual([exactItem('p', 3), exactItem('q', 2)]);
  });

  it('keeps its running sums right as the window slides, under a tiny memory budget, and after a failed read', async () => {
    const cache = new TopKWindowCache(redis, prefix, { keep: 11 });
    await add(exact, 'slide', now - 50 * 60_000, { old: 40, both: 1 });
    await add(exact, 'slide', now - 30 * 60_000, { mid: 20, both: 2 });
    await add(exact, 'slide', now - 5_000, { both: 4, late: 3 });
    const fresh = (at: number) => readTopKWindow(redis, prefix, 'slide', '1h', 11, at);
    expect((await cache.read('slide', '1h', now)).ranked).toEqual(await fresh(now));
    // 15 minutes on, the bucket 50 minutes back has left the window; 45 minutes on, the one 30 minutes back too
    for (const later of [15, 45]) {
      const at = now + later * 60_000;
      const { ranked, result } = await cache.read('slide', '1h', at);
      expect({ later, result, ranked }).toEqual({ later, result: 'miss', ranked: await fresh(at) });
    }
    expect((await cache.read('slide', '1h', now + 45 * 60_000)).ranked.items.map((i) => [i.entityId, i.count])).toEqual([
      ['both', 4],
      ['late', 3],
    ]);

    // a budget below one window: every window is evicted by the next, and answers stay right
    const small = new TopKWindowCache(redis, prefix, { keep: 11, maxItems: 1 });
    for (let i = 0; i < 3; i++)
      for (const type of ['slide', 'click'])
        expect({ type, ranked: (await small.read(type, '1h', now)).ranked }).toEqual({
          type,
          ranked: await readTopKWindow(redis, prefix, type, '1h', 11, now),
        });

    // a refresh whose bucket read fails changes nothing: the next one answers from the store
    let failures = 1;
    const flaky = new Proxy(redis, {
      get(target, prop, receiver) {
        if (prop === 'multi' && failures > 0) {
          failures--;
          return () => ({ hmget: () => ({ zrange: () => ({ call: () => undefined }) }), exec: () => Promise.reject(new Error('connection reset')) });
        }
        return Reflect.get(target, prop, receiver);
      },
    });
    const once = new TopKWindowCache(flaky, prefix, { keep: 11 });
    await expect(once.read('slide', '1h', now)).rejects.toThrow('connection reset');
    expect((await once.read('slide', '1h', now)).ranked).toEqual(await fresh(now));
  });

  it.each([
    ['k', 'eventType=click&window=1h&k=0', 'from 1 to 100'],
    ['k', 'eventType=click&window=1h&k=101', 'from 1 to 100'],
    ['window', 'eventType=click&window=7d', '1m, 1h, 1d'],
    ['window', 'eventType=click', 'is required'],
    ['eventType', 'window=1h', 'is required'],
  ])('a bad %s answers 400 naming it', async (param, qs, accepted) => {
    const { status, body } = await get(`/v1/topk?${qs}`);
    expect(status).toBe(400);
    expect(body.details[0].param).toBe(param);
    expect(body.details[0].message).toContain(accepted);
  });
});
