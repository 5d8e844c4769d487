// `npm start`: the local development stack. Brings up InfluxDB, Redis and the S3 (s3rver, on disk) + SQS (fauxqs) emulator on loopback
// (installing InfluxDB and Redis when missing; see services.ts), then runs the pipeline (`sluice start`,
// cli/start.ts) against them, and stops the services it started once the pipeline has stopped.
import path from 'node:path';
import { runPipeline } from '../cli/start.js';
import { loadConfig } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { ensureLocalServices } from './services.js';

const cfg = loadConfig();
const services = await ensureLocalServices(
  { influxUrl: cfg.SLUICE_INFLUX_URL, redisUrl: cfg.SLUICE_REDIS_URL, awsEndpoint: cfg.AWS_ENDPOINT_URL },
  path.resolve(cfg.SLUICE_DATA_DIR),
  createLogger('local-stack', cfg.SLUICE_LOG_LEVEL),
);
await runPipeline(cfg, { afterStop: () => Promise.all(services.map((s) => s.stop())) });
