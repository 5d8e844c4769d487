// Merges a batch's per-entity event counts into the top-K buckets in Redis (layout in shared/topk-store.ts, the
// Space-Saving arithmetic in shared/topk-summary.ts), exactly once per batch and bucket: each bucket's merge is guarded
// by its own "done" key in the same Lua call, so a redelivered or concurrently delivered batch never adds twice, and a
// crash mid-way resumes where it stopped. Every call's keys share one hash tag per (event type, resolution): cluster-safe.
//
// Cost: the batch's exact counts per bucket are cut to its SLUICE_TOPK_CAPACITY (m) largest first, so a bucket's merge
// is O(b log m) Redis work for the b ≤ m items of the batch's summary, whatever the bucket holds: one ZADD (two for an
// entity new to the bucket) per item, an error update per item only once the bucket is approximate, eviction of the
// smallest counts (O(log m) each, at most b), and a constant number of commands per bucket. A batch's missing bound
// reaches the bucket's other items through the bucket offset, not one command each.
import type { RedisClient } from '../shared/clients/redis.js';
import type { BucketCount } from './batch-scan-types.js';
import { TransientError, errorMessage } from '../shared/errors.js';
import { TOPK_RESOLUTIONS, type TopKBucketKeys, topKBucketExpiresAt, topKBucketKeys, topKSlotTag, topKVersionKey } from '../shared/topk-store.js';
import { batchSummary, type Summary } from '../shared/topk-summary.js';

/** Items per Lua call, at most (a single bucket larger than this is its own call): bounds how long one call holds Redis. */
export const TOPK_CHUNK = 5_000;
/** How long a batch remembers it was applied; longer than any bucket lives, so a late redelivery is still a no-op. */
export const TOPK_DONE_TTL_S = 2 * 86_400;
/** Width of the finest bucket; counts are computed at this width and summed into the coarser ones. */
export const TOPK_BASE_BUCKET_MS = TOPK_RESOLUTIONS['1m'].bucketMs;

/**
 * KEYS[1] the tag's version key, then per bucket: done key, counts (sorted set), errors (hash), meta (hash).
 * ARGV[1] done TTL (s), ARGV[2] capacity, then per bucket: expire-at (epoch s), the batch's missing bound mb, its total,
 * n, and n (member, count) pairs, most events first (the batch's exact counts, error 0). Returns how many buckets were
 * merged now.
 *
 * Stored values are relative to the bucket offset o (true count = score + o, error = stored error + o). With A the
 * bucket and B the batch: an item in both gains B's count (its error is unchanged); an item of A only gains mb in count
 * and error (o += mb does it for all); an item of B only enters at count M_A + c and error M_A. The bucket then keeps
 * its `capacity` largest counts, and M = max(M_A + mb, largest count left out). Newcomers that could not displace
 * anything are never inserted (they are sent most first, so the first that cannot stops the rest): only those that
 * stay cost a write. Every command takes a whole chunk of members: a bucket costs a few dozen commands, O(b log m) work.
 */
