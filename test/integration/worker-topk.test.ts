// Top-K over a Zipf workload spread across several batches equals the exact counts for every window while
// buckets hold fewer entities than SLUICE_TOPK_CAPACITY, and never overcounts when they hold more.
import { afterEach, describe, expect, it } from 'vitest';
import { createRedis } from '../../shared/clients/redis.js';
import type { Event } from '../../shared/contracts/event.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { readTopK, type TopKWindow } from '../../shared/topk-store.js';
import { startWorker } from '../../workers/main.js';
import { testConfig } from '../support/config.js';
import { FAST_WORKER_ENV, metricValueOrZero, sendManifests, testEvent, uploadBatches, waitUntil } from '../support/batches.js';

const log = createLogger('worker-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const running: Service[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

/** Deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** `n` events over `entities` entities with Zipf(s) popularity, within the last `spanMs` before now. */
function zipfEvents(n: number, entities: number, s: number, spanMs: number, seed: number): Event[] {
  const rnd = prng(seed);
  const cdf: number[] = [];
  let total = 0;
  for (let r = 1; r <= entities; r++) {
    total += 1 / r ** s;
    cdf.push(total);
  }
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => {
    const u = rnd() * total;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return testEvent(`z${seed}-${i}`, `item-${lo}`, now - 1_000 - Math.floor(rnd() * spanMs), 1, i % 5 === 0 ? 'like' : 'view');
  });
}

function exactTop(events: readonly Event[], eventType: string, k: number): { entityId: string; count: number }[] {
  const m = new Map<string, number>();
  for (const e of events) if (e.eventType === eventType) m.set(e.entityId, (m.get(e.entityId) ?? 0) + 1);
  return [...m]
    .map(([entityId, count]) => ({ entityId, count }))
    .sort((a, b) => b.count - a.count || (a.entityId < b.entityId ? -1 : 1))
    .slice(0, k);
}

async function deliver(capacity: string, events: Event[][]): Promise<{ cfg: Awaited<ReturnType<typeof testConfig>> }> {
  const cfg = await testConfig({ ...FAST_WORKER_ENV, SLUICE_TOPK_CAPACITY: capacity });
  const bodies: string[] = [];
  for (const part of events) for (const b of await uploadBatches(cfg, part)) bodies.push(b.body);
  const w = await startWorker(cfg, log);
  running.push(w);
  await sendManifests(cfg, bodies);
  // one batch is sent twice: top-K must still count it once
  await sendManifests(cfg, [bodies[0]!]);
  await waitUntil(
    'all batches delivered',
    async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === bodies.length + 1,
  );
  return { cfg };
}

describe('worker top-K', () => {
  it('equals the exact counts of a Zipf workload in every window', async () => {
    const parts = [1, 2, 3].map((seed) => zipfEvents(8_000, 300, 1.1, 30_000, seed));
    const { cfg } = await deliver('1000', parts);
    const all = parts.flat();
    const redis = createRedis(cfg);
    try {
      for (const window of ['1m', '1h', '1d'] as TopKWindow[]) {
        for (const type of ['view', 'like']) {
          expect(await readTopK(redis, cfg.SLUICE_REDIS_PREFIX, type, window, 25)).toEqual(exactTop(all, type, 25));
        }
      }
      // a window that ended before the events holds none of them
      expect(await readTopK(redis, cfg.SLUICE_REDIS_PREFIX, 'view', '1m', 25, Date.now() - 5 * 60_000)).toEqual([]);
    } finally {
      redis.disconnect();
    }
  });

  it('never overcounts when buckets hold more entities than their capacity', async () => {
    const parts = [4, 5].map((seed) => zipfEvents(6_000, 2_000, 0.9, 30_000, seed));
    const { cfg } = await deliver('10', parts);
    const exact = new Map(exactTop(parts.flat(), 'view', 10_000).map((e) => [e.entityId, e.count]));
    const redis = createRedis(cfg);
    try {
      const top = await readTopK(redis, cfg.SLUICE_REDIS_PREFIX, 'view', '1h', 10);
      expect(top).toHaveLength(10);
      for (const t of top) expect(t.count).toBeLessThanOrEqual(exact.get(t.entityId)!);
      // the most popular entity dominates every bucket, so it is kept and exact
      expect(top[0]).toEqual(exactTop(parts.flat(), 'view', 1)[0]);
    } finally {
      redis.disconnect();
    }
  });
});
