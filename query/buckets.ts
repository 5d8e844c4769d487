// Turns per-bucket aggregates into what /v1/stats answers: one value per bucket for the requested
// function, and the same function over the whole range. Pure; totals are exact because the buckets
// partition the range (sums of counts and sums, min of mins, max of maxes; avg = total sum / total count).
import type { StatFn } from './params.js';

/** One bucket as InfluxDB returns it: start (epoch ms), count, sum, min, max. */
export type Bucket = [t: number, count: number, sum: number, min: number | null, max: number | null];

export interface StatsPoint {
  t: string;
  value: number | null;
}

export interface RangeTotals {
  count: number;
  sum: number;
  min: number | null;
  max: number | null;
}

/** Value of `fn` for counts, sums and extremes already folded (a bucket or a whole range). */
export function statValue(fn: StatFn, a: { count: number; sum: number; min: number | null; max: number | null }): number | null {
  switch (fn) {
    case 'count':
      return a.count;
    case 'sum':
      return a.sum;
    case 'avg':
      return a.count > 0 ? a.sum / a.count : null;
    case 'min':
      return a.min;
    case 'max':
      return a.max;
  }
}

export function foldBuckets(buckets: readonly Bucket[]): RangeTotals {
  const totals: RangeTotals = { count: 0, sum: 0, min: null, max: null };
  for (const [, count, sum, min, max] of buckets) {
    totals.count += count;
    totals.sum += sum;
    if (min !== null && (totals.min === null || min < totals.min)) totals.min = min;
    if (max !== null && (totals.max === null || max > totals.max)) totals.max = max;
  }
  return totals;
}

/** The points and the range total of `fn`. */
export function project(fn: StatFn, buckets: readonly Bucket[]): { points: StatsPoint[]; total: number | null } {
  const points = buckets.map(([t, count, sum, min, max]) => ({ t: new Date(t).toISOString(), value: statValue(fn, { count, sum, min, max }) }));
  return { points, total: statValue(fn, foldBuckets(buckets)) };
}
