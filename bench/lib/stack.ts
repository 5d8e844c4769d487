// What every benchmark run shares: an isolated environment (its own buckets, queues, InfluxDB database, Redis
// prefix and data folder) on the benchmarks' own service ports, so a developer's running stack is neither used
// nor disturbed, and the services are started here and stopped at the end. BENCH_REDIS_CLUSTER=1 runs Redis as a
// 3-master Redis Cluster (SLUICE_REDIS_CLUSTER=true, SLUICE_REDIS_URL = its seed nodes) instead of one redis-server.
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, PROJECT_ROOT, type Config } from '../../shared/config.js';
import { createLogger } from '../../shared/logger.js';
import { createInflux, ensureDatabase } from '../../shared/clients/influx.js';
import { createRedis } from '../../shared/clients/redis.js';
import { Cluster } from 'ioredis';
import { progress, writeResults } from './report.js';
import { ensureRedisCluster } from '../../localstack/redis-cluster.js';
import {
  ensureDebianPackages,
  ensureEmulator,
  ensureInflux,
  ensureLocalServices,
  redisMaxMemoryFromEnv,
  type RunningService,
} from '../../localstack/services.js';
import { setupResources } from '../../shared/setup-resources.js';
import type { Logger } from '../../shared/logger.js';
import { splitRedisUrls } from '../../shared/config-fields.js';
import { pidsListeningOn } from './proc-cpu.js';

export const BENCH_ENDPOINTS = {
  SLUICE_INFLUX_URL: process.env.BENCH_INFLUX_URL ?? 'http://127.0.0.1:38086',
  SLUICE_REDIS_URL: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:36379',
  AWS_ENDPOINT_URL: process.env.BENCH_AWS_ENDPOINT ?? 'http://127.0.0.1:34566',
};

/** BENCH_REDIS_CLUSTER=1: the run's Redis is a 3-master Redis Cluster on BENCH_REDIS_CLUSTER_PORTS (default 36380-36382). */
export const BENCH_REDIS_CLUSTER = process.env.BENCH_REDIS_CLUSTER === '1';
const CLUSTER_SEEDS = (process.env.BENCH_REDIS_CLUSTER_PORTS ?? '36380,36381,36382').split(',').map((p) => `redis://127.0.0.1:${p.trim()}`);

/** How the run's Redis is deployed, as the results say it. */
export function redisMode(): string {
  return BENCH_REDIS_CLUSTER ? `${CLUSTER_SEEDS.length}-master Redis Cluster, no replicas` : 'one redis-server';
}

/** The Redis settings of a run: one URL, or the cluster's seed nodes comma-separated with SLUICE_REDIS_CLUSTER=true. */
function redisEnv(): Record<string, string> {
  if (!BENCH_REDIS_CLUSTER) return { SLUICE_REDIS_URL: BENCH_ENDPOINTS.SLUICE_REDIS_URL };
  return { SLUICE_REDIS_URL: CLUSTER_SEEDS.join(','), SLUICE_REDIS_CLUSTER: 'true' };
}

/** Settings of one isolated run named `id`; `overrides` win. */
export function benchEnv(id: string, overrides: Record<string, string> = {}): Record<string, string> {
  const env = {
    ...BENCH_ENDPOINTS,
    ...redisEnv(),
    SLUICE_DATA_DIR: path.join(PROJECT_ROOT, '.data', 'bench', id),
    SLUICE_LOG_LEVEL: 'warn',
    SLUICE_NODE_ID: `bench-${id}`,
    // One ingest process unless a bench asks for more (bench:ingest measures N processes itself): comparable runs.
    SLUICE_INGEST_PROCESSES: process.env.BENCH_INGEST_PROCESSES ?? '1',
    SLUICE_INGEST_PORT: '0',
    SLUICE_QUERY_PORT: '0',
    SLUICE_WORKER_PORT: '0',
    SLUICE_RAW_BUCKET: `raw-${id}`,
    SLUICE_COLD_BUCKET: `cold-${id}`,
    SLUICE_QUEUE_NAME: `q-${id}`,
    SLUICE_DLQ_NAME: `dlq-${id}`,
    SLUICE_INFLUX_DB: `bench_${id}`,
    SLUICE_REDIS_PREFIX: `${id}:`,
    SLUICE_WORKER_POLL_WAIT: '1s',
    // The workloads create 10k–100k series in their first seconds; a benchmark measures throughput, not the series budget.
    SLUICE_MAX_NEW_SERIES_PER_MIN: '0',
    ...overrides,
  };
  mkdirSync(env.SLUICE_DATA_DIR, { recursive: true });
  return env;
}

/**
 * Starts (or reuses) the benchmark services, then creates the run's buckets, queues and database. Services it
 * starts begin empty: data left by earlier runs would make InfluxDB and Redis load it while the run is measured.
 */
