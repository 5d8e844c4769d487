// Redis client from config: one Redis, or a Redis Cluster when SLUICE_REDIS_CLUSTER is set. Commands fail fast while
// Redis is down (no unbounded offline queue), so callers see a retryable error instead of growing memory; both kinds
// reconnect with the same backoff (BACKOFF.redisReconnect). On a cluster every command goes to the master of its slot.
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config.js';
import { splitRedisUrls } from '../config-fields.js';
import { BACKOFF, backoffMs } from '../retry.js';

/** A single Redis or a Redis Cluster (ioredis' cluster client): every Sluice script keeps its keys in one slot. */
export type RedisClient = Redis | Cluster;

/** Reconnect attempts a queued command waits through before it fails (single Redis: ioredis' maxRetriesPerRequest). */
const MAX_RETRIES_PER_REQUEST = 2;

/** Options of every connection: to the one Redis, or to each node of a cluster. */
const CONNECTION: RedisOptions = {
  maxRetriesPerRequest: MAX_RETRIES_PER_REQUEST,
  enableOfflineQueue: true,
  connectTimeout: 2_000,
  commandTimeout: 10_000,
};

type RedisSettings = Pick<Config, 'SLUICE_REDIS_URL'> & { SLUICE_REDIS_CLUSTER?: boolean };

/** A single Redis (no SLUICE_REDIS_CLUSTER, or false). */
export function createRedis(cfg: Pick<Config, 'SLUICE_REDIS_URL'> & { SLUICE_REDIS_CLUSTER?: false }, opts?: { lazy?: boolean }): Redis;
/** A Redis Cluster when `cfg.SLUICE_REDIS_CLUSTER`, else a single Redis. */
export function createRedis(cfg: RedisSettings, opts?: { lazy?: boolean }): RedisClient;
export function createRedis(cfg: RedisSettings, opts: { lazy?: boolean } = {}): RedisClient {
  if (cfg.SLUICE_REDIS_CLUSTER) return createCluster(splitRedisUrls(cfg.SLUICE_REDIS_URL), opts.lazy ?? false);
  return new Redis(cfg.SLUICE_REDIS_URL, {
    ...CONNECTION,
    lazyConnect: opts.lazy ?? false,
    retryStrategy: (times) => backoffMs(times, BACKOFF.redisReconnect),
  });
}

/**
 * A cluster client from its seed nodes (the first URL's user, password and TLS apply to every node, also to the ones
 * the client discovers). Reads go to masters (`scaleReads: 'master'`): a replica may lag behind a batch's effects.
 */
function createCluster(seeds: readonly string[], lazy: boolean): Cluster {
  const first = new URL(seeds[0]!);
  const nodeOptions: RedisOptions = {
    ...CONNECTION,
    ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
    ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
    ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
  };
  const options: ClusterOptions = {
    lazyConnect: lazy,
    enableReadyCheck: true,
    scaleReads: 'master',
    enableOfflineQueue: true,
    slotsRefreshTimeout: CONNECTION.connectTimeout,
    redisOptions: nodeOptions,
    clusterRetryStrategy: (times) => {
      // While the whole cluster is unreachable the client queues commands until it reconnects; past the attempts a
      // single Redis would wait through, they fail (ioredis has no maxRetriesPerRequest for the cluster's own queue).
      if (times > MAX_RETRIES_PER_REQUEST) failQueued(cluster, times);
      return backoffMs(times, BACKOFF.redisReconnect);
    },
  };
  const cluster = new Cluster(
    seeds.map((s) => {
      const u = new URL(s);
      return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(u.port || 6379) };
    }),
    options,
  );
  return cluster;
}

/** Rejects the commands a cluster client holds while it reconnects (its offline queue). */
function failQueued(cluster: Cluster, attempts: number): void {
  // flushQueue is part of ioredis' Cluster (it ends the queue the same way when the client gives up), typed private.
  // The error is named like ioredis' own when every node failed, so shared/errors.ts classifies it retryable.
  const err = Object.assign(new Error(`None of startup nodes is available: Redis Cluster unreachable (reconnect attempt ${attempts})`), {
    name: 'ClusterAllFailedError',
  });
  (cluster as unknown as { flushQueue(err: Error): void }).flushQueue(err);
}
