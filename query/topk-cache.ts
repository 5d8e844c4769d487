// The query API's in-process cache of merged top-K windows: a request costs one GET of the tag's version while no batch
// was merged since the window was last merged, and re-reads only the buckets a batch changed when one was. Answers are
// never staler than the last batch merged before the request began (the version is read first).
//
// Cost per request: hit — 1 Redis GET and a slice of a ranked list; miss — the GET, one HGET per bucket of the window
// (pipelined), one MULTI reading the changed buckets whole, and a merge in O(items of the window's buckets).
// Concurrent misses of one window and version share one computation.
import type { RedisClient } from '../shared/clients/redis.js';
import {
  readTopKBucketTotals,
  readTopKBuckets,
  readTopKVersion,
  TOPK_RESOLUTIONS,
  type TopKBucket,
  topKWindowBuckets,
  type TopKWindow,
} from '../shared/topk-store.js';
import { mergeWindow, type RankedSummary, type Summary } from '../shared/topk-summary.js';

/** Longest a merged window is served without re-checking its buckets (bounds the effect of a lost version key). */
export const TOPK_CACHE_MAX_AGE_MS = 10_000;
/** Bucket items kept in memory across windows (≈ 100 bytes each); the least recently used buckets go first. */
export const TOPK_CACHE_MAX_ITEMS = 500_000;
/** Windows (event type × window) kept. */
export const TOPK_CACHE_MAX_WINDOWS = 1_000;

export type TopKCacheResult = 'hit' | 'miss' | 'coalesced';

interface WindowEntry {
  /** First and last bucket start: the window slid when they change. */
  span: string;
  version: string;
  atMs: number;
  ranked: RankedSummary;
}

export interface TopKCacheOptions {
  /** Items each merged window keeps: larger than the largest k answered. */
  keep: number;
  maxAgeMs?: number;
  maxItems?: number;
  maxWindows?: number;
  /** Monotonic clock for ages (tests). */
  clock?: () => number;
}

export class TopKWindowCache {
  private readonly windows = new Map<string, WindowEntry>();
  private readonly buckets = new Map<string, TopKBucket>();
  private bucketItems = 0;
  private readonly inflight = new Map<string, Promise<RankedSummary>>();
  private readonly keep: number;
  private readonly maxAgeMs: number;
  private readonly maxItems: number;
  private readonly maxWindows: number;
  private readonly clock: () => number;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    opts: TopKCacheOptions,
  ) {
    this.keep = opts.keep;
    this.maxAgeMs = opts.maxAgeMs ?? TOPK_CACHE_MAX_AGE_MS;
    this.maxItems = opts.maxItems ?? TOPK_CACHE_MAX_ITEMS;
    this.maxWindows = opts.maxWindows ?? TOPK_CACHE_MAX_WINDOWS;
    this.clock = opts.clock ?? (() => performance.now());
  }

  /** The window of `eventType` ending at `nowMs`, merged, with its `keep` largest items. */
  async read(eventType: string, window: TopKWindow, nowMs: number): Promise<{ ranked: RankedSummary; result: TopKCacheResult }> {
    const starts = topKWindowBuckets(TOPK_RESOLUTIONS[window], nowMs);
    const span = `${starts[0]}-${starts[starts.length - 1]}`;
    const windowKey = `${eventType}\u0000${window}`;
    const version = await readTopKVersion(this.redis, this.prefix, eventType, window);
    const cached = this.windows.get(windowKey);
    if (cached && cached.span === span && cached.version === version && this.clock() - cached.atMs < this.maxAgeMs) {
      return { ranked: cached.ranked, result: 'hit' };
    }
    const flightKey = `${windowKey}\u0000${span}\u0000${version}`;
    const running = this.inflight.get(flightKey);
    if (running) return { ranked: await running, result: 'coalesced' };
    const atMs = this.clock();
    const p = this.merge(eventType, window, starts);
    this.inflight.set(flightKey, p);
    try {
      const ranked = await p;
      this.windows.delete(windowKey);
      this.windows.set(windowKey, { span, version, atMs, ranked });
      if (this.windows.size > this.maxWindows) this.windows.delete(this.windows.keys().next().value!);
      return { ranked, result: 'miss' };
    } finally {
      this.inflight.delete(flightKey);
    }
  }

  private async merge(eventType: string, window: TopKWindow, starts: readonly number[]): Promise<RankedSummary> {
    const totals = await readTopKBucketTotals(this.redis, this.prefix, eventType, window, starts);
    const keyOf = (s: number) => `${eventType}\u0000${window}\u0000${s}`;
    const summaries: Summary[] = [];
    const stale: number[] = [];
    starts.forEach((s, i) => {
      if (totals[i] === 0) return; // no such bucket
      const key = keyOf(s);
      const cached = this.buckets.get(key);
      // N grows with every batch merged into a bucket: a bucket whose N is unchanged is the bucket as cached.
      if (cached && cached.total === totals[i]) {
        this.buckets.delete(key);
        this.buckets.set(key, cached);
        summaries.push(cached.summary);
      } else stale.push(s);
    });
    const fresh = await readTopKBuckets(this.redis, this.prefix, eventType, window, stale);
    fresh.forEach((b, j) => {
      this.remember(keyOf(stale[j]!), b);
      summaries.push(b.summary);
    });
    return mergeWindow(summaries, this.keep);
  }

  private remember(key: string, b: TopKBucket): void {
    const old = this.buckets.get(key);
    if (old) this.bucketItems -= old.summary.items.length;
    this.buckets.delete(key);
    this.buckets.set(key, b);
    this.bucketItems += b.summary.items.length;
    while (this.bucketItems > this.maxItems && this.buckets.size > 1) {
      const [oldest, ob] = this.buckets.entries().next().value!;
      this.buckets.delete(oldest);
      this.bucketItems -= ob.summary.items.length;
    }
  }
}
