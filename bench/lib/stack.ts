// What every benchmark run shares: an isolated environment (its own buckets, queues, InfluxDB database, Redis
// prefix and data folder) on the benchmarks' own service ports, so a developer's running stack is neither used
// nor disturbed, and the services are started here and stopped at the end.
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, PROJECT_ROOT, type Config } from '../../shared/config.js';
import { createLogger } from '../../shared/logger.js';
import { createInflux, ensureDatabase } from '../../shared/clients/influx.js';
import { progress, writeResults } from './report.js';
import { ensureLocalServices, type RunningService } from '../../localstack/services.js';
import { setupResources } from '../../shared/setup-resources.js';

export const BENCH_ENDPOINTS = {
  SLUICE_INFLUX_URL: process.env.BENCH_INFLUX_URL ?? 'http://127.0.0.1:38086',
  SLUICE_REDIS_URL: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:36379',
  AWS_ENDPOINT_URL: process.env.BENCH_AWS_ENDPOINT ?? 'http://127.0.0.1:34566',
};

/** Settings of one isolated run named `id`; `overrides` win. */
export function benchEnv(id: string, overrides: Record<string, string> = {}): Record<string, string> {
  const env = {
    ...BENCH_ENDPOINTS,
    SLUICE_DATA_DIR: path.join(PROJECT_ROOT, '.data', 'bench', id),
    SLUICE_LOG_LEVEL: 'warn',
    SLUICE_NODE_ID: `bench-${id}`,
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
  const services = await ensureLocalServices(
    { influxUrl: cfg.SLUICE_INFLUX_URL, redisUrl: cfg.SLUICE_REDIS_URL, awsEndpoint: cfg.AWS_ENDPOINT_URL },
    servicesDir,
    createLogger('bench', 'warn'),
  );
  await setupResources(cfg);
  await ensureDatabase(createInflux(cfg), cfg.SLUICE_INFLUX_DB);
  return { cfg, services };
}

/** Writes the results, removes the run's data folder, stops the services it started and exits. */
export async function finishRun(
  name: string,
  result: Record<string, unknown>,
  markdown: string,
  dataDir: string,
  services: RunningService[],
  exitCode = 0,
): Promise<never> {
  const file = writeResults(name, result, markdown);
  progress(`results written to ${path.relative(PROJECT_ROOT, file)}`);
  rmSync(dataDir, { recursive: true, force: true });
  await Promise.all(services.map((s) => s.stop()));
  process.exit(exitCode);
}
