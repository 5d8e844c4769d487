// Producer-side dedup: an eventId accepted within the window is not stored again, so a producer may retry a
// whole request safely. Ids are checked before the WAL append and marked only after the fsync, so a crash
// can never make an unstored event look like a duplicate. Redis unavailable → dedup is skipped (workers'
// exact dedup still counts each id once); ingest never fails because of it.
//
// Layout: one Redis set per minute of arrival (`<prefix>seen:<minute>`), expiring after the window. A request
// costs one SADD to mark and one Lua call (SMISMEMBER over the window's sets) to check: the ids cross the wire
// once each way, not once per event or per minute, which keeps Redis and the client off the hot path.
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';

const BUCKET_MS = 60_000;
const SEEN_SLICE = 4_000;

/** KEYS: the window's sets; ARGV: ids. Returns 1/0 per id: seen in any of the sets. One round trip, ids sent once. */
const SEEN_SCRIPT = `
local seen = {}
for i = 1, #ARGV do seen[i] = 0 end
for k = 1, #KEYS do
  local got = redis.call('SMISMEMBER', KEYS[k], unpack(ARGV))
  for i = 1, #got do if got[i] == 1 then seen[i] = 1 end end
end
return seen
`;

export class ProducerDedup {
  private warnedAt = 0;
  constructor(private readonly redis: Redis, private readonly prefix: string, private readonly windowMs: number, private readonly log: Logger) {}

  private bucketKey(minute: number): string { return `${this.prefix}seen:${minute}`; }

  /** Which of `ids` were already accepted within the window (by any node). */
  async seen(ids: readonly string[], nowMs = Date.now()): Promise<boolean[]> {
    const out = ids.map(() => false);
    if (ids.length === 0 || this.windowMs <= 0 || this.redis.status !== 'ready') return out;
    const current = Math.floor(nowMs / BUCKET_MS);
    const keys = Array.from({ length: Math.ceil(this.windowMs / BUCKET_MS) + 1 }, (_, b) => this.bucketKey(current - b));
    try {
      // Lua's unpack() takes a few thousand values at most: large requests are checked in slices.
      for (let i = 0; i < ids.length; i += SEEN_SLICE) {
        const flags = (await this.redis.evalsha(this.seenSha ??= await this.loadScript(), keys.length, ...keys, ...ids.slice(i, i + SEEN_SLICE)).catch(async (err: Error) => {
          if (!/NOSCRIPT/.test(err.message)) throw err;
          this.seenSha = await this.loadScript();
          return this.redis.evalsha(this.seenSha, keys.length, ...keys, ...ids.slice(i, i + SEEN_SLICE));
        })) as number[];
        for (let j = 0; j < flags.length; j++) if (flags[j] === 1) out[i + j] = true;
      }
    } catch (err) {
      this.warn(err);
    }
    return out;
  }

  /** Marks ids as accepted (after they are durable). Best effort. */
  async mark(ids: readonly string[], nowMs = Date.now()): Promise<void> {
    if (ids.length === 0 || this.windowMs <= 0 || this.redis.status !== 'ready') return;
    const minute = Math.floor(nowMs / BUCKET_MS);
    const key = this.bucketKey(minute);
    try {
      await this.redis.pipeline().sadd(key, ...ids).pexpireat(key, (minute + 1) * BUCKET_MS + this.windowMs + BUCKET_MS).exec();
    } catch (err) {
      this.warn(err);
    }
  }

  private seenSha: string | undefined;
  private async loadScript(): Promise<string> {
    return (await this.redis.script('LOAD', SEEN_SCRIPT)) as string;
  }

  private warn(err: unknown): void {
    if (Date.now() - this.warnedAt > 10_000) {
      this.warnedAt = Date.now();
      this.log.warn({ err: String(err) }, 'Redis unavailable: producer dedup skipped (workers still deduplicate)');
    }
  }
}
