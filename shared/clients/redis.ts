// Redis client from config. Commands fail fast while Redis is down (no unbounded offline queue),
// so callers see a retryable error instead of growing memory.
import { Redis } from 'ioredis';
import type { Config } from '../config.js';

export function createRedis(cfg: Pick<Config, 'SLUICE_REDIS_URL'>, opts: { lazy?: boolean } = {}): Redis {
  return new Redis(cfg.SLUICE_REDIS_URL, {
    lazyConnect: opts.lazy ?? false,
    maxRetriesPerRequest: 2,
    enableOfflineQueue: true,
    connectTimeout: 2_000,
    commandTimeout: 10_000,
    retryStrategy: (times) => Math.min(50 * 2 ** times, 2_000),
  });
}
