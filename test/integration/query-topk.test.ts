// GET /v1/topk against real Redis holding top-K buckets in the layout of shared/topk-store.ts: the k
// biggest entities of the requested window and event type, most first, and 400s naming bad parameters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { createRedis } from '../../shared/clients/redis.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { TOPK_RESOLUTIONS, topKBucketKey, type TopKWindow } from '../../shared/topk-store.js';
import { startQuery } from '../../query/main.js';
import { testConfig } from '../support/config.js';

let service: Service;
let redis: Redis;
let prefix: string;

/** Adds counts to the bucket of `window` that holds `atMs`. */
async function add(eventType: string, window: TopKWindow, atMs: number, counts: Record<string, number>): Promise<void> {
  const res = TOPK_RESOLUTIONS[window];
  const key = topKBucketKey(prefix, eventType, res, Math.floor(atMs / res.bucketMs) * res.bucketMs);
  for (const [entity, n] of Object.entries(counts)) await redis.zincrby(key, n, entity);
}

async function get(path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(service.url + path);
  return { status: res.status, body: await res.json() };
}

beforeAll(async () => {
  const cfg = await testConfig();
  prefix = cfg.SLUICE_REDIS_PREFIX;
  redis = createRedis(cfg);
  const now = Date.now();
  await add('click', '1h', now, { a: 5, b: 3, c: 9 });
  await add('click', '1h', now - 20 * 60_000, { a: 6, d: 1 });
  await add('click', '1h', now - 3 * 3_600_000, { b: 1000 }); // outside the hour
  await add('view', '1h', now, { z: 100 });
  await add('click', '1m', now, { b: 2, d: 4 });
  service = await startQuery(cfg, createLogger('query-test', 'warn'));
});

afterAll(async () => {
  await service?.close();
  redis?.disconnect();
});

describe('GET /v1/topk', () => {
  it('answers the k biggest entities of the window, summed over its buckets, most first', async () => {
    const { status, body } = await get('/v1/topk?eventType=click&window=1h&k=3');
    expect(status).toBe(200);
    expect(body).toEqual({
      eventType: 'click',
      window: '1h',
      k: 3,
      items: [
        { entityId: 'a', count: 11 },
        { entityId: 'c', count: 9 },
        { entityId: 'b', count: 3 },
      ],
    });
  });

  it('defaults k to 10 and keeps windows and event types apart', async () => {
    expect((await get('/v1/topk?eventType=click&window=1m')).body).toEqual({
      eventType: 'click',
      window: '1m',
      k: 10,
      items: [
        { entityId: 'd', count: 4 },
        { entityId: 'b', count: 2 },
      ],
    });
    expect((await get('/v1/topk?eventType=view&window=1h&k=1')).body.items).toEqual([{ entityId: 'z', count: 100 }]);
    expect((await get('/v1/topk?eventType=buy&window=1d')).body.items).toEqual([]);
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
