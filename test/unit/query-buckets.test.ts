// Projection of per-bucket aggregates into /v1/stats points and range totals.
import { describe, expect, it } from 'vitest';
import { project, type Bucket } from '../../query/buckets.js';

const T0 = Date.UTC(2026, 0, 10, 10);
const buckets: Bucket[] = [
  [T0, 6, 12, -2, 5],
  [T0 + 60_000, 5, 110, 0.5, 100],
  [T0 + 120_000, 4, 10, 1, 4],
];

describe('project', () => {
  it('gives each bucket the function of its own aggregates', () => {
    expect(project('count', buckets).points.map((p) => p.value)).toEqual([6, 5, 4]);
    expect(project('sum', buckets).points.map((p) => p.value)).toEqual([12, 110, 10]);
    expect(project('avg', buckets).points.map((p) => p.value)).toEqual([2, 22, 2.5]);
    expect(project('min', buckets).points.map((p) => p.value)).toEqual([-2, 0.5, 1]);
    expect(project('max', buckets).points.map((p) => p.value)).toEqual([5, 100, 4]);
    expect(project('count', buckets).points[1]?.t).toBe('2026-01-10T10:01:00.000Z');
  });

  it('computes totals over the range, avg as total sum over total count (not a mean of means)', () => {
    expect(project('count', buckets).total).toBe(15);
    expect(project('sum', buckets).total).toBe(132);
    expect(project('avg', buckets).total).toBe(132 / 15);
    expect(project('min', buckets).total).toBe(-2);
    expect(project('max', buckets).total).toBe(100);
  });

  it('answers zero counts and sums and null extremes for an empty range', () => {
    expect(project('count', []).total).toBe(0);
    expect(project('sum', []).total).toBe(0);
    expect(project('avg', []).total).toBeNull();
    expect(project('min', []).total).toBeNull();
    expect(project('max', [])).toEqual({ points: [], total: null });
  });
});
