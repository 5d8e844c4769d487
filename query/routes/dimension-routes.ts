// The query API's attribute answers, put together: /v1/stats?dimension=… (dimension-stats.ts, federated over the
// attribute series) and /v1/topk?…&dimension=… (dimension-topk.ts, with the query API's own copy of the current
// dimension table version under SLUICE_DATA_DIR/query-dimensions, loaded in the background and polled every
// SLUICE_DIMENSIONS_POLL). With SLUICE_DIMENSIONS empty there is no store and both answer 400 naming the setting.
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createS3 } from '../../shared/clients/aws.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import type { RedisClient } from '../../shared/clients/redis.js';
import type { Config } from '../../shared/config.js';
import { DimensionStore } from '../../shared/dimension-store.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { openEngine } from '../../shared/parquet.js';
import type { EntityScope } from '../auth.js';
import type { QueryCache } from '../cache.js';
import type { InfluxReader } from '../influx-reader.js';
import type { TopKWindowCache } from '../topk-cache.js';
import { dimensionStatsHandler } from './dimension-stats.js';
import { registerDimensionTopK } from './dimension-topk.js';

export interface DimensionQueries {
  /** For registerStatsRoute's byDimension. */
  stats: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
  /** Adds the /v1/topk?dimension=… hook; call before registerTopKRoute. */
  registerTopK(app: FastifyInstance): void;
  close(): Promise<void>;
}

export function createDimensionQueries(
  cfg: Config,
  log: Logger,
  deps: {
    reader: InfluxReader;
    cache: QueryCache;
    redis: RedisClient;
    now: () => number;
    scopeOf?: (req: FastifyRequest) => EntityScope | undefined;
    /** The /v1/topk route's window cache, which top-K by attribute reads its windows from. */
    topKCache?: TopKWindowCache;
  },
): DimensionQueries {
  const coldDir = path.join(cfg.SLUICE_DATA_DIR, 'query-cold-cache');
  let store: DimensionStore | undefined;
  let s3: ReturnType<typeof createS3> | undefined;
  if (cfg.SLUICE_DIMENSIONS.length) {
    s3 = createS3(cfg);
    store = new DimensionStore({
      s3,
      bucket: cfg.SLUICE_RAW_BUCKET,
      table: cfg.SLUICE_DIMENSIONS_TABLE,
      dir: path.join(cfg.SLUICE_DATA_DIR, 'query-dimensions'),
      pollMs: cfg.SLUICE_DIMENSIONS_POLL,
      log,
    });
    const s = store;
    // In the background: the API serves at once; top-K by attribute finds no entity until the version is in.
    void openEngine({ tempDir: path.join(coldDir, 'duckdb-tmp'), memoryLimit: '256MB' })
      .then(() => s.start())
      .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'dimension table not loaded yet; retrying every SLUICE_DIMENSIONS_POLL'));
  }
  return {
    stats: dimensionStatsHandler({
      cfg,
      reader: deps.reader,
      cold: { storage: new ColdStorage(cfg), cacheDir: coldDir },
      cache: deps.cache,
      now: deps.now,
      scopeOf: deps.scopeOf,
    }),
    registerTopK: (app) =>
      registerDimensionTopK(app, {
        redis: deps.redis,
        redisPrefix: cfg.SLUICE_REDIS_PREFIX,
        configured: cfg.SLUICE_DIMENSIONS,
        store,
        now: deps.now,
        scopeOf: deps.scopeOf,
        cache: deps.topKCache,
      }),
    async close() {
      await store?.close();
      s3?.destroy();
    },
  };
}
