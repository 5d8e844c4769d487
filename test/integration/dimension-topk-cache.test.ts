// /v1/topk?dimension=…&value=… from the query API's top-K window cache and its memo of attribute values, against real
// Redis (top-K buckets written by the workers' update code), a real dimension store (tables loaded as
// `sluice dimensions load` does, in the S3 emulator) and the real routes and key scopes: every answer equals the
// uncached computation (the whole window merged, every entity looked up, restrictRanked, answerTopK) over batches,
// approximate buckets and a table version change; a request with no new batch is a cache hit that looks up no entity
// again; a new table version is looked up anew; the memo stays within its bound; a failed lookup is an error, never a
// wrong answer, and leaves nothing behind.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rng } from '../../cli/random-samplers.js';
import { QueryAuth } from '../../query/auth.js';
import { DimensionValueMemo } from '../../query/dimension-values-memo.js';
import { installErrorHandling } from '../../query/http-errors.js';
import { createQueryMetrics } from '../../query/metrics.js';
import { TOPK_K_MAX } from '../../query/params.js';
import { registerDimensionTopK } from '../../query/routes/dimension-topk.js';
import { registerTopKRoute } from '../../query/routes/topk.js';
import { TopKWindowCache } from '../../query/topk-cache.js';
import { createS3 } from '../../shared/clients/aws.js';
import { createRedis, type RedisClient } from '../../shared/clients/redis.js';
import { type Config, PROJECT_ROOT } from '../../shared/config.js';
import { DimensionStore } from '../../shared/dimension-store.js';
import { createLogger } from '../../shared/logger.js';
import { createRegistry } from '../../shared/metrics.js';
import { openEngine, withConnection } from '../../shared/parquet.js';
import { readTopKWindow, type TopKWindow } from '../../shared/topk-store.js';
import { answerTopK, restrictRanked } from '../../shared/topk-summary.js';
import type { BucketCount } from '../../workers/batch-scan-types.js';
import { loadDimensionTable } from '../../workers/dimensions/table-load.js';
import { TOPK_BASE_BUCKET_MS, TopKUpdater } from '../../workers/topk.js';
import { testConfig } from '../support/config.js';

const log = createLogger('dimension-topk-cache-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const ATTRIBUTES = ['channel', 'category'];
type Table = Map<string, { channel?: string; category?: string }>;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  await openEngine({ tempDir: path.join(PROJECT_ROOT, '.data', 'tests', 'dimension-topk-cache-duckdb-tmp') });
});
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** e0…e29 known (e30…e39 unknown): channel <prefix><(i + shift) % 3>, category K<(i + shift) % 2> except multiples of 5. */
function tableOf(shift: number, prefix = 'C'): Table {
  const t: Table = new Map();
  for (let i = 0; i < 30; i++) t.set(`e${i}`, { channel: `${prefix}${(i + shift) % 3}`, ...(i % 5 === 0 ? {} : { category: `K${(i + shift) % 2}` }) });
  return t;
}

interface Setup {
  cfg: Config;
  app: FastifyInstance;
  redis: RedisClient;
  store: DimensionStore;
  memo: DimensionValueMemo;
  /** The requests' clock (the window ends here). */
  clock: { now: number };
  /** Writes `table` and loads it as the next version, then has the store use it. */
  load(table: Table): Promise<number>;
  /** Merges one batch as a worker does: `events` events over `entities` entities at random times of the last `spanMs`. */
  batch(events: number, entities: number, spanMs: number): Promise<void>;
  get(p: string, headers?: Record<string, string>): Promise<{ status: number; body: any; cache: string | undefined }>;
  /** The answer computed without any cache. */
  reference(eventType: string, window: TopKWindow, dimension: string, value: string, k: number, prefix?: string): Promise<unknown>;
}

