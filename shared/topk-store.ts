// The Redis layout of the top-K entities per event type, shared by the workers (which add to it) and the
// query API (which reads it): sorted sets per event-time bucket, unioned over the buckets of a window.
//
// Accuracy: a window's count for an entity is exact while every bucket it spans holds at most
// SLUICE_TOPK_CAPACITY distinct entities of that event type. Beyond that, each bucket keeps only its
// top members; an entity trimmed from a bucket and seen again in it starts from zero, so trimmed
// entities are undercounted (never overcounted), and entities outside every bucket's top are missing.
// A window is covered by whole buckets, so "1m" spans 60–70 s of event time, "1h" 60–61 min, "1d" 24–25 h.
import type { Redis } from 'ioredis';

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
 * The hash tag shared by every bucket of one (event type, resolution): a window read (ZUNION) and a batch's increments
 * touch one cluster slot each; the slots spread over event types and resolutions.
 */
export function topKSlotTag(prefix: string, eventType: string, res: TopKResolution): string {
  return `${prefix}{topk:${eventType}:${res.name}}`;
}

export function topKBucketKey(prefix: string, eventType: string, res: TopKResolution, bucketStartMs: number): string {
  return `${topKSlotTag(prefix, eventType, res)}:${bucketStartMs}`;
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

export interface TopKEntry {
  entityId: string;
  count: number;
}

/** The k entities with the most events of `eventType` in the window ending at `nowMs`, most first (ties by id). */
export async function readTopK(
  redis: Redis,
  prefix: string,
  eventType: string,
  window: TopKWindow,
  k: number,
  nowMs: number = Date.now(),
): Promise<TopKEntry[]> {
  const res = TOPK_RESOLUTIONS[window];
  const keys = topKWindowBuckets(res, nowMs).map((b) => topKBucketKey(prefix, eventType, res, b));
  const flat = await redis.zunion(keys.length, ...keys, 'WITHSCORES');
  const out: TopKEntry[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push({ entityId: flat[i]!, count: Number(flat[i + 1]) });
  out.sort((a, b) => b.count - a.count || (a.entityId < b.entityId ? -1 : a.entityId > b.entityId ? 1 : 0));
  return out.slice(0, Math.max(0, k));
}
