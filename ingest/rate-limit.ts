// Admission limits of an ingest node. Per-producer token buckets shared by all ingest nodes through Redis (one
// atomic Lua call per request): a request takes as many tokens as it holds events; when the bucket is short the
// answer says how long to wait. Redis unavailable → that limit is not enforced (availability over fairness).
// In process: concurrent requests per producer (or per address when anonymous), and the in-flight byte budget
// of bodies being read, charged by decompressed bytes as they arrive; both are always enforced.
import type { RedisClient } from '../shared/clients/redis.js';

const SCRIPT = `
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local s = redis.call('HMGET', key, 't', 'ts')
local tokens = tonumber(s[1]) or burst
local ts = tonumber(s[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
if tokens >= want then
  tokens = tokens - want
  redis.call('HSET', key, 't', tokens, 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  return 0
end
redis.call('HSET', key, 't', tokens, 'ts', now)
redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
return math.ceil((want - tokens) * 1000 / rate)
`;

export class RateLimiter {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly ratePerSec: number,
    private readonly burst: number,
  ) {}

  get enabled(): boolean {
    return this.ratePerSec > 0;
  }

  /** 0 when allowed, else milliseconds to wait. Requests bigger than the burst can never pass: they are told so. */
  async take(producer: string, events: number): Promise<number> {
    if (!this.enabled || this.redis.status !== 'ready') return 0;
    try {
      const wait = await this.redis.eval(SCRIPT, 1, `${this.prefix}rate:${producer}`, this.ratePerSec, this.burst, Date.now(), events);
      return Number(wait);
    } catch {
      return 0;
    }
  }
}

/** Concurrent requests per producer (or client address): a slow or greedy client cannot take every slot. */
export class ConcurrencyLimit {
  private readonly active = new Map<string, number>();
  constructor(private readonly max: number) {}

  /** Takes a slot for `who`; false when it already holds `max` (0 = unlimited). */
  acquire(who: string): boolean {
    const n = this.active.get(who) ?? 0;
    if (this.max > 0 && n >= this.max) return false;
    this.active.set(who, n + 1);
    return true;
  }

  release(who: string): void {
    const n = this.active.get(who) ?? 0;
    if (n <= 1) this.active.delete(who);
    else this.active.set(who, n - 1);
  }

  /** Requests in progress for `who`. */
  holding(who: string): number {
    return this.active.get(who) ?? 0;
  }
}

/**
 * Bytes of request bodies in memory on this node. Charged chunk by chunk as decompressed bytes arrive and
 * released when the request ends, so a client holds budget only for what it actually sent. A request that is
 * alone may exceed the budget (it is still bounded by SLUICE_MAX_BODY_BYTES), so one large body is never
 * refused forever.
 */
export class InflightBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  get bytes(): number {
    return this.used;
  }

  /** Adds `n` to what `held` already holds; false (nothing charged) when that would pass the limit. */
  charge(held: number, n: number): boolean {
    if (this.used > held && this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }

  release(n: number): void {
    this.used -= n;
  }
}