async function setup(opts: { capacity: number; memoMax?: number; seed?: number }): Promise<Setup> {
  const cfg = await testConfig({
    SLUICE_DIMENSIONS: ATTRIBUTES.join(','),
    SLUICE_QUERY_API_KEYS: 'analyst:k-all,partner:k-part',
    SLUICE_QUERY_KEY_SCOPES: 'partner:entity=e1',
  });
  const redis = createRedis(cfg);
  const s3 = createS3(cfg);
  const store = new DimensionStore({
    s3,
    bucket: cfg.SLUICE_RAW_BUCKET,
    table: cfg.SLUICE_DIMENSIONS_TABLE,
    dir: path.join(cfg.SLUICE_DATA_DIR, 'query-dimensions'),
    pollMs: 0,
    log,
  });
  const memo = new DimensionValueMemo(store, opts.memoMax === undefined ? {} : { maxEntries: opts.memoMax });
  const clock = { now: Date.now() };
  const app = Fastify();
  installErrorHandling(app);
  const auth = new QueryAuth({ cfg, metrics: createQueryMetrics(createRegistry('query')), log });
  auth.install(app);
  const cache = new TopKWindowCache(redis, cfg.SLUICE_REDIS_PREFIX, { keep: TOPK_K_MAX + 1 });
  const now = () => clock.now;
  registerDimensionTopK(app, { redis, redisPrefix: cfg.SLUICE_REDIS_PREFIX, configured: ATTRIBUTES, store, now, scopeOf: auth.scopeOf, cache, values: memo });
  registerTopKRoute(app, { redis, redisPrefix: cfg.SLUICE_REDIS_PREFIX, now, scopeOf: auth.scopeOf, cache });
  await app.ready();
  cleanups.push(async () => {
    await app.close();
    await store.close();
    s3.destroy();
    redis.disconnect();
  });
  const updater = new TopKUpdater(redis, cfg.SLUICE_REDIS_PREFIX, opts.capacity);
  const r = rng(opts.seed ?? 7);
  let batches = 0;
  return {
    cfg,
    app,
    redis,
    store,
    memo,
    clock,
    async load(table) {
      const file = path.join(cfg.SLUICE_DATA_DIR, `table-${Date.now()}-${Math.random().toString(36).slice(2)}.csv`);
      writeFileSync(file, `entity_id,channel,category\n${[...table].map(([id, t]) => `${id},${t.channel ?? ''},${t.category ?? ''}`).join('\n')}\n`);
      const m = await loadDimensionTable(s3, cfg.SLUICE_RAW_BUCKET, {
        input: file,
        table: cfg.SLUICE_DIMENSIONS_TABLE,
        tempDir: path.join(cfg.SLUICE_DATA_DIR, 'dims-tmp'),
      });
      await store.refresh();
      expect(store.version).toBe(m.version);
      return m.version;
    },
    async batch(events, entities, spanMs) {
      const counts = new Map<string, BucketCount>();
      for (let i = 0; i < events; i++) {
        const entityId = `e${Math.floor(r() ** 2 * entities)}`;
        const bucketMs = Math.floor((clock.now - 1 - Math.floor(r() * spanMs)) / TOPK_BASE_BUCKET_MS) * TOPK_BASE_BUCKET_MS;
        const key = `${entityId} ${bucketMs}`;
        const c = counts.get(key);
        if (c) c.count++;
        else counts.set(key, { entityId, eventType: 'view', bucketMs, count: 1 });
      }
      await updater.apply(`b${batches++}.parquet`, [...counts.values()], clock.now);
    },
    async get(p, headers = {}) {
      const res = await app.inject({ method: 'GET', url: p, headers: { authorization: 'Bearer k-all', ...headers } });
      const cache = res.headers['x-sluice-cache'];
      return { status: res.statusCode, body: res.json(), cache: typeof cache === 'string' ? cache : undefined };
    },
    async reference(eventType, window, dimension, value, k, prefix) {
      const w = await readTopKWindow(redis, cfg.SLUICE_REDIS_PREFIX, eventType, window, 2 ** 31 - 1, clock.now);
      const { version, values } = await store.valuesOf(
        dimension,
        w.items.map((i) => i.entityId),
      );
      const a = answerTopK(
        restrictRanked(w, (id) => values.get(id) === value && (prefix === undefined || id.startsWith(prefix))),
        k,
      );
      const out = {
        eventType,
        window,
        k,
        dimension,
        value,
        dimVersion: version,
        items: a.items,
        guaranteed: a.guaranteed,
        unlistedUpperBound: a.unlistedUpperBound,
        maxError: a.maxError,
        candidates: w.items.length,
      };
      return prefix === undefined ? out : { ...out, filtered: { key: 'partner', entityPrefixes: [prefix] } };
    },
  };
}

const topk = (window: string, dimension: string, value: string, k: number) =>
  `/v1/topk?eventType=view&window=${window}&k=${k}&dimension=${dimension}&value=${value}`;

