// Top-K against exact counts, on the real Redis and the workers' own update code: a Zipf workload through a real worker
// (S3 + SQS) is exact while buckets hold at most SLUICE_TOPK_CAPACITY entities; beyond, on Zipf and on an adversarial
// stream (many mid-frequency entities spread evenly over the batches, a thin entity left out of every batch's summary,
// a few heavy ones), every true count lies within [lowerBound, upperBound], no error exceeds N / capacity, and
// `guaranteed` is never true for a list that misses an entity of the true top-k. Merges happen once per batch and bucket.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createRedis, type RedisClient } from '../../shared/clients/redis.js';
import type { Event } from '../../shared/contracts/event.js';
import { TransientError } from '../../shared/errors.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { readTopKAnswer, readTopKBuckets, readTopKWindow, TOPK_RESOLUTIONS, topKWindowBuckets, type TopKWindow } from '../../shared/topk-store.js';
import type { TopKAnswer } from '../../shared/topk-summary.js';
import type { BucketCount } from '../../workers/batch-scan-types.js';
import { startWorker } from '../../workers/main.js';
import { TOPK_BASE_BUCKET_MS, TopKUpdater } from '../../workers/topk.js';
import { testConfig, testEnv } from '../support/config.js';
import { TEST_ENDPOINTS } from '../support/endpoints.js';
import { FAST_WORKER_ENV, metricValueOrZero, sendManifests, testEvent, uploadBatches, waitUntil } from '../support/batches.js';

const log = createLogger('worker-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const running: Service[] = [];
const clients: RedisClient[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
  for (const c of clients.splice(0)) c.disconnect();
});

const WINDOWS: TopKWindow[] = ['1m', '1h', '1d'];

/** Deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** A sampler of ranks 0…entities−1 with Zipf(s) popularity. */
function zipf(entities: number, s: number, rnd: () => number): () => number {
  const cdf: number[] = [];
  let total = 0;
  for (let r = 1; r <= entities; r++) {
    total += 1 / r ** s;
    cdf.push(total);
  }
  return () => {
    const u = rnd() * total;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** `n` events over `entities` entities with Zipf(s) popularity, within the last `spanMs` before now. */
function zipfEvents(n: number, entities: number, s: number, spanMs: number, seed: number): Event[] {
  const rnd = prng(seed);
  const next = zipf(entities, s, rnd);
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => {
    const rank = next();
    return testEvent(`z${seed}-${i}`, `item-${rank}`, now - 1_000 - Math.floor(rnd() * spanMs), 1, i % 5 === 0 ? 'like' : 'view');
  });
}

interface Hit {
  entityId: string;
  eventType: string;
  ts: number;
}

/** A batch's counts per (entity, event type, base bucket), as the worker's scan computes them. */
function bucketCounts(hits: readonly Hit[]): BucketCount[] {
  const m = new Map<string, BucketCount>();
  for (const h of hits) {
    const bucketMs = Math.floor(h.ts / TOPK_BASE_BUCKET_MS) * TOPK_BASE_BUCKET_MS;
    const key = `${h.eventType}\u0000${h.entityId}\u0000${bucketMs}`;
    const c = m.get(key);
    if (c) c.count++;
    else m.set(key, { entityId: h.entityId, eventType: h.eventType, bucketMs, count: 1 });
  }
  return [...m.values()];
}

/** Exact counts of `eventType` in the buckets that cover `window` at `nowMs`. */
function exactWindow(hits: Iterable<Hit>, eventType: string, window: TopKWindow, nowMs: number): Map<string, number> {
  const res = TOPK_RESOLUTIONS[window];
  const covered = new Set(topKWindowBuckets(res, nowMs));
  const m = new Map<string, number>();
  for (const h of hits)
    if (h.eventType === eventType && covered.has(Math.floor(h.ts / res.bucketMs) * res.bucketMs)) m.set(h.entityId, (m.get(h.entityId) ?? 0) + 1);
  return m;
}

function exactTop(truth: ReadonlyMap<string, number>, k: number): { entityId: string; count: number }[] {
  return [...truth]
    .map(([entityId, count]) => ({ entityId, count }))
    .sort((a, b) => b.count - a.count || (a.entityId < b.entityId ? -1 : 1))
    .slice(0, k);
}

/**
 * Checks an answer against the exact counts: bounds hold every listed entity's true count, no unlisted entity exceeds
 * unlistedUpperBound, no error exceeds N / capacity, and a guaranteed list is a correct top-k. Returns `guaranteed`.
 */
function expectHonest(answer: TopKAnswer, truth: ReadonlyMap<string, number>, k: number, capacity: number, what: string): boolean {
  const n = [...truth.values()].reduce((a, b) => a + b, 0);
  expect(answer.total, `${what}: N`).toBe(n);
  expect(answer.maxError, `${what}: max error ≤ N / m`).toBeLessThanOrEqual(n / capacity);
  expect(answer.items.length, `${what}: listed`).toBe(Math.min(k, truth.size, answer.items.length));
  for (const it of answer.items) {
    const t = truth.get(it.entityId) ?? 0;
    expect({ what, entity: it.entityId, t, inBounds: it.lowerBound <= t && t <= it.upperBound }).toEqual({ what, entity: it.entityId, t, inBounds: true });
    expect(it.count).toBe(it.upperBound);
    expect(it.upperBound - it.lowerBound).toBeLessThanOrEqual(answer.maxError);
  }
  const listed = new Set(answer.items.map((i) => i.entityId));
  const unlisted = [...truth].filter(([e]) => !listed.has(e));
  const maxUnlisted = Math.max(0, ...unlisted.map(([, c]) => c));
  expect(maxUnlisted, `${what}: unlisted upper bound`).toBeLessThanOrEqual(answer.unlistedUpperBound);
  if (answer.guaranteed) {
    const minListed = Math.min(...answer.items.map((i) => truth.get(i.entityId) ?? 0));
    expect(maxUnlisted, `${what}: guaranteed, yet an unlisted entity has more events than a listed one`).toBeLessThanOrEqual(minListed);
    expect(answer.items.length === k || unlisted.length === 0, `${what}: guaranteed with a short list`).toBe(true);
  }
  return answer.guaranteed;
}

function redisFor(): { redis: RedisClient; prefix: string } {
  const redis = createRedis({ SLUICE_REDIS_URL: TEST_ENDPOINTS.redisUrl });
  clients.push(redis);
  return { redis, prefix: testEnv().SLUICE_REDIS_PREFIX! };
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

const hitsOf = (events: readonly Event[]): Hit[] => events.map((e) => ({ entityId: e.entityId, eventType: e.eventType, ts: e.timestamp }));

describe('worker top-K through a real worker', () => {
  it('is exact and guaranteed on a Zipf workload while buckets hold at most the capacity', async () => {
    const parts = [1, 2, 3].map((seed) => zipfEvents(8_000, 300, 1.1, 30_000, seed));
    const { cfg } = await deliver('1000', parts);
    const hits = hitsOf(parts.flat());
    const now = Date.now();
    const redis = createRedis(cfg);
    clients.push(redis);
    for (const window of WINDOWS) {
      for (const type of ['view', 'like']) {
        const a = await readTopKAnswer(redis, cfg.SLUICE_REDIS_PREFIX, type, window, 25, now);
        const exact = exactTop(exactWindow(hits, type, window, now), 25);
        expect(a.items).toEqual(exact.map((e) => ({ ...e, lowerBound: e.count, upperBound: e.count })));
        expect({ window, type, guaranteed: a.guaranteed, maxError: a.maxError }).toEqual({ window, type, guaranteed: true, maxError: 0 });
      }
    }
    // a window that ended before the events holds none of them
    expect(await readTopKAnswer(redis, cfg.SLUICE_REDIS_PREFIX, 'view', '1m', 25, now - 5 * 60_000)).toMatchObject({ items: [], guaranteed: true, total: 0 });
  });

  it('bounds every count and is honest about the top-k when buckets hold more entities than the capacity', async () => {
    const parts = [4, 5].map((seed) => zipfEvents(6_000, 2_000, 0.9, 30_000, seed));
    const { cfg } = await deliver('10', parts);
    const hits = hitsOf(parts.flat());
    const now = Date.now();
    const redis = createRedis(cfg);
    clients.push(redis);
    const truth = exactWindow(hits, 'view', '1h', now);
    for (let k = 1; k <= 10; k++) expectHonest(await readTopKAnswer(redis, cfg.SLUICE_REDIS_PREFIX, 'view', '1h', k, now), truth, k, 10, `k=${k}`);
    // the most popular entity dominates every batch, so it is in every batch's summary: exact, and certainly first
    const top1 = await readTopKAnswer(redis, cfg.SLUICE_REDIS_PREFIX, 'view', '1h', 1, now);
    const first = exactTop(truth, 1)[0]!;
    expect(top1.items).toEqual([{ ...first, lowerBound: first.count, upperBound: first.count }]);
    expect(top1.guaranteed).toBe(true);
  });
});

describe('worker top-K update code on many batches', () => {
  // Event times relative to the start of each test: Redis expires the buckets in real time.
  let now = Date.now();
  beforeEach(() => {
    now = Date.now();
  });

  /** Applies each batch (events at their times) once; returns all hits. */
  async function applyAll(updater: TopKUpdater, batches: readonly Hit[][], tag: string): Promise<Hit[]> {
    for (let i = 0; i < batches.length; i++) expect(await updater.apply(`${tag}-${i}.parquet`, bucketCounts(batches[i]!), now)).toBeGreaterThan(0);
    return batches.flat();
  }

  /** Checks every window for k = 1…kMax; returns the windows' guaranteed flags per k. */
  async function expectAllWindowsHonest(
    redis: RedisClient,
    prefix: string,
    hits: readonly Hit[],
    capacity: number,
    kMax: number,
  ): Promise<Record<string, boolean[]>> {
    const flags: Record<string, boolean[]> = {};
    for (const window of WINDOWS) {
      const truth = exactWindow(hits, 'view', window, now);
      flags[window] = [];
      for (let k = 1; k <= kMax; k++)
        flags[window]!.push(expectHonest(await readTopKAnswer(redis, prefix, 'view', window, k, now), truth, k, capacity, `${window} k=${k}`));
      // every entity with more events than the missing bound is in the window's summary
      const all = await readTopKWindow(redis, prefix, 'view', window, 1_000_000, now);
      const kept = new Set(all.items.map((i) => i.entityId));
      for (const [e, c] of truth) if (c > all.missingBound) expect({ window, e, kept: kept.has(e) }).toEqual({ window, e, kept: true });
      // and each bucket keeps its invariants: at most m items, every error ≤ M ≤ N / m
      const starts = topKWindowBuckets(TOPK_RESOLUTIONS[window], now);
      for (const b of await readTopKBuckets(redis, prefix, 'view', window, starts)) {
        expect(b.summary.items.length).toBeLessThanOrEqual(capacity);
        expect(b.summary.missingBound).toBeLessThanOrEqual(b.total / capacity);
        for (const it of b.summary.items) expect(it.error).toBeLessThanOrEqual(b.summary.missingBound);
      }
    }
    return flags;
  }

  it('stays exact and guaranteed over 40 batches while buckets hold at most the capacity', async () => {
    const { redis, prefix } = redisFor();
    const rnd = prng(11);
    const next = zipf(150, 1.2, rnd);
    const batches = Array.from({ length: 40 }, (_, b) =>
      Array.from({ length: 300 }, () => ({ entityId: `z-${next()}`, eventType: 'view', ts: now - 200_000 + b * 5_000 + Math.floor(rnd() * 4_000) })),
    );
    const hits = await applyAll(new TopKUpdater(redis, prefix, 150), batches, 'exact');
    const flags = await expectAllWindowsHonest(redis, prefix, hits, 150, 12);
    for (const window of WINDOWS) {
      expect(flags[window]).toEqual(Array(12).fill(true));
      const a = await readTopKAnswer(redis, prefix, 'view', window, 100, now);
      expect(a.maxError).toBe(0);
      expect(a.items.map(({ entityId, count }) => ({ entityId, count }))).toEqual(exactTop(exactWindow(hits, 'view', window, now), 100));
    }
  });

  it('bounds a Zipf stream of 40 batches with 20 times more entities than the capacity', async () => {
    const { redis, prefix } = redisFor();
    const rnd = prng(12);
    const next = zipf(2_000, 1.1, rnd);
    const batches = Array.from({ length: 40 }, (_, b) =>
      Array.from({ length: 500 }, () => ({ entityId: `z-${next()}`, eventType: 'view', ts: now - 200_000 + b * 5_000 + Math.floor(rnd() * 4_000) })),
    );
    const hits = await applyAll(new TopKUpdater(redis, prefix, 100), batches, 'zipf');
    const flags = await expectAllWindowsHonest(redis, prefix, hits, 100, 10);
    // the heavy hitters of a Zipf stream stand out by far more than N / m: the top 3 are certain in every window
    for (const window of WINDOWS) expect({ window, top3: flags[window]!.slice(0, 3) }).toEqual({ window, top3: [true, true, true] });
  });

  it('bounds an adversarial stream and never guarantees a top-k that misses an entity left out of every batch', async () => {
    const { redis, prefix } = redisFor();
    const capacity = 20;
    const batches: Hit[][] = [];
    for (let b = 0; b < 30; b++) {
      const ts = now - 200_000 + b * 5_000;
      const batch: Hit[] = [];
      const add = (entityId: string, n: number) => {
        for (let i = 0; i < n; i++) batch.push({ entityId, eventType: 'view', ts: ts + (i % 4_000) });
      };
      add('heavy-0', 100);
      add('heavy-1', 90);
      add('heavy-2', 80);
      // 40 of 200 mid-frequency entities per batch, in rotation: each in 6 batches, 6 events each time
      for (let j = 0; j < 40; j++) add(`mid-${String((b * 40 + j) % 200).padStart(3, '0')}`, 6);
      // fewer events than the 40 mid entities in every batch, so every batch's summary leaves it out, yet its total
      // (150) is the 4th largest
      add('thin', 5);
      batches.push(batch);
    }
    const hits = await applyAll(new TopKUpdater(redis, prefix, capacity), batches, 'adv');
    const flags = await expectAllWindowsHonest(redis, prefix, hits, capacity, 8);
    for (const window of ['1h', '1d'] as const) {
      const truth = exactWindow(hits, 'view', window, now);
      expect(exactTop(truth, 4).map((e) => e.entityId)).toEqual(['heavy-0', 'heavy-1', 'heavy-2', 'thin']);
      const a = await readTopKAnswer(redis, prefix, 'view', window, 4, now);
      expect(a.items.slice(0, 3).map((i) => [i.entityId, i.lowerBound, i.upperBound])).toEqual([
        ['heavy-0', 3000, 3000],
        ['heavy-1', 2700, 2700],
        ['heavy-2', 2400, 2400],
      ]);
      expect(a.items.map((i) => i.entityId)).not.toContain('thin');
      expect(a.unlistedUpperBound).toBeGreaterThanOrEqual(150);
      expect({ window, top3: flags[window]!.slice(0, 3), top4: flags[window]![3] }).toEqual({ window, top3: [true, true, true], top4: false });
    }
  });

  it('merges by the mergeable-summaries rule: newcomers inherit the missing bound, evictions raise it', async () => {
    const { redis, prefix } = redisFor();
    const updater = new TopKUpdater(redis, prefix, 2);
    const ts = Math.floor((now - 5_000) / 10_000) * 10_000;
    const batch = (counts: Record<string, number>) => Object.entries(counts).map(([entityId, count]) => ({ entityId, eventType: 'view', bucketMs: ts, count }));
    const bucket = async () => (await readTopKBuckets(redis, prefix, 'view', '1m', [ts]))[0]!.summary;
    await updater.apply('1.parquet', batch({ a: 5, b: 5 }), now);
    expect(await bucket()).toEqual({
      items: [
        { entityId: 'a', count: 5, error: 0 },
        { entityId: 'b', count: 5, error: 0 },
      ],
      missingBound: 0,
      total: 10,
    });
    // c and d (6 each) replace a and b, which may have had 5: the missing bound becomes 5
    await updater.apply('2.parquet', batch({ c: 6, d: 6 }), now);
    expect(await bucket()).toEqual({
      items: [
        { entityId: 'c', count: 6, error: 0 },
        { entityId: 'd', count: 6, error: 0 },
      ],
      missingBound: 5,
      total: 22,
    });
    // a comes back with 2: it may have had 5 before, so [2, 7]; c (6) is evicted and becomes the missing bound
    await updater.apply('3.parquet', batch({ a: 2 }), now);
    expect(await bucket()).toEqual({
      items: [
        { entityId: 'd', count: 6, error: 0 },
        { entityId: 'a', count: 7, error: 5 },
      ],
      missingBound: 6,
      total: 24,
    });
    // a batch of 3 entities cut to 2: e and f are exact within it, g (≤ 1) reaches every other item as error
    await updater.apply('4.parquet', batch({ e: 9, f: 8, g: 1 }), now);
    expect(await bucket()).toEqual({
      items: [
        { entityId: 'f', count: 14, error: 6 },
        { entityId: 'e', count: 15, error: 6 },
      ],
      missingBound: 8,
      total: 42,
    });
    const truth = new Map([
      ['a', 7],
      ['b', 5],
      ['c', 6],
      ['d', 6],
      ['e', 9],
      ['f', 8],
      ['g', 1],
    ]);
    const a = await readTopKAnswer(redis, prefix, 'view', '1m', 1, now);
    expect(a).toEqual({
      items: [{ entityId: 'e', count: 15, lowerBound: 9, upperBound: 15 }],
      guaranteed: false,
      unlistedUpperBound: 14,
      total: 42,
      maxError: 8,
    });
    expectHonest(a, truth, 1, 2, 'worked example');
  });

  it('merges a batch once per bucket: a redelivery changes nothing, and a call that failed mid-batch resumes', async () => {
    const { redis, prefix } = redisFor();
    const updater = new TopKUpdater(redis, prefix, 10);
    const rnd = prng(13);
    const next = zipf(100, 1.0, rnd);
    // one batch touching 3 minutes: many 10-second buckets, so several Lua calls (one per tag)
    const batch = Array.from({ length: 2_000 }, () => ({ entityId: `z-${next()}`, eventType: 'view', ts: now - 180_000 + Math.floor(rnd() * 170_000) }));
    const other = Array.from({ length: 500 }, () => ({ entityId: `z-${next()}`, eventType: 'view', ts: now - 100_000 + Math.floor(rnd() * 90_000) }));
    await updater.apply('other.parquet', bucketCounts(other), now);

    // a worker whose Redis fails after the first call of the batch: the calls it made are durable, the rest not
    let calls = 0;
    const flaky = new Proxy(redis, {
      get(target, prop, receiver) {
        if (prop === 'eval')
          return (...args: unknown[]) => {
            if (++calls > 1) return Promise.reject(new Error('connection reset'));
            return (target.eval as (...a: unknown[]) => Promise<unknown>)(...args);
          };
        return Reflect.get(target, prop, receiver);
      },
    });
    await expect(new TopKUpdater(flaky, prefix, 10).apply('b.parquet', bucketCounts(batch), now)).rejects.toThrow(TransientError);
    expect(calls).toBeGreaterThan(1);
    const resumed = await updater.apply('b.parquet', bucketCounts(batch), now);
    expect(resumed).toBeGreaterThan(0);
    expect(await updater.apply('b.parquet', bucketCounts(batch), now)).toBe(0);

    // the same answer as a store that merged each batch once, without failures
    const { prefix: clean } = redisFor();
    const once = new TopKUpdater(redis, clean, 10);
    await once.apply('other.parquet', bucketCounts(other), now);
    expect(await once.apply('b.parquet', bucketCounts(batch), now)).toBeGreaterThan(resumed); // the failed delivery had merged some
    for (const window of WINDOWS) {
      expect(await readTopKAnswer(redis, prefix, 'view', window, 20, now)).toEqual(await readTopKAnswer(redis, clean, 'view', window, 20, now));
      expectHonest(await readTopKAnswer(redis, prefix, 'view', window, 20, now), exactWindow([...batch, ...other], 'view', window, now), 20, 10, window);
    }
  });

  it('fails with a retryable error naming Redis when Redis is unreachable', async () => {
    const down = createRedis({ SLUICE_REDIS_URL: 'redis://127.0.0.1:1' }, { lazy: true });
    down.on('error', () => undefined);
    clients.push(down);
    const err = await new TopKUpdater(down, 'p:', 10)
      .apply('x.parquet', bucketCounts([{ entityId: 'a', eventType: 'view', ts: now }]), now)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as TransientError).message).toContain('Redis top-K update failed');
    expect((err as TransientError).code).toBe('topk_unavailable');
  });
});
