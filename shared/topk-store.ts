// The Redis layout of the top-K entities per event type, shared by the workers (which merge each batch into it,
// workers/topk.ts) and the query API (which reads and merges a window's buckets): one Space-Saving summary
// (shared/topk-summary.ts) per event type and event-time bucket, merged over the buckets of a window.
//
// A bucket is three keys under the tag {topk:<type>:<resolution>} (so one Lua call per batch keeps them in one cluster
// slot): `<tag>:<start>` a sorted set of stored counts, `<tag>:<start>:err` a hash of stored errors (absent = 0), and
// `<tag>:<start>:meta` a hash of `o` (an offset added to every stored count and error: a batch's missing bound reaches
// every item of the bucket in O(1)), `M` (the missing bound) and `N` (events merged). True count ∈ [count − error,
// count] with count = score + o and error = stored error + o. `<tag>:v` counts the batches merged into the tag, so a
// reader knows in one GET whether anything changed since it last merged a window.
//
// Accuracy (SLUICE_TOPK_CAPACITY = m): a window of N events answers every entity's count within an error of at most
// N / m, and every entity with more than N / m events is in the window's summary. Counts are exact (error 0) while
// every bucket of the window holds at most m distinct entities of the event type. /v1/topk says for each answer
// whether it is guaranteed to be the true top-k (see answerTopK).
// A window is covered by whole buckets, so "1m" spans 60–70 s of event time, "1h" 60–61 min, "1d" 24–25 h.
// A bucket of the former layout (a sorted set alone) reads as exact; such buckets expire within a day.
import type { RedisClient } from './clients/redis.js';
import { answerTopK, mergeWindow, type RankedSummary, type Summary, type SummaryItem, type TopKAnswer, type TopKItem } from './topk-summary.js';

export type TopKWindow = '1m' | '1h' | '1d';

export interface TopKResolution {
  /** Name used in keys. */
  readonly name: string;
  /** Width of one bucket (event time). */
  readonly bucketMs: number;
  /** Length of the window this resolution serves. */
  readonly windowMs: number;
}

/** One bucket size per window: 10-second buckets serve the last minute, minutes the last hour, hours the last day. */
export const TOPK_RESOLUTIONS: Readonly<Record<TopKWindow, TopKResolution>> = {
  '1m': { name: '10s', bucketMs: 10_000, windowMs: 60_000 },
  '1h': { name: '1m', bucketMs: 60_000, windowMs: 3_600_000 },
  '1d': { name: '1h', bucketMs: 3_600_000, windowMs: 86_400_000 },
};

/** Extra lifetime of a bucket after it has left its window (late readers, clock skew). */
export const TOPK_EXPIRY_MARGIN_MS = 60_000;

/**
 * The hash tag shared by every bucket of one (event type, resolution): a window read and a batch's update touch one
 * cluster slot each; the slots spread over event types and resolutions.
 */
export function topKSlotTag(prefix: string, eventType: string, res: TopKResolution): string {
  return `${prefix}{topk:${eventType}:${res.name}}`;
}

/** The sorted set of a bucket's stored counts (its other keys: topKBucketKeys). */
export function topKBucketKey(prefix: string, eventType: string, res: TopKResolution, bucketStartMs: number): string {
  return `${topKSlotTag(prefix, eventType, res)}:${bucketStartMs}`;
}

export interface TopKBucketKeys {
  counts: string;
  errors: string;
  meta: string;
}

export function topKBucketKeys(prefix: string, eventType: string, res: TopKResolution, bucketStartMs: number): TopKBucketKeys {
  const counts = topKBucketKey(prefix, eventType, res, bucketStartMs);
  return { counts, errors: `${counts}:err`, meta: `${counts}:meta` };
}

/** Incremented by every batch merged into a bucket of the tag. */
export function topKVersionKey(tag: string): string {
  return `${tag}:v`;
}

/** Epoch ms after which a bucket can never be part of its window again. */
export function topKBucketExpiresAt(res: TopKResolution, bucketStartMs: number): number {
  return bucketStartMs + res.bucketMs + res.windowMs + TOPK_EXPIRY_MARGIN_MS;
}

/** Start times of the buckets that cover (nowMs − window, nowMs]. */
export function topKWindowBuckets(res: TopKResolution, nowMs: number): number[] {
  const last = Math.floor(nowMs / res.bucketMs) * res.bucketMs;
  const first = Math.floor((nowMs - res.windowMs) / res.bucketMs) * res.bucketMs;
  const out: number[] = [];
  for (let b = first; b <= last; b += res.bucketMs) out.push(b);
  return out;
}

/** A bucket as read: its summary and N, which grows with every batch merged into it (a change detector). */
export interface TopKBucket {
  summary: Summary;
  total: number;
}

function num(raw: string | null | undefined, what: string): number {
  if (raw === null || raw === undefined || raw === '') return 0;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`top-K ${what} is not a number: ${JSON.stringify(raw)}`);
  return n;
}

