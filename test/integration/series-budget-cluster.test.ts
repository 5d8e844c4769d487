// The new-series budget on a real 3-master Redis Cluster (private redis-server processes on free ports): every key
// of one script call sits in one slot (no CROSSSLOT error, which would fail open and let everything through), and
// producers spread over the masters.
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
});
