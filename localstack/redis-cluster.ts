// A real Redis Cluster on loopback for the local stack and the tests: one Debian `redis-server` per port in cluster
// mode, joined by `redis-cli --cluster create … --cluster-replicas 0` (every node a master), ready once every node
// reports cluster_state:ok and knows all the others. A cluster already answering at the seed nodes is reused and never
// stopped; what this module starts, it stops. Nodes keep their data and cluster config under their folder, so a
// cluster started again from the same folder comes back with its slots and keys.
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { maskUrl, splitRedisUrls } from '../shared/config-fields.js';
import type { Logger } from '../shared/logger.js';
import { SupervisedProcess } from '../shared/process-supervisor.js';
import { sleep } from '../shared/retry.js';
import type { LocalServiceOptions, RunningService } from './services.js';

const run = promisify(execFile);
const HOST = '127.0.0.1';
/** Masters of a cluster this module starts: the fewest Redis Cluster accepts without replicas. */
export const CLUSTER_MASTERS = 3;

export interface RedisClusterOptions {
  /** One port per master on 127.0.0.1 (at least 3). */
  ports: readonly number[];
  /** Each node's cluster bus port (default: its port + 10000, Redis' own rule). */
  busPorts?: readonly number[];
  /** Parent folder of each node's folder (`<dir>/<port>`: nodes.conf, AOF, log). */
  dir: string;
  log: Logger;
  /** maxmemory of each node (policy noeviction); 0 = no limit. */
  maxMemoryBytes?: number;
  /** AOF with fsync every second, as the single Redis of the local stack (default); off for throwaway test clusters. */
  appendOnly?: boolean;
  /** How long to wait for the nodes and for cluster_state:ok. */
  timeoutMs?: number;
  /** Each node in a process group of its own (see LocalServiceOptions in services.ts). */
  ownProcessGroup?: boolean;
}

export interface RunningRedisCluster extends RunningService {
  /** SLUICE_REDIS_URL for it: every node, comma-separated (used with SLUICE_REDIS_CLUSTER=true). */
  url: string;
  ports: readonly number[];
  /** Each node's process (fault tests kill one). */
  nodes: readonly SupervisedProcess[];
}

/** One redis-cli command against a node: its output, or undefined when the node does not answer. */
async function cli(port: number, args: string[], host = HOST): Promise<string | undefined> {
  try {
    const { stdout } = await run('redis-cli', ['-h', host, '-p', String(port), ...args], { timeout: 2_000 });
    return stdout;
  } catch {
    return undefined;
  }
}

/** A field of CLUSTER INFO (cluster_state, cluster_known_nodes, cluster_slots_assigned …). */
function infoField(info: string | undefined, field: string): string | undefined {
  return info && new RegExp(`^${field}:(\\S+)`, 'm').exec(info)?.[1];
}

/** Whether every node answers CLUSTER INFO with cluster_state:ok and knows all `ports.length` nodes. */
async function clusterOk(ports: readonly number[]): Promise<boolean> {
  const infos = await Promise.all(ports.map((p) => cli(p, ['cluster', 'info'])));
  return infos.every((i) => infoField(i, 'cluster_state') === 'ok' && Number(infoField(i, 'cluster_known_nodes')) === ports.length);
}

async function waitUntil(what: string, check: () => Promise<boolean>, nodes: readonly SupervisedProcess[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const dead = nodes.find((n) => !n.running);
    if (dead) throw new Error(`${dead.name} exited (code ${dead.exitCode}) while ${what}; see ${dead.logFile}`);
    if (await check()) return;
    await sleep(100);
  }
  throw new Error(`Redis Cluster: timed out after ${timeoutMs / 1000}s ${what}; see ${nodes.map((n) => n.logFile).join(', ')}`);
}

/**
 * Starts a Redis Cluster of one master per port and waits until it serves every slot. Fresh nodes are joined with
 * `redis-cli --cluster create`; nodes that come back from their folder (nodes.conf) rejoin by themselves.
 */
