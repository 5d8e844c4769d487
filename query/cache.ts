// Caches query answers in Redis under <prefix>qcache:<hash>. Redis trouble never fails a query: the
// answer is computed without the cache, the failure is counted, and logged once per outage. Concurrent
// misses for the same key in one process share a single computation.
import { createHash } from 'node:crypto';
import type { RedisClient } from '../shared/clients/redis.js';
import type { Logger } from '../shared/logger.js';
import type { CacheKind, CacheResult, QueryMetrics } from './metrics.js';

/** Longest a cache read or write may take before the query goes on without it. */
export const CACHE_OP_TIMEOUT_MS = 250;
/** TTL of answers whose range may still receive data. */
export const RECENT_TTL_MS = 2_000;
/** TTL of answers whose range ended more than SETTLED_AFTER_MS ago. */
export const SETTLED_TTL_MS = 3_600_000;
export const SETTLED_AFTER_MS = 3_600_000;

/** How long a /v1/stats answer may be cached: long for ranges that ended over an hour ago, short otherwise. */
export function statsTtlMs(toMs: number, nowMs: number): number {
  return toMs < nowMs - SETTLED_AFTER_MS ? SETTLED_TTL_MS : RECENT_TTL_MS;
}

/** The Redis key of an answer: a hash of everything that determines it (include a version in `parts`). */
export function cacheKey(prefix: string, parts: Readonly<Record<string, string | number>>): string {
  const canonical = JSON.stringify(
    Object.keys(parts)
      .sort()
      .map((k) => [k, parts[k]]),
  );
  return `${prefix}qcache:${createHash('sha256').update(canonical).digest('hex').slice(0, 32)}`;
}

/** hit / miss / error as counted, or coalesced when another request in this process computed it. */
export type CacheOutcome = CacheResult | 'coalesced';

export class QueryCache {
  private readonly inflight = new Map<string, Promise<{ value: unknown; cache: CacheOutcome }>>();
  private degraded = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly metrics: QueryMetrics,
    private readonly log: Logger,
    private readonly opTimeoutMs = CACHE_OP_TIMEOUT_MS,
  ) {}

  /** The cached answer under `key`, or `compute()`'s, stored for `ttlMs` when Redis is usable. */
  async getOrCompute<T>(kind: CacheKind, key: string, ttlMs: number, compute: () => Promise<T>): Promise<{ value: T; cache: CacheOutcome }> {
    const running = this.inflight.get(key);
    if (running) {
      const shared = await running;
      return { value: shared.value as T, cache: 'coalesced' };
    }
    const p = this.lookup(kind, key, ttlMs, compute);
    this.inflight.set(key, p);
    try {
      return await p;
    } finally {
      this.inflight.delete(key);
    }
  }

  private async lookup<T>(kind: CacheKind, key: string, ttlMs: number, compute: () => Promise<T>): Promise<{ value: T; cache: CacheOutcome }> {
    let usable = true;
    let raw: string | null = null;
    try {
      raw = await this.op(() => this.redis.get(key));
    } catch (err) {
      usable = false;
      this.failed('get', err);
    }
    if (raw !== null) {
      try {
        const value = JSON.parse(raw) as T;
        this.metrics.cacheRequests.inc({ kind, result: 'hit' });
        return { value, cache: 'hit' };
      } catch {
        // An unreadable entry (e.g. written by another version) is recomputed and overwritten.
      }
    }
    this.metrics.cacheRequests.inc({ kind, result: usable ? 'miss' : 'error' });
    const value = await compute();
    if (usable) {
      try {
        await this.op(() => this.redis.set(key, JSON.stringify(value), 'PX', Math.max(1, Math.round(ttlMs))));
      } catch (err) {
        this.failed('set', err);
      }
    }
    return { value, cache: usable ? 'miss' : 'error' };
  }

  /** Runs one Redis command if the connection is up, bounded by the operation timeout. */
  private async op<R>(fn: () => Promise<R>): Promise<R> {
    if (this.redis.status !== 'ready') throw new Error(`Redis connection is ${this.redis.status}`);
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`Redis did not answer within ${this.opTimeoutMs}ms`)), this.opTimeoutMs);
        }),
      ]);
      if (this.degraded) {
        this.degraded = false;
        this.log.info('query cache available again');
      }
      return result;
    } finally {
      clearTimeout(timer);
    }
  }

  private failed(op: 'get' | 'set', err: unknown): void {
    this.metrics.cacheErrors.inc({ op });
    if (!this.degraded) {
      this.degraded = true;
      this.log.warn({ err, op }, 'query cache unavailable; answering from InfluxDB without caching');
    }
  }
}
