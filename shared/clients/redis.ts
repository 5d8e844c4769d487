// Redis client from config. Commands fail fast while Redis is down (no unbounded offline queue),
// so callers see a retryable error instead of growing memory.
import { Redis } from 'ioredis';
import type { Config } from '../config.js';
import { BACKOFF, backoffMs } from '../retry.js';

export function createRedis(cfg: Pick<Config, 'SLUICE_REDIS_URL'>, opts: { lazy?: boolean } = {}): Redis {
  return new Redis(cfg.SLUICE_REDIS_URL, {
    lazyConnect: opts.lazy ?? false,
    maxRetriesPerRequest: 2,
    enableOfflineQueue: true,
    connectTimeout: 2_000,
    commandTimeout: 10_000,
    retryStrategy: (times) => backoffMs(times, BACKOFF.redisReconnect),
  });
}
