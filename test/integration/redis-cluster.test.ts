// Shared state on a real 3-master Redis Cluster (localstack/redis-cluster.ts on free ports), through the client
// createRedis builds from SLUICE_REDIS_URL + SLUICE_REDIS_CLUSTER: the new-series budget, ingest's event-id
// reservations, the workers' top-K, all-time totals and ledger, and the query API's reads. Every key of one script call
// sits in one slot (a CROSSSLOT error fails the call), keys spread over the masters, and while the whole cluster is
// down commands fail fast with a retryable error instead of queueing. The local stack's cluster (`npm start` with
// SLUICE_REDIS_CLUSTER=true) is started at the seed nodes, reused while it answers, and comes back from its folder.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureRedisCluster } from '../../localstack/redis-cluster.js';
import { EventReservations, dedupIdentity } from '../../ingest/event-reservations.js';
import { createIngestMetrics } from '../../ingest/metrics.js';
import { SeriesBudget, seriesKey } from '../../ingest/series-budget.js';
import { type RedisClient, createRedis } from '../../shared/clients/redis.js';
import { readEntityTotal, totalKeys, totalsCompleteKey } from '../../shared/entity-totals-store.js';
import { isRetryable } from '../../shared/errors.js';
import { createLogger } from '../../shared/logger.js';
import { createRegistry } from '../../shared/metrics.js';
import { readTopK } from '../../shared/topk-store.js';
import { EntityTotalsUpdater } from '../../workers/entity-totals.js';
import { BatchLedger } from '../../workers/reconcile/ledger.js';
import { TopKUpdater } from '../../workers/topk.js';
import { TopKWindowCache } from '../../query/topk-cache.js';
import { TEST_ENDPOINTS } from '../support/endpoints.js';
import { freePort, freePorts, portIsFree } from '../support/ports.js';
import { type TestRedisCluster, startTestRedisCluster } from '../support/redis-cluster.js';

const log = createLogger('test', process.env.SLUICE_LOG_LEVEL ?? 'silent');

let cluster: TestRedisCluster;
let redis: RedisClient;

/** The port of the master that owns `key`'s slot. */
async function masterOf(key: string): Promise<number> {
  const slot = Number(await redis.cluster('KEYSLOT', key));
  const shards = await redis.cluster('SLOTS');
  const owner = shards.find(([from, to]) => slot >= from && slot <= to)?.[2];
  if (!owner) throw new Error(`no master owns slot ${slot}`);
  return owner[1];
}

beforeAll(async () => {
  cluster = await startTestRedisCluster();
  redis = createRedis({ SLUICE_REDIS_URL: cluster.url, SLUICE_REDIS_CLUSTER: true });
  await new Promise((r) => redis.once('ready', r));
}, 60_000);
afterAll(async () => {
  redis?.disconnect();
  await cluster?.stop();
});

