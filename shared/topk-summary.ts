// Space-Saving heavy-hitter summaries (Metwally et al.) and their merge (Agarwal et al., "Mergeable Summaries"): the
// arithmetic behind the top-K store, pure so it is tested without Redis. Every summary bounds each entity's true count.
//
// A summary of N events with capacity m keeps at most m items; for each, `count` is an upper bound of its true count and
// `count − error` a lower bound; `missingBound` bounds the true count of every entity it does not keep (0 when it keeps
// every entity it has seen: then every error is 0 and the counts are exact). Invariants, kept by every merge:
//   - error ≤ missingBound for every item, and missingBound ≤ N / m;
//   - missingBound > 0 only when the summary is full (m items), and then every count ≥ missingBound.
// Merging summaries A and B (same m): an item in both sums its counts and errors; an item in one only gets the other's
// missingBound added to its count and to its error (it may have had that many events there); missingBound adds up.
// A bucket merge then keeps the m largest counts and raises missingBound to the largest count it dropped. That sum of
// counts of the kept items never exceeds N is what bounds every error by N / m (each kept count ≥ missingBound).

export interface SummaryItem {
  entityId: string;
  /** Upper bound of the entity's true count (the Space-Saving counter). */
  count: number;
  /** count − error is a lower bound of the true count; 0 when the count is exact. */
  error: number;
}

export interface Summary {
  items: SummaryItem[];
  /** No entity missing from `items` has more events than this; 0 when `items` holds every entity seen. */
  missingBound: number;
  /** Events summarized (N). */
  total: number;
}

/** A window's merged summary: only its `items.length` largest items, most first (ties by id). */
export interface RankedSummary extends Summary {
  /** Largest error of any entity, listed or not (the sum of the buckets' missing bounds): at most total / capacity. */
  maxError: number;
  /** True when items were cut to the `keep` largest: then only k < items.length can be answered. */
  truncated: boolean;
}

export interface TopKItem {
  entityId: string;
  /** The Space-Saving estimate: equals upperBound; exact when lowerBound = upperBound. */
  count: number;
  lowerBound: number;
  upperBound: number;
}

export interface TopKAnswer {
  /** At most k items, by upper bound, most first (ties by id). */
  items: TopKItem[];
  /**
   * True when `items` is certainly a correct top-k (ties aside): every entity that is not listed has a true count at
   * most every listed entity's true count — the smallest listed lower bound is ≥ unlistedUpperBound (and, when fewer
   * than k entities are listed, no entity is unlisted at all).
   */
  guaranteed: boolean;
  /** No entity that is not listed has more events than this: max((k+1)-th upper bound, missing bound). */
  unlistedUpperBound: number;
  /** Events of the event type in the window's buckets (N). */
  total: number;
  /** No error (upperBound − lowerBound) exceeds this; at most total / SLUICE_TOPK_CAPACITY. */
  maxError: number;
}

const byId = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const byCountThenId = (a: SummaryItem, b: SummaryItem): number => b.count - a.count || byId(a.entityId, b.entityId);

/**
 * The summary of one batch's exact counts for one bucket: the `capacity` largest (ties: the smaller id is kept), exact,
 * with the largest count left out as missingBound. Items most first (ties by id): the order depends on the batch alone,
 * so a redelivery sends the same arguments, and the bucket merge stops at the first newcomer that cannot enter.
 */
export function batchSummary(counts: ReadonlyMap<string, number>, capacity: number): Summary {
  if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`top-K capacity must be a positive integer, got ${capacity}`);
  let total = 0;
  let items: SummaryItem[] = [];
  for (const [entityId, count] of counts) {
    if (!Number.isSafeInteger(count) || count < 0)
      throw new RangeError(`top-K count of ${JSON.stringify(entityId)} must be a non-negative integer, got ${count}`);
    total += count;
    if (count > 0) items.push({ entityId, count, error: 0 });
  }
  items.sort(byCountThenId);
  let missingBound = 0;
  if (items.length > capacity) {
    missingBound = items[capacity]!.count;
    items = items.slice(0, capacity);
  }
  return { items, missingBound, total };
}

/**
 * The sum of a window's bucket summaries, kept so that a bucket can be taken out again (the window merge adds, it never
 * drops an entity): a bucket that changed or left the window costs O(its items), not a merge of the whole window.
 * Every entity is credited each bucket's missingBound (added when ranking), and a bucket that holds it adds
 * (count − missingBound) and (error − missingBound) instead.
 */
