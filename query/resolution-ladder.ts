// Stitches one answer from several resolutions (pure): a bucket that lies wholly inside the range comes from
// its rollup (InfluxDB, else the cold tier) when one exists, otherwise from the next finer resolution; partial
// buckets at the range's edges always come from the finer resolution, which respects the exact range.
import type { Bucket } from './buckets.js';

export interface LadderSources {
  /** Rollup buckets keyed by period start (hot tier). */
  rollup: ReadonlyMap<number, Bucket>;
  /** Rollup buckets read from the cold bucket (used where the hot tier has none). */
  cold?: ReadonlyMap<number, Bucket>;
  /** Buckets folded from the finer resolution, keyed by period start. */
  finer: ReadonlyMap<number, Bucket>;
}

export const bucketMap = (buckets: Iterable<Bucket>): Map<number, Bucket> => new Map([...buckets].map((b) => [b[0], b]));

export function stitch(periodMs: number, fromMs: number, toMs: number, s: LadderSources): Bucket[] {
  const starts = new Set<number>([...s.rollup.keys(), ...(s.cold?.keys() ?? []), ...s.finer.keys()]);
  const out: Bucket[] = [];
  for (const t of [...starts].sort((a, b) => a - b)) {
    if (t + periodMs <= fromMs || t >= toMs) continue;
    const whole = t >= fromMs && t + periodMs <= toMs;
    const b = whole ? (s.rollup.get(t) ?? s.cold?.get(t) ?? s.finer.get(t)) : s.finer.get(t);
    if (b) out.push(b);
  }
  return out;
}

/** Folds buckets into coarser periods (hours → days): counts and sums add, extremes take min/max. */
export function foldInto(periodMs: number, buckets: readonly Bucket[]): Map<number, Bucket> {
  const out = new Map<number, Bucket>();
  for (const [t, count, sum, min, max] of buckets) {
    const p = Math.floor(t / periodMs) * periodMs;
    const a = out.get(p);
    if (!a) {
      out.set(p, [p, count, sum, min, max]);
      continue;
    }
    a[1] += count;
    a[2] += sum;
    if (min !== null && (a[3] === null || min < a[3])) a[3] = min;
    if (max !== null && (a[4] === null || max > a[4])) a[4] = max;
  }
  return out;
}