const APPLY_SCRIPT = `
local ttl, cap = ARGV[1], tonumber(ARGV[2])
-- members per command: unpack() stays well below Lua's limit of 8000 values
local CHUNK = 1000
local function each(list, step, f)
  for from = 1, #list, step do f(from, math.min(#list, from + step - 1)) end
end
local a = 3
local merged = 0
for k = 2, #KEYS, 4 do
  local done, zs, errs, meta = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local expireAt, mb, nb, n = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  if not redis.call('SET', done, '1', 'NX', 'EX', ttl) then
    a = a + 2 * n
  else
    merged = merged + 1
    local m = redis.call('HMGET', meta, 'o', 'M')
    local o = tonumber(m[1] or '0')
    local ma = tonumber(m[2] or '0')
    local o2 = o + mb
    local base = ma - o2
    local members, counts = {}, {}
    for i = 1, n do
      members[i] = ARGV[a]
      counts[i] = tonumber(ARGV[a + 1])
      a = a + 2
    end
    -- items the bucket holds: add their count; the others are newcomers (still most first)
    local known, knownIds, newIds, newScores = {}, {}, {}, {}
    each(members, CHUNK, function(from, to)
      local stored = redis.call('ZMSCORE', zs, unpack(members, from, to))
      for i = from, to do
        local sc = stored[i - from + 1]
        if sc then
          known[#known + 1] = tonumber(sc) + counts[i] - mb
          known[#known + 1] = members[i]
          if mb ~= 0 then knownIds[#knownIds + 1] = members[i] end
        else
          newIds[#newIds + 1] = members[i]
          newScores[#newScores + 1] = base + counts[i]
        end
      end
    end)
    each(known, 2 * CHUNK, function(from, to) redis.call('ZADD', zs, unpack(known, from, to)) end)
    each(knownIds, CHUNK, function(from, to)
      local e = redis.call('HMGET', errs, unpack(knownIds, from, to))
      local upd = {}
      for i = from, to do
        upd[#upd + 1] = knownIds[i]
        upd[#upd + 1] = tonumber(e[i - from + 1] or '0') - mb
      end
      redis.call('HSET', errs, unpack(upd))
    end)
    -- newcomer j + 1 enters only if it beats the item at descending rank cap - j - 1 (or that rank is free)
    local r, enter = #newIds, #newIds
    local card = redis.call('ZCARD', zs)
    if r > 0 and card + r > cap then
      local lo, hi = math.max(0, cap - r), math.min(card, cap) - 1
      local edge = {}
      if hi >= lo then edge = redis.call('ZRANGE', zs, lo, hi, 'REV', 'WITHSCORES') end
      enter = 0
      while enter < r and cap - enter - 1 >= 0 do
        local t = cap - enter - 1
        if t <= hi and newScores[enter + 1] <= tonumber(edge[2 * (t - lo) + 2]) then break end
        enter = enter + 1
      end
    end
    local add, adderr = {}, {}
    for i = 1, enter do
      add[#add + 1] = newScores[i]
      add[#add + 1] = newIds[i]
      if base ~= 0 then
        adderr[#adderr + 1] = newIds[i]
        adderr[#adderr + 1] = base
      end
    end
    each(add, 2 * CHUNK, function(from, to) redis.call('ZADD', zs, unpack(add, from, to)) end)
    each(adderr, 2 * CHUNK, function(from, to) redis.call('HSET', errs, unpack(adderr, from, to)) end)
    local mnew = ma + mb
    if enter < r and newScores[enter + 1] + o2 > mnew then mnew = newScores[enter + 1] + o2 end
    -- then the smallest counts beyond the capacity leave
    local excess = redis.call('ZCARD', zs) - cap
    if excess > 0 then
      local gone = redis.call('ZRANGE', zs, 0, excess - 1)
      local largest = tonumber(redis.call('ZRANGE', zs, excess - 1, excess - 1, 'WITHSCORES')[2]) + o2
      if largest > mnew then mnew = largest end
      redis.call('ZREMRANGEBYRANK', zs, 0, excess - 1)
      each(gone, CHUNK, function(from, to) redis.call('HDEL', errs, unpack(gone, from, to)) end)
    end
    redis.call('HSET', meta, 'o', o2, 'M', mnew)
    redis.call('HINCRBY', meta, 'N', nb)
    redis.call('EXPIREAT', zs, expireAt)
    redis.call('EXPIREAT', errs, expireAt)
    redis.call('EXPIREAT', meta, expireAt)
  end
end
if merged > 0 then
  redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], ttl)
end
return merged
`;

/** One bucket's share of a batch: the summary of the batch's exact counts in that bucket. */
export interface BucketMerge {
  /** Hash tag of the keys (one cluster slot): a Lua call only ever touches keys of one tag. */
  tag: string;
  keys: TopKBucketKeys;
  bucketStartMs: number;
  expireAtS: number;
  summary: Summary;
}

