// Adds a batch's per-entity event counts to the top-K buckets in Redis (layout in shared/topk-store.ts),
// exactly once per batch: each chunk of increments is applied by one Lua script guarded by a "done" key,
// so a redelivered or concurrently delivered batch never adds twice, and a crash mid-way resumes where it stopped.
// Every call's keys (its done key included) share one hash tag per (event type, resolution): cluster-safe.
import type { Redis } from 'ioredis';
import type { BucketCount } from './batch-scan-types.js';
import { TransientError, errorMessage } from '../shared/errors.js';
import { TOPK_RESOLUTIONS, topKBucketExpiresAt, topKBucketKey, topKSlotTag } from '../shared/topk-store.js';

/** Increments per Lua call: bounds how long one call holds Redis. */
export const TOPK_CHUNK = 5_000;
/** How long a batch remembers it was applied; longer than any bucket lives, so a late redelivery is still a no-op. */
export const TOPK_DONE_TTL_S = 2 * 86_400;
/** Width of the finest bucket; counts are computed at this width and summed into the coarser ones. */
export const TOPK_BASE_BUCKET_MS = TOPK_RESOLUTIONS['1m'].bucketMs;

/**
 * KEYS[1] done key, KEYS[2..] bucket keys. ARGV[1] done TTL (s), ARGV[2] capacity, then per bucket key:
 * expire-at (epoch s), n, and n (member, increment) pairs. Returns 1 when applied, 0 when already done.
 */
const APPLY_SCRIPT = `
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local cap = tonumber(ARGV[2])
local a = 3
for k = 2, #KEYS do
  local expireAt, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    redis.call('ZINCRBY', KEYS[k], ARGV[a + 1], ARGV[a])
    a = a + 2
  end
  redis.call('ZREMRANGEBYRANK', KEYS[k], 0, -(cap + 1))
  redis.call('EXPIREAT', KEYS[k], expireAt)
end
return 1
`;

interface Increment {
  /** Hash tag of the key (one cluster slot): a Lua call only ever touches keys of one tag. */
  tag: string;
  key: string;
  expireAtS: number;
  member: string;
  count: number;
}

/**
 * All increments of a batch in a deterministic order (by key, then member), from counts per base bucket.
 * The order depends only on the batch content, so chunk i is the same chunk on every delivery.
 * Each bucket keeps only the batch's top `capacity` members (ties by name): a bucket with at most `capacity`
 * distinct entities overall is never cut, so the accuracy guarantee is unchanged, and Redis does a bounded
 * amount of work per batch instead of one increment per long-tail entity.
 */
export function topKIncrements(prefix: string, counts: readonly BucketCount[], capacity = Infinity): Increment[] {
  const byKey = new Map<string, { tag: string; expireAtS: number; members: Map<string, number> }>();
  for (const res of Object.values(TOPK_RESOLUTIONS)) {
    if (res.bucketMs % TOPK_BASE_BUCKET_MS !== 0) throw new Error(`top-K bucket ${res.name} is not a multiple of the base bucket`);
    for (const c of counts) {
      const start = Math.floor(c.bucketMs / res.bucketMs) * res.bucketMs;
      const key = topKBucketKey(prefix, c.eventType, res, start);
      let b = byKey.get(key);
      if (!b) {
        b = { tag: topKSlotTag(prefix, c.eventType, res), expireAtS: Math.ceil(topKBucketExpiresAt(res, start) / 1000), members: new Map() };
        byKey.set(key, b);
      }
      b.members.set(c.entityId, (b.members.get(c.entityId) ?? 0) + c.count);
    }
  }
  const out: Increment[] = [];
  for (const key of [...byKey.keys()].sort()) {
    const b = byKey.get(key)!;
    let members = [...b.members.entries()];
    if (members.length > capacity) members = members.sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1)).slice(0, capacity);
    for (const [member, count] of members.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0)))
      out.push({ tag: b.tag, key, expireAtS: b.expireAtS, member, count });
  }
  return out;
}

export class TopKUpdater {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly capacity: number,
  ) {}

  /**
   * Applies the batch's counts once. Buckets already past their expiry are skipped (they can never be read).
   * Returns how many chunks were applied now (0 when a previous delivery applied them all).
   */
  async apply(batchKey: string, counts: readonly BucketCount[], nowMs: number = Date.now()): Promise<number> {
    const incs = topKIncrements(this.prefix, counts, this.capacity);
    let applied = 0;
    // Keys sort by their tag first, so a chunk ends at TOPK_CHUNK increments or where the tag changes.
    for (let i = 0, chunk = 0; i < incs.length; chunk++) {
      const tag = incs[i]!.tag;
      let end = i;
      while (end < incs.length && end - i < TOPK_CHUNK && incs[end]!.tag === tag) end++;
      const live = incs.slice(i, end).filter((x) => x.expireAtS * 1000 > nowMs);
      i = end;
      const keys: string[] = [`${tag}:done:${batchKey}:${chunk}`];
      const args: (string | number)[] = [TOPK_DONE_TTL_S, this.capacity];
      for (let j = 0; j < live.length; ) {
        const key = live[j]!.key;
        let n = 0;
        while (j + n < live.length && live[j + n]!.key === key) n++;
        keys.push(key);
        args.push(live[j]!.expireAtS, n);
        for (let t = j; t < j + n; t++) args.push(live[t]!.member, live[t]!.count);
        j += n;
      }
      try {
        applied += Number(await this.redis.eval(APPLY_SCRIPT, keys.length, ...keys, ...args));
      } catch (err) {
        throw new TransientError(`Redis top-K update failed: ${errorMessage(err)}`, 'topk_unavailable', { cause: err });
      }
    }
    return applied;
  }
}
