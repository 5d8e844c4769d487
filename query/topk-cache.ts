// The query API's in-process cache of merged top-K windows. A request costs one GET of the tag's version while no
// batch was merged since the window was last merged; after a batch, only the buckets whose N changed are read again
// and swapped in the window's running sum (shared/topk-summary.ts WindowAccumulator), so a refresh costs O(changed
// buckets' items) plus ranking, not a merge of the whole window. Answers are never older than the last batch merged
// before the request began (the version is read first).
//
// Cost per request: hit — 1 Redis GET; refresh — the GET, one HGET per bucket of the window (one pipeline), one MULTI
// reading the changed buckets whole, O(their items) to swap them and O(entities of the window) to rank. Refreshes of
// one window run one at a time; concurrent requests wait for the running one.
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
import { type RankedSummary, WindowAccumulator } from '../shared/topk-summary.js';

/** Longest a merged window is served without re-checking its buckets (bounds the effect of a lost version key). */
export const TOPK_CACHE_MAX_AGE_MS = 10_000;
/** Bucket items and window entities kept in memory over all windows (≈ 100 bytes each); least recently used go first. */
export const TOPK_CACHE_MAX_ITEMS = 1_000_000;

/** hit: no batch since the last refresh; miss: this request refreshed; coalesced: it waited for another's refresh;
 * revalidated: `Cache-Control: no-cache` made it check every bucket. */
export type TopKCacheResult = 'hit' | 'miss' | 'coalesced' | 'revalidated';

interface WindowEntry {
  /** First and last bucket start: the window slid when they change. */
  span: string;
  version: string;
  atMs: number;
  acc: WindowAccumulator;
  /** The buckets summed in `acc`, by start, as they were read. */
  parts: Map<number, TopKBucket>;
  ranked: RankedSummary;
  /** Items held (bucket items + window entities), for the memory budget. */
  items: number;
}

export interface TopKCacheOptions {
  /** Items each merged window keeps: larger than the largest k answered. */
  keep: number;
  maxAgeMs?: number;
  maxItems?: number;
  /** Monotonic clock for ages (tests). */
  clock?: () => number;
}

export class TopKWindowCache {
  private readonly windows = new Map<string, WindowEntry>();
  private readonly refreshing = new Map<string, Promise<WindowEntry>>();
  private items = 0;
  private readonly keep: number;
  private readonly maxAgeMs: number;
  private readonly maxItems: number;
  private readonly clock: () => number;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    opts: TopKCacheOptions,
  ) {
    this.keep = opts.keep;
    this.maxAgeMs = opts.maxAgeMs ?? TOPK_CACHE_MAX_AGE_MS;
    this.maxItems = opts.maxItems ?? TOPK_CACHE_MAX_ITEMS;
    this.clock = opts.clock ?? (() => performance.now());
  }

  /**
   * The window of `eventType` ending at `nowMs`, merged, with its `keep` largest items (among the entities `allows`
   * accepts, when given: O(entities of the window) per request). `revalidate` checks every bucket of the window whatever
   * the version says (what `Cache-Control: no-cache` asks for). `entities` counts the entities of the window's sum that
   * was ranked (each of them was offered to `allows`, once). With `allows`, `keep` (default: the cache's) says how many
   * items to rank.
   */
  async read(
    eventType: string,
    window: TopKWindow,
    nowMs: number,
    revalidate = false,
    allows?: (entityId: string) => boolean,
    keep = this.keep,
  ): Promise<{ ranked: RankedSummary; result: TopKCacheResult; entities: number }> {
    const starts = topKWindowBuckets(TOPK_RESOLUTIONS[window], nowMs);
    const span = `${starts[0]}-${starts[starts.length - 1]}`;
    const key = `${eventType}\u0000${window}`;
    const version = await readTopKVersion(this.redis, this.prefix, eventType, window);
    let waited = false;
    for (;;) {
      const running = this.refreshing.get(key);
      if (running) {
        // One refresh per window at a time: it may have read the buckets before this request's version, so check again.
        waited = true;
        await running.catch(() => undefined);
        continue;
      }
      const e = this.windows.get(key);
      // A scope ranks its own entities from the window's whole sum (no await between: the sum is consistent).
      const rank = (w: WindowEntry, result: TopKCacheResult) => ({
        ranked: allows ? w.acc.ranked(keep, allows) : w.ranked,
        result,
        entities: w.acc.size,
      });
      if (!revalidate && e && e.span === span && Number(e.version) >= Number(version) && this.clock() - e.atMs < this.maxAgeMs) {
        return rank(e, waited ? 'coalesced' : 'hit');
      }
      const p = this.refresh(key, eventType, window, starts, span, version);
      this.refreshing.set(key, p);
      try {
        return rank(await p, revalidate ? 'revalidated' : 'miss');
      } finally {
        this.refreshing.delete(key);
      }
    }
  }

  private async refresh(key: string, eventType: string, window: TopKWindow, starts: readonly number[], span: string, version: string): Promise<WindowEntry> {
    const atMs = this.clock();
    const e = this.windows.get(key) ?? {
      span,
      version,
      atMs,
      acc: new WindowAccumulator(),
      parts: new Map(),
      ranked: new WindowAccumulator().ranked(this.keep),
      items: 0,
    };
    const totals = await readTopKBucketTotals(this.redis, this.prefix, eventType, window, starts);
    const wanted = new Map(starts.map((s, i) => [s, totals[i]!]));
    // N grows with every batch merged into a bucket: a bucket whose N is unchanged is the bucket as summed.
    const stale = starts.filter((s) => wanted.get(s)! > 0 && e.parts.get(s)?.total !== wanted.get(s));
    const fresh = await readTopKBuckets(this.redis, this.prefix, eventType, window, stale);
    // No await from here on: a failed read above leaves the entry as it was.
    this.items -= this.windows.has(key) ? e.items : 0;
    let changed = stale.length > 0 || !this.windows.has(key);
    for (const [s, b] of e.parts) {
      if ((wanted.get(s) ?? 0) > 0) continue; // still in the window
      e.acc.remove(b.summary);
      e.parts.delete(s);
      changed = true;
    }
    stale.forEach((s, i) => {
      const old = e.parts.get(s);
      if (old) e.acc.remove(old.summary);
      e.acc.add(fresh[i]!.summary);
      e.parts.set(s, fresh[i]!);
    });
    e.span = span;
    e.version = version;
    e.atMs = atMs;
    if (changed) e.ranked = e.acc.ranked(this.keep);
    e.items = e.acc.size;
    for (const b of e.parts.values()) e.items += b.summary.items.length;
    this.windows.delete(key);
    this.windows.set(key, e);
    this.items += e.items;
    for (const [k, old] of this.windows) {
      if (this.items <= this.maxItems || k === key) break;
      this.windows.delete(k);
      this.items -= old.items;
    }
    return e;
  }
}
