// Shared state on a real 3-master Redis Cluster (private redis-server processes on free ports): the new-series budget,
// the workers' event-id claims, top-K and all-time totals, and the top-K read. Every key of one script call sits in
// one slot (a CROSSSLOT error fails the call), and keys spread over the masters.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIngestMetrics } from '../../ingest/metrics.js';
import { SeriesBudget, seriesKey } from '../../ingest/series-budget.js';
import { createLogger } from '../../shared/logger.js';
import { createRegistry } from '../../shared/metrics.js';
import type { Redis } from 'ioredis';
import { totalKeys } from '../../shared/entity-totals-store.js';
import { readTopK } from '../../shared/topk-store.js';
import { EntityTotalsUpdater } from '../../workers/entity-totals.js';
import { CLAIM_SHARDS, EventDedup } from '../../workers/event-dedup.js';
import { TopKUpdater } from '../../workers/topk.js';

const log = createLogger('test', process.env.SLUICE_LOG_LEVEL ?? 'silent');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('new-series budget on Redis Cluster', () => {
  const nodes: ChildProcess[] = [];
  let ports: number[] = [];
  let cluster: Cluster;
  beforeAll(async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-cluster-'));
    ports = [await freePort(), await freePort(), await freePort()];
    for (const port of ports) {
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`];
      nodes.push(spawn('redis-server', [...args, '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }));
    }
    for (const port of ports) {
      for (
        let i = 0;
        spawnSync('redis-cli', ['-p', String(port), 'ping'])
          .stdout?.toString()
          .trim() !== 'PONG';
        i++
      ) {
        if (i > 100) throw new Error(`redis-server on port ${port} did not start`);
        await sleep(50);
      }
    }
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stderr.toString()}${create.stdout.toString()}`);
    for (let i = 0; !/cluster_state:ok/.test(spawnSync('redis-cli', ['-p', String(ports[0]), 'cluster', 'info']).stdout.toString()); i++) {
      if (i > 200) throw new Error('the cluster never reached cluster_state:ok');
      await sleep(50);
    }
    cluster = new Cluster(ports.map((port) => ({ host: '127.0.0.1', port })));
    await new Promise((r) => cluster.once('ready', r));
  }, 60_000);
  afterAll(async () => {
    cluster?.disconnect();
    for (const n of nodes) n.kill('SIGTERM');
  });

  it('enforces the budget per producer with every script key in one slot', async () => {
    const budget = new SeriesBudget({
      redis: cluster,
      prefix: 'sluice-cluster:',
      maxNewPerMinute: 50,
      log,
      metrics: createIngestMetrics(createRegistry('ingest')),
    });
    const keys = Array.from({ length: 80 }, (_, i) => seriesKey(`e-${i}`, 'view'));
    const producers = Array.from({ length: 12 }, (_, i) => `producer-${i}`);
    const t = Date.now();
    for (const p of producers) {
      const a = await budget.admit(p, keys, t);
      expect({ p, rejected: a.rejected }).toEqual({ p, rejected: 30 });
      expect(a.reason).toContain(`producer ${p} created 50 new series`);
    }
    // Producers' keys spread over the masters, not one hot slot.
    const owners = new Set<number>();
    for (const p of producers) {
      const slot = Number(await cluster.cluster('KEYSLOT', `sluice-cluster:{s:${p}}:h:1`));
      const shards = await cluster.cluster('SLOTS');
      const owner = shards.find(([from, to]) => slot >= from && slot <= to)?.[2];
      if (!owner) throw new Error(`no master owns slot ${slot}`);
      owners.add(owner[1]);
    }
    expect(owners.size).toBeGreaterThan(1);
  });

  it('runs the worker scripts (event-id claims, top-K, all-time totals) and the top-K read with every call in one slot', async () => {
    const redis = cluster as unknown as Redis;
    const prefix = 'sluice-cluster-w:';
    const dedup = new EventDedup(redis, prefix, 10 * 60_000);
    const ids = Array.from({ length: 500 }, (_, i) => `p\u001fid-${i}`);
    expect((await dedup.claim('a.parquet', ids)).excluded).toEqual([]);
    expect((await dedup.claim('b.parquet', ids.slice(0, 200))).excluded).toEqual(ids.slice(0, 200));
    expect(await dedup.release('a.parquet', ids.slice(0, 10))).toBe(10);
    // Claims spread over more than one master.
    const shards = await cluster.cluster('SLOTS');
    const masters = new Set<number>();
    for (let shard = 0; shard < CLAIM_SHARDS; shard++) {
      const slot = Number(await cluster.cluster('KEYSLOT', dedup.windowKeys(Date.now(), shard)[0]!));
      const owner = shards.find(([from, to]) => slot >= from && slot <= to)?.[2];
      if (!owner) throw new Error(`no master owns slot ${slot}`);
      masters.add(owner[1]);
    }
    expect(masters.size).toBeGreaterThan(1);

    const now = Date.now();
    const counts = ['view', 'like', 'share'].flatMap((eventType) =>
      Array.from({ length: 30 }, (_, i) => ({ entityId: `e-${i}`, eventType, bucketMs: Math.floor(now / 10_000) * 10_000, count: i + 1 })),
    );
    const topk = new TopKUpdater(redis, prefix, 100);
    expect(await topk.apply('a.parquet', counts, now)).toBeGreaterThan(0);
    expect(await topk.apply('a.parquet', counts, now)).toBe(0);
    expect((await readTopK(redis, prefix, 'like', '1h', 3, now)).map((e) => e.count)).toEqual([30, 29, 28]);

    const totals = new EntityTotalsUpdater(redis, prefix);
    const rows = counts.map((c) => ({ entityId: c.entityId, eventType: c.eventType, count: c.count, sum: c.count * 2 }));
    expect(await totals.apply('a.parquet', rows)).toBe(3);
    expect(await totals.apply('a.parquet', rows)).toBe(0);
    const k = totalKeys(prefix, 'share');
    expect(Number(await cluster.hget(k.count, 'e-29'))).toBe(30);
    expect(Number(await cluster.hget(k.sum, 'e-29'))).toBe(60);
  });
});
