// Per-producer token buckets shared by all ingest nodes through Redis (one atomic Lua call per request).
// A request takes as many tokens as it holds events; when the bucket is short the answer says how long to wait.
// Redis unavailable → the limit is not enforced (availability over fairness), and that is logged.
import type { Redis } from 'ioredis';

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
    private readonly redis: Redis,
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