/**
 * The batch's summary for every bucket it touches (every resolution), from counts per base bucket, in a deterministic
 * order (by key): it depends only on the batch content, so a redelivery sends the same calls. Each summary keeps the
 * bucket's `capacity` largest counts (see batchSummary): a bucket with at most `capacity` distinct entities stays exact.
 */
export function topKBatchMerges(prefix: string, counts: readonly BucketCount[], capacity: number): BucketMerge[] {
  type Bucket = { merge: Omit<BucketMerge, 'summary'>; members: Map<string, number> };
  const all: Bucket[] = [];
  for (const res of Object.values(TOPK_RESOLUTIONS)) {
    if (res.bucketMs % TOPK_BASE_BUCKET_MS !== 0) throw new Error(`top-K bucket ${res.name} is not a multiple of the base bucket`);
    // Buckets by event type, then start: no key string is built per count (a batch has ~100k counts, ~200 buckets).
    const byType = new Map<string, Map<number, Bucket>>();
    for (const c of counts) {
      const start = Math.floor(c.bucketMs / res.bucketMs) * res.bucketMs;
      let byStart = byType.get(c.eventType);
      if (!byStart) {
        byStart = new Map();
        byType.set(c.eventType, byStart);
      }
      let b = byStart.get(start);
      if (!b) {
        const keys = topKBucketKeys(prefix, c.eventType, res, start);
        const merge = { tag: topKSlotTag(prefix, c.eventType, res), keys, bucketStartMs: start, expireAtS: Math.ceil(topKBucketExpiresAt(res, start) / 1000) };
        b = { merge, members: new Map() };
        byStart.set(start, b);
        all.push(b);
      }
      b.members.set(c.entityId, (b.members.get(c.entityId) ?? 0) + c.count);
    }
  }
  all.sort((a, b) => (a.merge.keys.counts < b.merge.keys.counts ? -1 : a.merge.keys.counts > b.merge.keys.counts ? 1 : 0));
  return all.map((b) => ({ ...b.merge, summary: batchSummary(b.members, capacity) }));
}

export class TopKUpdater {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly capacity: number,
  ) {}

  /**
   * Merges the batch's counts once per bucket. Buckets already past their expiry are skipped (they can never be read).
   * Returns how many buckets were merged now (0 when previous deliveries merged them all).
   */
  async apply(batchKey: string, counts: readonly BucketCount[], nowMs: number = Date.now()): Promise<number> {
    const merges = topKBatchMerges(this.prefix, counts, this.capacity).filter((m) => m.expireAtS * 1000 > nowMs && m.summary.items.length > 0);
    let merged = 0;
    // Keys sort by their tag first, so a call ends where the tag changes or at TOPK_CHUNK items, between buckets.
    for (let i = 0; i < merges.length; ) {
      const tag = merges[i]!.tag;
      const keys: string[] = [topKVersionKey(tag)];
      const args: (string | number)[] = [TOPK_DONE_TTL_S, this.capacity];
      let items = 0;
      for (; i < merges.length && merges[i]!.tag === tag && (items === 0 || items + merges[i]!.summary.items.length <= TOPK_CHUNK); i++) {
        const m = merges[i]!;
        keys.push(`${tag}:done:${batchKey}:${m.bucketStartMs}`, m.keys.counts, m.keys.errors, m.keys.meta);
        args.push(m.expireAtS, m.summary.missingBound, m.summary.total, m.summary.items.length);
        for (const it of m.summary.items) args.push(it.entityId, it.count);
        items += m.summary.items.length;
      }
      try {
        merged += Number(await this.redis.eval(APPLY_SCRIPT, keys.length, ...keys, ...args));
      } catch (err) {
        throw new TransientError(`Redis top-K update failed: ${errorMessage(err)}`, 'topk_unavailable', { cause: err });
      }
    }
    return merged;
  }
}