export async function startRedisCluster(o: RedisClusterOptions): Promise<RunningRedisCluster> {
  if (o.ports.length < CLUSTER_MASTERS) throw new Error(`a Redis Cluster needs at least ${CLUSTER_MASTERS} masters, got ports ${o.ports.join(', ')}`);
  const timeoutMs = o.timeoutMs ?? 60_000;
  const busy = (await Promise.all(o.ports.map(async (p) => ((await cli(p, ['ping']))?.trim() === 'PONG' ? p : undefined)))).filter((p) => p !== undefined);
  if (busy.length) throw new Error(`cannot start a Redis Cluster node on port ${busy.join(', ')}: something already answers there`);
  if (o.busPorts && o.busPorts.length !== o.ports.length)
    throw new Error(`one cluster bus port per node: got ${o.busPorts.length} for ${o.ports.length} ports`);
  const nodes = o.ports.map((port, i) => {
    const dir = path.resolve(o.dir, String(port));
    mkdirSync(dir, { recursive: true });
    // Durability as the single Redis of the local stack (localstack/services.ts): AOF, fsync every second, noeviction.
    const durability = (o.appendOnly ?? true) ? ['--appendonly', 'yes', '--appendfsync', 'everysec'] : ['--appendonly', 'no'];
    return new SupervisedProcess(
      `redis-server :${port}`,
      [
        'redis-server',
        '--bind',
        HOST,
        '--port',
        String(port),
        '--dir',
        dir,
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        path.join(dir, 'nodes.conf'),
        ...(o.busPorts ? ['--cluster-port', String(o.busPorts[i])] : []),
        ...durability,
        '--save',
        '',
        '--protected-mode',
        'yes',
        '--daemonize',
        'no',
        '--maxmemory',
        String(o.maxMemoryBytes ?? 0),
        '--maxmemory-policy',
        'noeviction',
      ],
      { logFile: path.join(dir, 'redis.log'), ownProcessGroup: o.ownProcessGroup === true },
    );
  });
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop(10_000)));
  };
  let fresh = false;
  try {
    await waitUntil(
      'starting its nodes',
      async () => (await Promise.all(o.ports.map((p) => cli(p, ['ping'])))).every((r) => r?.trim() === 'PONG'),
      nodes,
      timeoutMs,
    );
    const infos = await Promise.all(o.ports.map((p) => cli(p, ['cluster', 'info'])));
    fresh = infos.every((i) => Number(infoField(i, 'cluster_slots_assigned')) === 0 && Number(infoField(i, 'cluster_known_nodes')) === 1);
    if (fresh) {
      try {
        await run('redis-cli', ['--cluster', 'create', ...o.ports.map((p) => `${HOST}:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
          timeout: timeoutMs,
        });
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; message: string };
        throw new Error(`redis-cli --cluster create failed: ${e.stderr || e.stdout || e.message}`);
      }
    }
    await waitUntil('waiting for cluster_state:ok on every node', () => clusterOk(o.ports), nodes, timeoutMs);
  } catch (err) {
    await stop();
    throw err;
  }
  const url = o.ports.map((p) => `redis://${HOST}:${p}`).join(',');
  o.log.info({ url, dir: o.dir, created: fresh }, fresh ? 'started a new Redis Cluster' : 'started a Redis Cluster from its folder');
  return {
    name: 'redis-cluster',
    started: true,
    url,
    ports: o.ports,
    nodes,
    stop,
    async kill(signal) {
      for (const n of nodes) n.kill(signal);
      await Promise.all(nodes.map((n) => n.exited));
    },
  };
}

/**
 * The cluster SLUICE_REDIS_URL names (SLUICE_REDIS_CLUSTER=true): reused when its seed nodes answer as a cluster in
 * state ok; otherwise started here, one master per seed node, when they are all on loopback and at least 3.
 */
export async function ensureRedisCluster(
  urls: string,
  dataDir: string,
  log: Logger,
  maxMemoryBytes: number,
  opts: LocalServiceOptions = {},
): Promise<RunningService> {
  const seeds = splitRedisUrls(urls).map((s) => new URL(s));
  const ports = seeds.map((u) => Number(u.port || 6379));
  const shown = maskUrl(urls);
  const local = seeds.every((u) => u.hostname === HOST || u.hostname === 'localhost');
  const infos = await Promise.all(seeds.map((u, i) => cli(ports[i]!, ['cluster', 'info'], u.hostname.replace(/^\[(.*)\]$/, '$1'))));
  if (infos.some((i) => infoField(i, 'cluster_state') === 'ok')) return { name: 'redis-cluster', started: false, stop: async () => undefined };
  if (!local) throw new Error(`Redis Cluster is not answering at ${shown} (SLUICE_REDIS_URL) and is not on 127.0.0.1, so it cannot be started here`);
  if (infos.some((i) => i !== undefined))
    throw new Error(`Redis at ${shown} (SLUICE_REDIS_URL) answers but is not a Redis Cluster in state ok; stop it, or point SLUICE_REDIS_URL at a cluster`);
  if (ports.length < CLUSTER_MASTERS)
    throw new Error(
      `the local stack starts one Redis Cluster master per seed node in SLUICE_REDIS_URL and needs at least ${CLUSTER_MASTERS}, got ${shown} (e.g. redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002)`,
    );
  return startRedisCluster({ ports, dir: path.resolve(dataDir, 'redis-cluster'), log, maxMemoryBytes, ownProcessGroup: opts.ownProcessGroup });
}
