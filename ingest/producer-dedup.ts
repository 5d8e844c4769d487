// Producer-side dedup: an eventId accepted within the window is not stored again, so a producer may retry a
// whole request safely. Ids are namespaced per producer: one producer's ids never suppress another's events. Ids are checked before the WAL append and marked only after the fsync, so a crash
// can never make an unstored event look like a duplicate. Redis unavailable → dedup is skipped (workers'
// exact dedup still counts each id once); ingest never fails because of it.
//
// Layout: per producer, one Redis set per five minutes of arrival (`<prefix>seen:{<producer>}:<bucket>`), expiring
// after the window. The `{producer}` hash tag puts all sets a script touches in one Redis Cluster slot, while
// different producers spread over slots. A request costs two Lua calls, one to check (SMISMEMBER over the window's
// sets) and one to mark (SADD) after the fsync: the ids cross the wire as one string each way, not once per event
// or per minute, which keeps Redis and the client off the hot path.
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';

/** Width of one set: a window of 10 minutes reads three sets (ids are remembered 10 to 15 minutes). */
const BUCKET_MS = 300_000;
/** Ids per Lua unpack() (Redis' Lua accepts a few thousand values at most). */
const SLICE = 4_000;

/**
 * Both scripts take the ids as ONE newline-joined argument (validated ids hold no control characters): the
 * client sends one string per request instead of one protocol argument per id, and Lua splits it.
 */
const SPLIT = `
local ids = {}
for id in string.gmatch(ARGV[1], '[^\\n]+') do ids[#ids + 1] = id end
`;

/** KEYS: the window's sets. Returns one character per id, "1" when seen in any of the sets, else "0". */
const SEEN_SCRIPT = `${SPLIT}
local seen = {}
for i = 1, #ids do seen[i] = '0' end
for k = 1, #KEYS do
  for from = 1, #ids, ${SLICE} do
    local got = redis.call('SMISMEMBER', KEYS[k], unpack(ids, from, math.min(#ids, from + ${SLICE} - 1)))
    for i = 1, #got do if got[i] == 1 then seen[from + i - 1] = '1' end end
  end
end
return table.concat(seen)
`;

/** KEYS[1]: the current minute's set; ARGV[2]: its expiry (epoch ms). */
const MARK_SCRIPT = `${SPLIT}
for from = 1, #ids, ${SLICE} do
  redis.call('SADD', KEYS[1], unpack(ids, from, math.min(#ids, from + ${SLICE} - 1)))
end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return #ids
`;

export class ProducerDedup {
  private warnedAt = 0;
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly windowMs: number,
    private readonly log: Logger,
  ) {}

  /** The producer's set of one five-minute bucket; the hash tag keeps a producer's sets in one cluster slot. */
  bucketKey(producer: string, bucket: number): string {
    return `${this.prefix}seen:{${producer}}:${bucket}`;
  }

  /** Which of `ids` this producer already had accepted within the window (by any node). */
  async seen(producer: string, ids: readonly string[], nowMs = Date.now()): Promise<boolean[]> {
    const out = ids.map(() => false);
    if (ids.length === 0 || this.windowMs <= 0 || this.redis.status !== 'ready') return out;
    const current = Math.floor(nowMs / BUCKET_MS);
    const keys = Array.from({ length: Math.ceil(this.windowMs / BUCKET_MS) + 1 }, (_, b) => this.bucketKey(producer, current - b));
    try {
      // One string back (a flag character per id) decodes far cheaper than an array of integers.
      const flags = (await this.redis.eval(SEEN_SCRIPT, keys.length, ...keys, ids.join('\n'))) as string;
      for (let i = flags.indexOf('1'); i !== -1; i = flags.indexOf('1', i + 1)) out[i] = true;
    } catch (err) {
      this.warn(err);
    }
    return out;
  }

  /** Marks this producer's ids as accepted (after they are durable). Best effort. */
  async mark(producer: string, ids: readonly string[], nowMs = Date.now()): Promise<void> {
    if (ids.length === 0 || this.windowMs <= 0 || this.redis.status !== 'ready') return;
    const bucket = Math.floor(nowMs / BUCKET_MS);
    const key = this.bucketKey(producer, bucket);
    try {
      await this.redis.eval(MARK_SCRIPT, 1, key, ids.join('\n'), (bucket + 1) * BUCKET_MS + this.windowMs + BUCKET_MS);
    } catch (err) {
      this.warn(err);
    }
  }

  private warn(err: unknown): void {
    if (Date.now() - this.warnedAt > 10_000) {
      this.warnedAt = Date.now();
      this.log.warn({ err: String(err) }, 'Redis unavailable: producer dedup skipped (workers still deduplicate)');
    }
  }
}