describe('Redis Cluster', () => {
  it('is what createRedis builds from SLUICE_REDIS_CLUSTER, over every master', async () => {
    expect(redis).toBeInstanceOf(Cluster);
    expect(
      (redis as Cluster)
        .nodes('master')
        .map((n) => n.options.port)
        .sort(),
    ).toEqual([...cluster.ports].sort());
  });

  it('enforces the new-series budget per producer with every script key in one slot', async () => {
    const budget = new SeriesBudget({ redis, prefix: 'sluice-cluster:', maxNewPerMinute: 50, log, metrics: createIngestMetrics(createRegistry('ingest')) });
    const keys = Array.from({ length: 80 }, (_, i) => seriesKey(`e-${i}`, 'view'));
    const producers = Array.from({ length: 12 }, (_, i) => `producer-${i}`);
    const t = Date.now();
    for (const p of producers) {
      const a = await budget.admit(p, keys, t);
      expect({ p, rejected: a.rejected }).toEqual({ p, rejected: 30 });
      expect(a.reason).toContain(`producer ${p} created 50 new series`);
    }
    // Producers' keys spread over the masters, not one hot slot.
    const owners = new Set(await Promise.all(producers.map((p) => masterOf(`sluice-cluster:{s:${p}}:h:1`))));
    expect(owners.size).toBeGreaterThan(1);
  });

  it("reserves and confirms ingest's event ids per shard, the shards spread over the masters", async () => {
    const prefix = 'sluice-cluster-r:';
    const reservations = new EventReservations(redis, prefix, { windowMs: 600_000, leaseMs: 15_000, shards: 16 });
    const ids = Array.from({ length: 500 }, (_, i) => dedupIdentity('web', `id-${i}`));
    const first = await reservations.reserve(reservations.newToken(), ids);
    if (first.kind !== 'reserved') throw new Error(`reserve answered ${JSON.stringify(first)}`);
    expect(first.duplicate.some(Boolean)).toBe(false);
    expect(await reservations.confirm(first.reservation)).toBe('confirmed');
    const again = await reservations.reserve(reservations.newToken(), ids.slice(0, 200));
    expect(again.kind === 'reserved' && again.duplicate.every(Boolean)).toBe(true);
    const masters = new Set(await Promise.all(Array.from({ length: 16 }, (_, s) => masterOf(reservations.bucketKey(s, 1)))));
    expect(masters.size).toBeGreaterThan(1);
  });

  it('applies top-K and all-time totals once per batch, and the query reads see them', async () => {
    const prefix = 'sluice-cluster-w:';
    const now = Date.now();
    const counts = ['view', 'like', 'share'].flatMap((eventType) =>
      Array.from({ length: 30 }, (_, i) => ({ entityId: `e-${i}`, eventType, bucketMs: Math.floor(now / 10_000) * 10_000, count: i + 1 })),
    );
    const topk = new TopKUpdater(redis, prefix, 100);
    expect(await topk.apply('a.parquet', counts, now)).toBeGreaterThan(0);
    expect(await topk.apply('a.parquet', counts, now)).toBe(0);
    expect((await readTopK(redis, prefix, 'like', '1h', 3, now)).map((e) => e.count)).toEqual([30, 29, 28]);
    // the query API's cached read: a pipeline and a MULTI, each within the tag's slot
    expect((await new TopKWindowCache(redis, prefix, { keep: 4 }).read('like', '1h', now)).ranked.items.map((e) => e.count)).toEqual([30, 29, 28, 27]);
    // Each (event type, resolution) has its own tag: the types' top-K land on more than one master.
    expect(new Set(await Promise.all(['view', 'like', 'share', 'click', 'buy'].map((t) => masterOf(`${prefix}{topk:${t}:1m}:0`)))).size).toBeGreaterThan(1);

    const totals = new EntityTotalsUpdater(redis, prefix);
    expect(await totals.markCompleteIfEmpty(async () => 0)).toBe(true);
    const rows = counts.map((c) => ({ entityId: c.entityId, eventType: c.eventType, count: c.count, sum: c.count * 2 }));
    expect(await totals.apply('a.parquet', rows)).toBe(3);
    expect(await totals.apply('a.parquet', rows)).toBe(0);
    // The read of one total touches the completeness marker and the type's hashes: two slots, on two masters here.
    const k = totalKeys(prefix, 'share');
    expect(await masterOf(totalsCompleteKey(prefix))).not.toBe(await masterOf(k.count));
    expect(await readEntityTotal(redis, prefix, 'e-29', 'share')).toEqual({ count: 30, sum: 60 });
    expect(await readEntityTotal(redis, prefix, 'never-seen', 'share')).toEqual({ count: 0, sum: 0 });
  });

  it('records delivered batches in the ledger, one key per batch spread over the slots', async () => {
    const ledger = new BatchLedger(redis, 'sluice-cluster-l:', 60_000);
    const keys = Array.from({ length: 40 }, (_, i) => `events/dt=2026-01-01/hour=00/node-${i}.parquet`);
    for (const k of keys.slice(0, 25)) await ledger.record(k);
    expect([...(await ledger.delivered(keys))].sort()).toEqual(keys.slice(0, 25).sort());
    expect(new Set(await Promise.all(keys.map((k) => masterOf(ledger.keyOf(k))))).size).toBe(cluster.ports.length);
  });
});

