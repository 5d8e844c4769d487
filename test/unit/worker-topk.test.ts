import { describe, expect, it } from 'vitest';
import { TOPK_RESOLUTIONS, topKBucketExpiresAt, topKWindowBuckets } from '../../shared/topk-store.js';
import { topKIncrements } from '../../workers/topk.js';

describe('top-K bucket layout', () => {
  it('covers each window with whole buckets', () => {
    const now = Date.UTC(2026, 0, 31, 12, 34, 56, 789);
    const m = topKWindowBuckets(TOPK_RESOLUTIONS['1m'], now);
    expect(m).toHaveLength(7);
    expect(m[0]).toBeLessThanOrEqual(now - 60_000);
    expect(m[m.length - 1]).toBe(Date.UTC(2026, 0, 31, 12, 34, 50));
    expect(topKWindowBuckets(TOPK_RESOLUTIONS['1h'], now)).toHaveLength(61);
    expect(topKWindowBuckets(TOPK_RESOLUTIONS['1d'], now)).toHaveLength(25);
  });

  it('keeps a bucket alive while any window can still include it', () => {
    const res = TOPK_RESOLUTIONS['1m'];
    const start = 1_000_000_000;
    const lastReadAt = start + res.bucketMs - 1 + res.windowMs; // the last instant a window still covers it
    expect(topKWindowBuckets(res, lastReadAt)).toContain(start);
    expect(topKBucketExpiresAt(res, start)).toBeGreaterThan(lastReadAt);
  });

  it('sums 10-second counts into every resolution, in an order fixed by content alone', () => {
    const t = Date.UTC(2026, 0, 31, 12, 0, 0);
    const counts = [
      { entityId: 'b', eventType: 'view', bucketMs: t + 10_000, count: 2 },
      { entityId: 'a', eventType: 'view', bucketMs: t, count: 3 },
      { entityId: 'a', eventType: 'view', bucketMs: t + 70_000, count: 4 },
    ];
    const incs = topKIncrements('p:', counts);
    expect(topKIncrements('p:', [...counts].reverse())).toEqual(incs);
    const at = (key: string, member: string) => incs.find((x) => x.key === key && x.member === member)?.count;
    expect(at(`p:{topk:view:1h}:${t}`, 'a')).toBe(7);
    expect(at(`p:{topk:view:1m}:${t}`, 'a')).toBe(3);
    expect(at(`p:{topk:view:1m}:${t + 60_000}`, 'a')).toBe(4);
    expect(at(`p:{topk:view:10s}:${t + 10_000}`, 'b')).toBe(2);
    expect(incs).toHaveLength(3 + 3 + 2);
    const keys = incs.map((x) => `${x.key} ${x.member}`);
    expect([...keys].sort()).toEqual(keys);
  });
});