export async function prepareRun(env: Record<string, string>): Promise<{ cfg: Config; services: RunningService[] }> {
  const cfg = loadConfig({ ...process.env, ...env });
  const servicesDir = path.join(PROJECT_ROOT, '.data', 'bench-services');
  const running = await fetch(`${cfg.SLUICE_INFLUX_URL}/ping`, { signal: AbortSignal.timeout(1_000) }).then(
    () => true,
    () => false,
  );
  if (!running) rmSync(servicesDir, { recursive: true, force: true });
  const log = createLogger('bench', 'warn');
  const services = BENCH_REDIS_CLUSTER
    ? await ensureClusterServices(cfg, servicesDir, log)
    : await ensureLocalServices({ influxUrl: cfg.SLUICE_INFLUX_URL, redisUrl: cfg.SLUICE_REDIS_URL, awsEndpoint: cfg.AWS_ENDPOINT_URL }, servicesDir, log);
  await setupResources(cfg);
  await ensureDatabase(createInflux(cfg), cfg.SLUICE_INFLUX_DB);
  return { cfg, services };
}

/** InfluxDB and the S3+SQS emulator as usual, and a 3-master Redis Cluster on the seed ports instead of one Redis. */
async function ensureClusterServices(cfg: Config, servicesDir: string, log: Logger): Promise<RunningService[]> {
  const influxUp = await fetch(`${cfg.SLUICE_INFLUX_URL}/ping`, { signal: AbortSignal.timeout(1_000) }).then(
    () => true,
    () => false,
  );
  ensureDebianPackages(log, { influxdb: !influxUp, redis: true });
  const [influx, emulator, redis] = await Promise.all([
    ensureInflux(cfg.SLUICE_INFLUX_URL, servicesDir, log),
    ensureEmulator(cfg.AWS_ENDPOINT_URL, servicesDir, log),
    ensureRedisCluster(cfg.SLUICE_REDIS_URL, servicesDir, log, redisMaxMemoryFromEnv()),
  ]);
  return [influx, emulator, redis];
}

/** Port of a loopback URL (its scheme's default when it names none); undefined when the host is not this machine. */
function loopbackPort(url: string): number | undefined {
  const u = new URL(url);
  if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(u.hostname)) return undefined;
  return Number(u.port || (u.protocol === 'redis:' ? 6379 : u.protocol === 'https:' ? 443 : 80));
}

/**
 * Pids of the run's service processes: the ones started here by their RunningService, the reused ones by the port
 * of the run's endpoint (so a developer's or the tests' services on other ports are never counted). A service on
 * another machine has none.
 */
export function servicePids(cfg: Config, services: RunningService[]): { redis: number[]; influxdb: number[]; s3sqs: number[] } {
  const started = (name: string) => services.filter((s) => s.name.startsWith(name) && s.pid !== undefined).map((s) => s.pid!);
  const byPort = (urls: string[]) =>
    urls.flatMap((u) => {
      const port = loopbackPort(u);
      return port === undefined ? [] : pidsListeningOn(port);
    });
  const pick = (name: string, urls: string[]) => [...new Set([...started(name), ...byPort(urls)])];
  return {
    redis: pick('redis', splitRedisUrls(cfg.SLUICE_REDIS_URL)),
    influxdb: pick('influxdb', [cfg.SLUICE_INFLUX_URL]),
    s3sqs: pick('s3+sqs', [cfg.AWS_ENDPOINT_URL]),
  };
}

/**
 * Deletes what a run left in services that outlive it: its Redis keys (every master of a cluster; the id
 * reservations alone are millions of fields kept for the dedup window, so back-to-back runs would fill Redis up to
 * its maxmemory and the next run would measure 503s) and its InfluxDB database. Returns the keys deleted.
 */
export async function removeRunState(cfg: Config): Promise<number> {
  const redis = createRedis(cfg);
  let deleted = 0;
  try {
    await redis.ping(); // a cluster client knows its masters once connected
    const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${cfg.SLUICE_REDIS_PREFIX}*`, 'COUNT', 1000);
        cursor = next;
        // One UNLINK per key: keys of one scan page can hash to different slots.
        if (keys.length) deleted += (await Promise.all(keys.map((k) => node.unlink(k)))).reduce((n, d) => n + d, 0);
      } while (cursor !== '0');
    }
  } finally {
    redis.disconnect();
  }
  await createInflux(cfg).dropDatabase(cfg.SLUICE_INFLUX_DB);
  return deleted;
}

/** Writes the results, removes the run's data folder and its state in the services, stops the services it started and exits. */
export async function finishRun(
  name: string,
  result: Record<string, unknown>,
  markdown: string,
  dataDir: string,
  services: RunningService[],
  opts: { exitCode?: number; state?: Config } = {},
): Promise<never> {
  const file = writeResults(name, result, markdown);
  progress(`results written to ${path.relative(PROJECT_ROOT, file)}`);
  rmSync(dataDir, { recursive: true, force: true });
  if (opts.state) progress(`removed the run's ${await removeRunState(opts.state)} Redis keys and its InfluxDB database`);
  await Promise.all(services.map((s) => s.stop()));
  process.exit(opts.exitCode ?? 0);
}
