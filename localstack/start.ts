// `npm start`: the local development stack. Brings up InfluxDB, Redis (a Redis Cluster with SLUICE_REDIS_CLUSTER=true,
// redis-cluster.ts) and the S3 (s3rver, on disk) + SQS (fauxqs) emulator on loopback
// (installing InfluxDB and Redis when missing; see services.ts), then runs the pipeline (`sluice start`,
// cli/start.ts) against them, and stops the services it started once the pipeline has stopped. With
// SLUICE_INGEST_NODES > 1 the ingest nodes run behind haproxy (installed when missing; load-balancer.ts).
import path from 'node:path';
import { runPipeline } from '../cli/start.js';
import { loadConfig } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { ingestLoadBalancer } from './load-balancer.js';
import { ensureDebianPackages, ensureLocalServices } from './services.js';

const cfg = loadConfig();
const log = createLogger('local-stack', cfg.SLUICE_LOG_LEVEL);
if (cfg.SLUICE_INGEST_NODES > 1) ensureDebianPackages(log, { haproxy: true });
const services = await ensureLocalServices(
  { influxUrl: cfg.SLUICE_INFLUX_URL, redisUrl: cfg.SLUICE_REDIS_URL, redisCluster: cfg.SLUICE_REDIS_CLUSTER, awsEndpoint: cfg.AWS_ENDPOINT_URL },
  path.resolve(cfg.SLUICE_DATA_DIR),
  log,
  // Out of reach of the terminal's Ctrl-C: they stop after the pipeline has drained into them (afterStop below).
  { ownProcessGroup: true },
);
await runPipeline(cfg, { afterStop: () => Promise.all(services.map((s) => s.stop())), loadBalancer: ingestLoadBalancer(log) });