/**
 * Decodes a bucket from the replies of HMGET meta o M N, ZRANGE counts 0 -1 WITHSCORES and HGETALL errors (flat).
 * (Parsing those replies costs the query API ≈ 1 µs per element; a Lua script returning one packed string would cost
 * Redis twice its CPU instead, and Redis is the pipeline's bottleneck.)
 */
export function decodeTopKBucket(key: string, meta: readonly (string | null)[], scores: readonly string[], errorsFlat: readonly string[]): TopKBucket {
  const o = num(meta[0], `offset of ${key}`);
  const missingBound = num(meta[1], `missing bound of ${key}`);
  const total = num(meta[2], `total of ${key}`);
  const errors = new Map<string, string>();
  for (let i = 0; i + 1 < errorsFlat.length; i += 2) errors.set(errorsFlat[i]!, errorsFlat[i + 1]!);
  const items: SummaryItem[] = [];
  for (let i = 0; i + 1 < scores.length; i += 2) {
    const entityId = scores[i]!;
    items.push({ entityId, count: num(scores[i + 1], `count of ${key}`) + o, error: num(errors.get(entityId), `error of ${key}`) + o });
  }
  return { summary: { items, missingBound, total }, total };
}

function unwrap<T>(replies: [Error | null, unknown][] | null, what: string): T[] {
  if (!replies) throw new Error(`Redis ${what} was aborted`);
  return replies.map(([err, v]) => {
    if (err) throw err;
    return v as T;
  });
}

/** The version of every bucket of `window` (see topKVersionKey); "0" before any batch was merged. */
export async function readTopKVersion(redis: RedisClient, prefix: string, eventType: string, window: TopKWindow): Promise<string> {
  return (await redis.get(topKVersionKey(topKSlotTag(prefix, eventType, TOPK_RESOLUTIONS[window])))) ?? '0';
}

/** N of each bucket (0 for a bucket that does not exist), in one round trip. */
export async function readTopKBucketTotals(
  redis: RedisClient,
  prefix: string,
  eventType: string,
  window: TopKWindow,
  starts: readonly number[],
): Promise<number[]> {
  if (starts.length === 0) return [];
  const res = TOPK_RESOLUTIONS[window];
  const p = redis.pipeline();
  for (const s of starts) p.hget(topKBucketKeys(prefix, eventType, res, s).meta, 'N');
  return unwrap<string | null>(await p.exec(), 'top-K bucket totals read').map((v, i) => num(v, `total of bucket ${starts[i]}`));
}

/** Reads whole buckets, each consistent with itself (one MULTI: a batch's merge never lands half-read). */
export async function readTopKBuckets(
  redis: RedisClient,
  prefix: string,
  eventType: string,
  window: TopKWindow,
  starts: readonly number[],
): Promise<TopKBucket[]> {
  if (starts.length === 0) return [];
  const res = TOPK_RESOLUTIONS[window];
  const keys = starts.map((s) => topKBucketKeys(prefix, eventType, res, s));
  const m = redis.multi();
  for (const k of keys) m.hmget(k.meta, 'o', 'M', 'N').zrange(k.counts, '0', '-1', 'WITHSCORES').call('HGETALL', k.errors);
  const replies = unwrap<unknown>(await m.exec(), 'top-K bucket read');
  return keys.map((k, i) => decodeTopKBucket(k.counts, replies[3 * i] as (string | null)[], replies[3 * i + 1] as string[], replies[3 * i + 2] as string[]));
}

/** The window ending at `nowMs`, merged from all its buckets (no cache), with its `keep` largest items. */
export async function readTopKWindow(
  redis: RedisClient,
  prefix: string,
  eventType: string,
  window: TopKWindow,
  keep: number,
  nowMs: number = Date.now(),
): Promise<RankedSummary> {
  const buckets = await readTopKBuckets(redis, prefix, eventType, window, topKWindowBuckets(TOPK_RESOLUTIONS[window], nowMs));
  return mergeWindow(
    buckets.map((b) => b.summary),
    keep,
  );
}

/** The k entities with the most events of `eventType` in the window ending at `nowMs` (no cache), with their bounds. */
export async function readTopKAnswer(
  redis: RedisClient,
  prefix: string,
  eventType: string,
  window: TopKWindow,
  k: number,
  nowMs: number = Date.now(),
): Promise<TopKAnswer> {
  return answerTopK(await readTopKWindow(redis, prefix, eventType, window, k + 1, nowMs), k);
}

/** The items of readTopKAnswer: most first by upper bound (ties by id). */
export async function readTopK(
  redis: RedisClient,
  prefix: string,
  eventType: string,
  window: TopKWindow,
  k: number,
  nowMs: number = Date.now(),
): Promise<TopKItem[]> {
  return (await readTopKAnswer(redis, prefix, eventType, window, k, nowMs)).items;
}