export class WindowAccumulator {
  private readonly acc = new Map<string, { count: number; error: number; buckets: number }>();
  private missingBound = 0;
  private total = 0;

  /** Entities held (for memory budgets). */
  get size(): number {
    return this.acc.size;
  }

  add(bucket: Summary): void {
    this.apply(bucket, 1);
  }

  /** Takes out a bucket added before (the same summary). */
  remove(bucket: Summary): void {
    this.apply(bucket, -1);
  }

  private apply(b: Summary, sign: 1 | -1): void {
    this.missingBound += sign * b.missingBound;
    this.total += sign * b.total;
    for (const it of b.items) {
      let a = this.acc.get(it.entityId);
      if (!a) {
        a = { count: 0, error: 0, buckets: 0 };
        this.acc.set(it.entityId, a);
      }
      a.count += sign * (it.count - b.missingBound);
      a.error += sign * (it.error - b.missingBound);
      a.buckets += sign;
      if (a.buckets === 0) this.acc.delete(it.entityId);
    }
  }

  /**
   * The `keep` largest items, most first (ties by id): enough to answer any k < keep and know the (k+1)-th bound.
   * With `allows`, only the entities it accepts are ranked (a key's scope): the bounds stay valid, since an entity in no
   * bucket has at most missingBound events whether it is in the scope or not. `allows` is called once for every entity
   * held, before this returns (callers rely on it to learn the window's entities).
   */
  ranked(keep: number, allows?: (entityId: string) => boolean): RankedSummary {
    if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`keep must be a positive integer, got ${keep}`);
    const m = this.missingBound;
    const entries = allows ? [...this.acc].filter(([id]) => allows(id)) : this.acc;
    const size = allows ? (entries as unknown[]).length : this.acc.size;
    let threshold = -Infinity;
    if (size > keep) {
      // The keep-th largest count, from a numeric sort (cheap), leaves only the candidates for the comparator sort.
      const counts = new Float64Array(size);
      let i = 0;
      for (const [, a] of entries) counts[i++] = a.count;
      counts.sort();
      threshold = counts[counts.length - keep]!;
    }
    const items: SummaryItem[] = [];
    for (const [entityId, a] of entries) if (a.count >= threshold) items.push({ entityId, count: a.count + m, error: a.error + m });
    items.sort(byCountThenId);
    return { items: items.slice(0, keep), missingBound: m, total: this.total, maxError: m, truncated: size > keep };
  }
}

/** Merges the bucket summaries of a window and keeps its `keep` largest items. O(items of all buckets). */
export function mergeWindow(buckets: readonly Summary[], keep: number): RankedSummary {
  const acc = new WindowAccumulator();
  for (const b of buckets) acc.add(b);
  return acc.ranked(keep);
}

/**
 * A window restricted to the entities `allows` accepts, answerable for any k: an entity beyond the kept items has at
 * most the last kept count, so once items are cut that count bounds every entity not listed. (A window cache can rank
 * a restriction from its whole sum instead: WindowAccumulator.ranked with `allows`.)
 */
export function restrictRanked(window: RankedSummary, allows: (entityId: string) => boolean): RankedSummary {
  const last = window.items[window.items.length - 1];
  const missingBound = window.truncated && last ? Math.max(window.missingBound, last.count) : window.missingBound;
  return { ...window, items: window.items.filter((i) => allows(i.entityId)), missingBound, truncated: false };
}

/** The answer for k from a window's ranked summary (which must hold more than k items, or all of them). */
export function answerTopK(window: RankedSummary, k: number): TopKAnswer {
  if (window.truncated && k >= window.items.length) throw new RangeError(`k = ${k} needs a window merged with keep > ${k}, got ${window.items.length}`);
  const listed = window.items.slice(0, Math.max(0, k));
  const next = window.items[listed.length];
  const unlistedUpperBound = Math.max(window.missingBound, next?.count ?? 0);
  let minLower = Infinity;
  const items = listed.map((it): TopKItem => {
    const lowerBound = it.count - it.error;
    if (lowerBound < minLower) minLower = lowerBound;
    return { entityId: it.entityId, count: it.count, lowerBound, upperBound: it.count };
  });
  const guaranteed = listed.length === k ? minLower >= unlistedUpperBound : unlistedUpperBound === 0;
  return { items, guaranteed, unlistedUpperBound, total: window.total, maxError: window.maxError };
}