describe('Redis Cluster unreachable', () => {
  it('fails a command within seconds with a retryable error instead of queueing it', async () => {
    const ports = await freePorts(3); // nothing listens there
    const down = createRedis({ SLUICE_REDIS_URL: ports.map((p) => `redis://127.0.0.1:${p}`).join(','), SLUICE_REDIS_CLUSTER: true });
    down.on('error', () => undefined);
    try {
      const t0 = Date.now();
      const err = await down.get('any').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect(isRetryable(err)).toBe(true);
      expect(Date.now() - t0).toBeLessThan(5_000);
    } finally {
      down.disconnect();
    }
  });
});

describe("the local stack's Redis Cluster", () => {
  /** A free port whose cluster bus port (+10000, Redis' default that `npm start` keeps) is free too. */
  async function portWithBus(taken: Set<number>): Promise<number> {
    for (;;) {
      const p = await freePort();
      if (p + 10_000 > 65_535 || taken.has(p) || taken.has(p + 10_000) || !(await portIsFree(p + 10_000))) continue;
      taken.add(p).add(p + 10_000);
      return p;
    }
  }

  it('is started at the seed nodes, reused while it answers, and comes back from its folder with its keys', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'sluice-stack-'));
    const taken = new Set<number>();
    const ports = [await portWithBus(taken), await portWithBus(taken), await portWithBus(taken)];
    const url = ports.map((p) => `redis://127.0.0.1:${p}`).join(',');
    const maxMemory = 64 * 1024 * 1024;
    const started = await ensureRedisCluster(url, dataDir, log, maxMemory);
    try {
      expect(started.started).toBe(true);
      const reused = await ensureRedisCluster(url, dataDir, log, maxMemory);
      expect(reused.started).toBe(false);
      const c = createRedis({ SLUICE_REDIS_URL: url, SLUICE_REDIS_CLUSTER: true });
      const keys = Array.from({ length: 30 }, (_, i) => `stack:{k${i}}`);
      for (const k of keys) await c.set(k, k);
      const maxmemory = await Promise.all((c as Cluster).nodes('master').map((n) => n.config('GET', 'maxmemory')));
      expect(maxmemory.map((m) => (m as string[])[1])).toEqual([String(maxMemory), String(maxMemory), String(maxMemory)]);
      c.disconnect();
      await started.stop();

      const again = await ensureRedisCluster(url, dataDir, log, maxMemory);
      try {
        expect(again.started).toBe(true);
        const d = createRedis({ SLUICE_REDIS_URL: url, SLUICE_REDIS_CLUSTER: true });
        expect(await Promise.all(keys.map((k) => d.get(k)))).toEqual(keys);
        d.disconnect();
      } finally {
        await again.stop();
      }
    } finally {
      await started.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 90_000);

  it('says what to do when it cannot start the cluster SLUICE_REDIS_URL names', async () => {
    const [a, b] = await freePorts(2);
    await expect(ensureRedisCluster(`redis://127.0.0.1:${a},redis://127.0.0.1:${b}`, os.tmpdir(), log, 0)).rejects.toThrow(
      /one Redis Cluster master per seed node in SLUICE_REDIS_URL and needs at least 3, got redis:\/\/127.0.0.1:\d+,redis:\/\/127.0.0.1:\d+/,
    );
    await expect(ensureRedisCluster('redis://:pw@cache.invalid:7000', os.tmpdir(), log, 0)).rejects.toThrow(
      'Redis Cluster is not answering at redis://***@cache.invalid:7000 (SLUICE_REDIS_URL) and is not on 127.0.0.1, so it cannot be started here',
    );
    // A single Redis is not a cluster: the shared test Redis answers, but not as a cluster.
    const single = TEST_ENDPOINTS.redisUrl;
    await expect(ensureRedisCluster(`${single},${single},${single}`, os.tmpdir(), log, 0)).rejects.toThrow(/answers but is not a Redis Cluster in state ok/);
  });
});
