// A fresh, isolated configuration per test: its own buckets, queues, InfluxDB database, Redis prefix and
// data folder on the shared test services, with the resources already created.
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, PROJECT_ROOT, type Config } from '../../shared/config.js';
import { setupResources } from '../../shared/setup-resources.js';
import { createInflux, ensureDatabase } from '../../shared/clients/influx.js';
import { TEST_ENDPOINTS } from './endpoints.js';

/** Environment for a test pipeline; pass extra SLUICE_* overrides. */
export function testEnv(overrides: Record<string, string> = {}): Record<string, string> {
  const id = `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const dataDir = path.join(PROJECT_ROOT, '.data', 'tests', id);
  mkdirSync(dataDir, { recursive: true });
  return {
    SLUICE_DATA_DIR: dataDir,
    SLUICE_LOG_LEVEL: process.env.SLUICE_LOG_LEVEL ?? 'warn',
    SLUICE_NODE_ID: `node-${id}`,
    AWS_ENDPOINT_URL: TEST_ENDPOINTS.awsEndpoint,
    SLUICE_INFLUX_URL: TEST_ENDPOINTS.influxUrl,
    SLUICE_REDIS_URL: TEST_ENDPOINTS.redisUrl,
    SLUICE_RAW_BUCKET: `raw-${id}`,
    SLUICE_COLD_BUCKET: `cold-${id}`,
    SLUICE_QUEUE_NAME: `batches-${id}`,
    SLUICE_DLQ_NAME: `dlq-${id}`,
    SLUICE_INFLUX_DB: `db_${id}`,
    SLUICE_REDIS_PREFIX: `${id}:`,
    SLUICE_INGEST_PORT: '0',
    SLUICE_QUERY_PORT: '0',
    SLUICE_WORKER_PORT: '0',
    SLUICE_FLUSH_MAX_AGE: '500ms',
    // One process per `sluice ingest` unless a test asks for more (the default is one per CPU).
    SLUICE_INGEST_PROCESSES: '1',
    ...overrides,
  };
}

/** Loads a test config and creates its buckets, queues and InfluxDB database. */
export async function testConfig(overrides: Record<string, string> = {}): Promise<Config & { env: Record<string, string> }> {
  const env = testEnv(overrides);
  const cfg = loadConfig({ ...process.env, ...env });
  await setupResources(cfg);
  await ensureDatabase(createInflux(cfg), cfg.SLUICE_INFLUX_DB);
  return Object.assign({}, cfg, { env });
}
