// The query service: an HTTP API over the per-minute series in InfluxDB and the top-K sets in Redis, with
// a Redis answer cache, /healthz, /readyz (ready while InfluxDB answers) and /metrics. With SLUICE_QUERY_API_KEYS
// set, everything else requires a key (query/auth.ts). It starts even when Redis is down (answers are then
// computed uncached) and close() lets in-flight requests finish.
// `sluice query` (cli/sluice.ts) runs it as a process.
import type { AddressInfo } from 'node:net';
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import type { Config } from '../shared/config.js';
import { assertBindAllowed } from '../shared/bind-policy.js';
import { ENTITY_ID_MAX } from '../shared/contracts/event.js';
import { createInflux } from '../shared/clients/influx.js';
import { createRedis } from '../shared/clients/redis.js';
import type { Logger } from '../shared/logger.js';
import { addOpsRoutes, createRegistry } from '../shared/metrics.js';
import type { Service } from '../shared/service.js';
import { QueryAuth } from './auth.js';
import { QueryCache } from './cache.js';
import { installErrorHandling } from './http-errors.js';
import { InfluxReader } from './influx-reader.js';
import { createQueryMetrics } from './metrics.js';
import { registerEntityTotalRoute } from './routes/entity-total.js';
import { registerStatsRoute } from './routes/stats.js';
import { registerTopKRoute } from './routes/topk.js';
import { TOPK_K_MAX } from './params.js';
import { TopKWindowCache } from './topk-cache.js';
import { createDimensionQueries } from './routes/dimension-routes.js';
import { ColdStorage } from '../shared/clients/cold-storage.js';
import { ColdRollupReader } from './cold-reader.js';
import { FederatedReader } from './federated-reader.js';
import path from 'node:path';
import { registerDashboard } from './dashboard.js';
import { registerIcebergCatalogRoutes } from './iceberg/catalog-routes.js';

/** How long start-up waits for Redis before serving without it (it keeps reconnecting in the background). */
const REDIS_START_WAIT_MS = 2_000;

function waitUntilReady(redis: ReturnType<typeof createRedis>, ms: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      redis.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    redis.once('ready', done);
  });
}

function urlOf(address: AddressInfo): string {
  const host = address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address;
  return `http://${address.family === 'IPv6' ? `[${host}]` : host}:${address.port}`;
}

export async function startQuery(cfg: Config, log: Logger): Promise<Service> {
  const registry = createRegistry('query');
  const metrics = createQueryMetrics(registry);
  const influx = createInflux(cfg);
  const redis = createRedis(cfg);
  let redisDown = false;
  redis.on('error', (err) => {
    if (!redisDown) log.warn({ err: err.message }, 'Redis connection failed; top-K answers 503 and the query cache is bypassed until it is back');
    redisDown = true;
  });
  redis.on('ready', () => {
    if (redisDown) log.info('Redis connection restored');
    redisDown = false;
  });
  await waitUntilReady(redis, REDIS_START_WAIT_MS);

  const reader = new InfluxReader(influx, cfg.SLUICE_INFLUX_DB, metrics, cfg.SLUICE_QUERY_TIMEOUT);
  const cache = new QueryCache(redis, metrics, log);
  const cold = new ColdRollupReader(new ColdStorage(cfg), path.join(cfg.SLUICE_DATA_DIR, 'query-cold-cache'));
  const federated = new FederatedReader(reader, cold, cfg);
  const now = () => Date.now();
  // Merged top-K windows, shared by /v1/topk with and without dimension: one more item than the largest k.
  const topKWindows = new TopKWindowCache(redis, cfg.SLUICE_REDIS_PREFIX, { keep: TOPK_K_MAX + 1 });

  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // Room for the longest entityId fully percent-encoded (4 UTF-8 bytes × "%XX"); its length is checked after decoding.
    routerOptions: { maxParamLength: ENTITY_ID_MAX * 12 },
    // Per-request log lines would dominate the hot path; latency and status are in /metrics, errors are logged.
    logController: new LogController({ disableRequestLogging: true }),
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.httpDuration.observe(
      { route: req.routeOptions.url ?? 'unmatched', method: req.method, status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
  installErrorHandling(app);
  // Before any route: every route registered after it is checked (the open ones are listed in query/auth.ts).
  const auth = new QueryAuth({ cfg, metrics, log });
  auth.install(app);
  addOpsRoutes(app, registry, () => reader.unready());
  const dimensions = createDimensionQueries(cfg, log, { reader, cache, redis, now, scopeOf: auth.scopeOf, topKCache: topKWindows });
  dimensions.registerTopK(app);
  registerStatsRoute(app, { reader, federated, cache, redisPrefix: cfg.SLUICE_REDIS_PREFIX, now, byDimension: dimensions.stats });
  registerEntityTotalRoute(app, { redis, reader, federated, cache, redisPrefix: cfg.SLUICE_REDIS_PREFIX });
  registerTopKRoute(app, { redis, redisPrefix: cfg.SLUICE_REDIS_PREFIX, now, scopeOf: auth.scopeOf, cache: topKWindows });
  registerDashboard(app, { cfg, registry });
  registerIcebergCatalogRoutes(app, { cfg, redis, log });

  try {
    assertBindAllowed({
      service: 'query',
      hostSetting: 'SLUICE_QUERY_HOST',
      host: cfg.SLUICE_QUERY_HOST,
      authenticated: auth.enabled,
      keysSetting: 'SLUICE_QUERY_API_KEYS',
      keysForm: 'name:key pairs',
      allowAnonymous: cfg.SLUICE_ALLOW_ANONYMOUS,
    });
    await app.listen({ host: cfg.SLUICE_QUERY_HOST, port: cfg.SLUICE_QUERY_PORT });
  } catch (err) {
    await dimensions.close();
    redis.disconnect();
    throw err;
  }
  const url = urlOf(app.server.address() as AddressInfo);
  log.info({ url }, 'query API listening');

  let closed: Promise<void> | undefined;
  return {
    url,
    close() {
      closed ??= (async () => {
        try {
          await app.close();
        } catch (err) {
          log.error({ err }, 'closing the HTTP server failed');
        }
        await dimensions.close();
        try {
          await redis.quit();
        } catch {
          redis.disconnect();
        }
      })();
      return closed;
    },
  };
}