describe('/v1/topk?dimension=… from the window cache and the value memo', () => {
  it('answers what the uncached computation answers, over batches, approximate buckets, key scopes and a table version change', async () => {
    // Capacity 6 over 40 entities: buckets drop entities, so counts carry errors and `guaranteed` varies.
    const s = await setup({ capacity: 6 });
    expect(await s.load(tableOf(0))).toBe(1);
    const queries: [string, string][] = [
      ['channel', 'C0'],
      ['channel', 'C1'],
      ['channel', 'D1'],
      ['category', 'K0'],
      ['category', 'none'],
    ];
    const seen = new Set<string>();
    const versions = new Set<number>();
    let guaranteed = 0;
    let approximate = 0;
    for (let round = 0; round < 6; round++) {
      if (round === 3) expect(await s.load(tableOf(1, 'D'))).toBe(2);
      s.clock.now += 7_000;
      await s.batch(300, 40, round % 2 ? 50_000 : 50 * 60_000);
      for (const window of ['1m', '1h', '1d'] as const)
        for (const [dimension, value] of queries)
          for (const k of [2, 10]) {
            const got = await s.get(topk(window, dimension, value, k));
            expect(got.status).toBe(200);
            expect({ round, window, dimension, value, k, body: got.body }).toEqual({
              round,
              window,
              dimension,
              value,
              k,
              body: await s.reference('view', window, dimension, value, k),
            });
            seen.add(got.cache!);
            versions.add(got.body.dimVersion);
            if (got.body.items.length) got.body.guaranteed ? guaranteed++ : approximate++;
          }
      // A key scoped to e1…: only its entities, ranked among themselves.
      const scoped = await s.app.inject({
        method: 'GET',
        url: topk('1h', 'channel', round < 3 ? 'C1' : 'D2', 10),
        headers: { authorization: 'Bearer k-part' },
      });
      expect(scoped.json()).toEqual(await s.reference('view', '1h', 'channel', round < 3 ? 'C1' : 'D2', 10, 'e1'));
      expect(scoped.json().items.length).toBeGreaterThan(0);
    }
    expect([...seen].sort()).toEqual(['hit', 'miss']);
    expect([...versions].sort()).toEqual([1, 2]);
    expect(guaranteed).toBeGreaterThan(0);
    expect(approximate).toBeGreaterThan(0);
    // Cache-Control: no-cache revalidates, like /v1/topk.
    const re = await s.get(topk('1h', 'channel', 'D0', 10), { 'cache-control': 'no-cache' });
    expect(re.cache).toBe('revalidated');
    expect(re.body).toEqual(await s.reference('view', '1h', 'channel', 'D0', 10));
  });

  it('answers a request with no new batch from the cache, looking up no entity again; a batch costs only its new entities', async () => {
    const s = await setup({ capacity: 1000 });
    await s.load(tableOf(0));
    await s.batch(400, 20, 30 * 60_000);
    const first = await s.get(topk('1h', 'channel', 'C1', 5));
    expect(first.cache).toBe('miss');
    const candidates = first.body.candidates as number;
    expect(candidates).toBe(20);
    expect(s.memo.lookedUp).toBe(candidates);
    const again = await s.get(topk('1h', 'channel', 'C1', 5));
    expect(again).toEqual({ ...first, cache: 'hit' });
    // Another value, or another k, of the same attribute: nothing to look up.
    expect((await s.get(topk('1h', 'channel', 'C2', 3))).cache).toBe('hit');
    expect(s.memo.lookedUp).toBe(candidates);
    // Another attribute: its own lookups, once.
    expect((await s.get(topk('1h', 'category', 'K1', 5))).cache).toBe('hit');
    expect(s.memo.lookedUp).toBe(2 * candidates);
    expect((await s.get(topk('1h', 'category', 'K0', 5))).cache).toBe('hit');
    expect(s.memo.lookedUp).toBe(2 * candidates);
    expect(s.memo.size).toBe(2 * candidates);
    // The plain /v1/topk route shares the window cache.
    const plain = await s.app.inject({ method: 'GET', url: '/v1/topk?eventType=view&window=1h&k=3', headers: { authorization: 'Bearer k-all' } });
    expect(plain.headers['x-sluice-cache']).toBe('hit');
    // A batch with entities the window already holds and two new ones (e20, e33): the window is merged again, and
    // only the two are looked up.
    s.clock.now += 1_000;
    await addCounts(s, { e1: 5, e20: 3, e33: 2 });
    const after = await s.get(topk('1h', 'channel', 'C1', 5));
    expect(after.cache).toBe('miss');
    expect(after.body).toEqual(await s.reference('view', '1h', 'channel', 'C1', 5));
    expect(after.body.candidates).toBe(22);
    expect(s.memo.lookedUp).toBe(2 * candidates + 2);
    expect((await s.get(topk('1h', 'channel', 'C1', 5))).cache).toBe('hit');
    // Cache-Control: no-cache re-reads the buckets, not the values.
    expect((await s.get(topk('1h', 'channel', 'C1', 5), { 'cache-control': 'no-cache' })).cache).toBe('revalidated');
    expect(s.memo.lookedUp).toBe(2 * candidates + 2);
  });

  it('ranks exactly when the memo does not know the top of the window: a value of the long tail, a popular one, a new entity', async () => {
    // 300 entities, e<i> with 1000 − i events: more than the window cache keeps ranked (TOPK_K_MAX + 1).
    const s = await setup({ capacity: 1000 });
    const table: Table = new Map();
    for (let i = 0; i < 300; i++) table.set(`e${i}`, { channel: i >= 250 ? 'rare' : 'common', category: 'all' });
    table.set('e900', { channel: 'rare', category: 'all' });
    await s.load(table);
    await addCounts(s, Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`e${i}`, 1000 - i])));
    // Cold memo, rare value: none of its entities is among the first ranked, which are looked up and dropped.
    const rare = await s.get(topk('1h', 'channel', 'rare', 10));
    expect(rare.cache).toBe('miss');
    expect(rare.body).toEqual(await s.reference('view', '1h', 'channel', 'rare', 10));
    expect(rare.body.items.map((i: { entityId: string }) => i.entityId)).toEqual(Array.from({ length: 10 }, (_, i) => `e${250 + i}`));
    expect(s.memo.lookedUp).toBe(300);
    // Cold memo of another attribute, a value every entity has: answered from the first ranking.
    const all = await s.get(topk('1h', 'category', 'all', 100));
    expect(all.body).toEqual(await s.reference('view', '1h', 'category', 'all', 100));
    expect(s.memo.lookedUp).toBe(600);
    // A batch brings an unknown entity to the top: looked up, and ranked first.
    s.clock.now += 1_000;
    await addCounts(s, { e900: 5_000, e0: 1 });
    const top = await s.get(topk('1h', 'channel', 'rare', 10));
    expect(top.cache).toBe('miss');
    expect(top.body).toEqual(await s.reference('view', '1h', 'channel', 'rare', 10));
    expect(top.body.items[0]).toMatchObject({ entityId: 'e900', count: 5_000 });
    expect(s.memo.lookedUp).toBe(601);
    expect((await s.get(topk('1h', 'channel', 'common', 5))).body).toEqual(await s.reference('view', '1h', 'channel', 'common', 5));
    expect(s.memo.lookedUp).toBe(601);
  });

  it('looks entities up once for concurrent requests on a cold memo', async () => {
    const s = await setup({ capacity: 1000 });
    await s.load(tableOf(0));
    await s.batch(400, 40, 30 * 60_000);
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => s.get(topk('1h', 'channel', `C${i % 3}`, 10))));
    const candidates = answers[0]!.body.candidates as number;
    expect(candidates).toBe(40);
    expect(s.memo.lookedUp).toBe(candidates);
    for (const [i, a] of answers.entries()) expect(a.body).toEqual(await s.reference('view', '1h', 'channel', `C${i % 3}`, 10));
    expect(answers.filter((a) => a.cache === 'miss')).toHaveLength(1);
  });

  it('uses a new table version at once: the new values, its dimVersion, each entity looked up again in it', async () => {
    const s = await setup({ capacity: 1000 });
    await s.load(tableOf(0));
    await s.batch(400, 30, 30 * 60_000);
    const v1 = await s.get(topk('1h', 'channel', 'C0', 10));
    expect(v1.body.dimVersion).toBe(1);
    const looked = s.memo.lookedUp;
    expect(looked).toBe(30);
    // Version 2 renames C0 to D0 and moves every entity to another channel; no batch in between.
    const v2table = tableOf(1, 'D');
    expect(await s.load(v2table)).toBe(2);
    const old = await s.get(topk('1h', 'channel', 'C0', 10));
    expect(old.cache).toBe('hit');
    expect(old.body).toMatchObject({ dimVersion: 2, items: [], guaranteed: true });
    expect(s.memo.lookedUp).toBe(2 * looked);
    expect(s.memo.size).toBe(looked);
    const renamed = await s.get(topk('1h', 'channel', 'D0', 10));
    expect(renamed.body).toEqual(await s.reference('view', '1h', 'channel', 'D0', 10));
    expect(renamed.body.dimVersion).toBe(2);
    const members = renamed.body.items.map((i: { entityId: string }) => i.entityId);
    expect(members.length).toBeGreaterThan(0);
    for (const id of members) expect(v2table.get(id)?.channel).toBe('D0');
    // v1's C0 members are not all D0 members of v2.
    expect(v1.body.items.map((i: { entityId: string }) => i.entityId)).not.toEqual(members);
    expect(s.memo.lookedUp).toBe(2 * looked);
  });

  it('keeps the memo within its bound, least recently used first, and merges the window itself when it cannot hold a window', async () => {
    // 40 entities in the window, memo of 45: one attribute fits, both do not.
    const s = await setup({ capacity: 1000, memoMax: 45 });
    await s.load(tableOf(0));
    await s.batch(600, 40, 30 * 60_000);
    const channel = await s.get(topk('1h', 'channel', 'C1', 10));
    expect(channel.body.candidates).toBe(40);
    expect(channel.cache).toBe('miss');
    expect(s.memo.size).toBe(40);
    // category's 40 push out channel's least recently used (down to 90 % of the bound)
    const category = await s.get(topk('1h', 'category', 'K1', 10));
    expect(category.cache).toBe('hit');
    expect(category.body).toEqual(await s.reference('view', '1h', 'category', 'K1', 10));
    expect(s.memo.size).toBeLessThanOrEqual(45);
    const before = s.memo.lookedUp;
    expect((await s.get(topk('1h', 'category', 'K0', 10))).body).toEqual(await s.reference('view', '1h', 'category', 'K0', 10));
    expect(s.memo.lookedUp).toBe(before); // the recently used attribute stayed
    expect((await s.get(topk('1h', 'channel', 'C1', 10))).body).toEqual(channel.body);
    expect(s.memo.lookedUp).toBeGreaterThan(before); // the other one was dropped
    expect(s.memo.size).toBeLessThanOrEqual(45);

    // A memo smaller than the window (it would evict what the ranking needs): the request merges the window and looks
    // every entity up itself, and still answers exactly.
    const tiny = await setup({ capacity: 1000, memoMax: 10 });
    await tiny.load(tableOf(0));
    await tiny.batch(600, 40, 30 * 60_000);
    const t = await tiny.get(topk('1h', 'channel', 'C2', 10));
    expect(t.cache).toBe('bypass');
    expect(t.body).toEqual(await tiny.reference('view', '1h', 'channel', 'C2', 10));
    expect(tiny.memo.size).toBeLessThanOrEqual(10);
  });

  it('answers an error, never a partial answer, when the lookup fails, and memoizes nothing of it', async () => {
    const s = await setup({ capacity: 1000 });
    await s.load(tableOf(0));
    await s.batch(400, 30, 30 * 60_000);
    // The store's attached database goes away behind its back (a deleted file, a broken engine): every lookup fails.
    // Other tests' stores share this process's engine: the one to detach is the one whose file is in this test's folder.
    const files = await withConnection(async (c) => (await c.runAndReadAll('SELECT database_name, path FROM duckdb_databases()')).getRowObjectsJS());
    const alias = files.find((f) => String(f.path ?? '').startsWith(s.cfg.SLUICE_DATA_DIR))?.database_name;
    expect(alias).toBeDefined();
    await withConnection((c) => c.run(`DETACH "${String(alias)}"`));
    const failed = await s.get(topk('1h', 'channel', 'C1', 10));
    expect(failed.status).toBe(500);
    expect(failed.body).toEqual({ error: 'internal error; the query service logged the details' });
    expect(s.memo.size).toBe(0);
    // A new version is attached: answers are right again, every entity looked up in it.
    expect(await s.load(tableOf(0))).toBe(2);
    const ok = await s.get(topk('1h', 'channel', 'C1', 10));
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual(await s.reference('view', '1h', 'channel', 'C1', 10));
    expect(ok.body.dimVersion).toBe(2);
    expect(s.memo.size).toBe(30);
  });
});

/** Merges one batch of exact counts into the newest bucket. */
async function addCounts(s: Setup, counts: Record<string, number>): Promise<void> {
  const updater = new TopKUpdater(s.redis, s.cfg.SLUICE_REDIS_PREFIX, 1000);
  const bucketMs = Math.floor((s.clock.now - 1) / TOPK_BASE_BUCKET_MS) * TOPK_BASE_BUCKET_MS;
  await updater.apply(
    `extra-${s.clock.now}.parquet`,
    Object.entries(counts).map(([entityId, count]) => ({ entityId, eventType: 'view', bucketMs, count })),
    s.clock.now,
  );
}
