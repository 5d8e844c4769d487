// The top-K bucket layout, the batch summaries a worker sends, and the Space-Saving window merge and answer: bounds
// that always hold the true counts, a guaranteed flag that is never true for a wrong top-k, exact counts under capacity.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeTopKBucket, TOPK_RESOLUTIONS, topKBucketExpiresAt, topKWindowBuckets } from '../../shared/topk-store.js';
import { answerTopK, batchSummary, mergeWindow, restrictRanked, type Summary, WindowAccumulator } from '../../shared/topk-summary.js';
import { topKBatchMerges } from '../../workers/topk.js';

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
    const merges = topKBatchMerges('p:', counts, 1000);
    expect(topKBatchMerges('p:', [...counts].reverse(), 1000)).toEqual(merges);
    const at = (key: string, member: string) => merges.find((x) => x.keys.counts === key)?.summary.items.find((i) => i.entityId === member)?.count;
    expect(at(`p:{topk:view:1h}:${t}`, 'a')).toBe(7);
    expect(at(`p:{topk:view:1m}:${t}`, 'a')).toBe(3);
    expect(at(`p:{topk:view:1m}:${t + 60_000}`, 'a')).toBe(4);
    expect(at(`p:{topk:view:10s}:${t + 10_000}`, 'b')).toBe(2);
    expect(merges.map((m) => m.summary.items.length)).toEqual([1, 1, 1, 2, 2, 1]); // 10s ×3, 1h, 1m ×2
    const keys = merges.map((x) => x.keys.counts);
    expect([...keys].sort()).toEqual(keys);
    expect(merges[0]!.keys).toEqual({ counts: `p:{topk:view:10s}:${t}`, errors: `p:{topk:view:10s}:${t}:err`, meta: `p:{topk:view:10s}:${t}:meta` });
    expect(merges.every((m) => m.keys.counts.startsWith(m.tag))).toBe(true);
  });
});

describe('batch summary', () => {
  it('is the exact counts, most first, while the batch holds at most `capacity` entities of the bucket', () => {
    const s = batchSummary(
      new Map([
        ['b', 2],
        ['c', 1],
        ['a', 5],
        ['d', 2],
      ]),
      4,
    );
    expect(s).toEqual({
      items: [
        { entityId: 'a', count: 5, error: 0 },
        { entityId: 'b', count: 2, error: 0 },
        { entityId: 'd', count: 2, error: 0 },
        { entityId: 'c', count: 1, error: 0 },
      ],
      missingBound: 0,
      total: 10,
    });
  });

  it('keeps the largest counts and bounds the rest by the largest it left out', () => {
    const s = batchSummary(
      new Map([
        ['a', 9],
        ['b', 4],
        ['c', 4],
        ['d', 3],
        ['e', 1],
      ]),
      2,
    );
    expect(s.items.map((i) => i.entityId)).toEqual(['a', 'b']); // ties: the smaller id is kept
    expect(s.missingBound).toBe(4);
    expect(s.total).toBe(21);
  });

  it('refuses a capacity or a count that is not a non-negative integer, naming it', () => {
    expect(() => batchSummary(new Map([['a', 1]]), 0)).toThrow('capacity must be a positive integer, got 0');
    expect(() => batchSummary(new Map([['a', 1.5]]), 10)).toThrow('count of "a" must be a non-negative integer, got 1.5');
    expect(() => batchSummary(new Map([['a', -1]]), 10)).toThrow('got -1');
  });
});

describe('window merge and answer', () => {
  it('decodes a bucket: stored counts and errors are relative to its offset', () => {
    const b = decodeTopKBucket('k', ['3', '4', '40'], ['x', '2', 'y', '7'], ['x', '-3']);
    expect(b).toEqual({
      total: 40,
      summary: {
        items: [
          { entityId: 'x', count: 5, error: 0 },
          { entityId: 'y', count: 10, error: 3 },
        ],
        missingBound: 4,
        total: 40,
      },
    });
    expect(decodeTopKBucket('k', [null, null, null], [], []).summary).toEqual({ items: [], missingBound: 0, total: 0 });
    expect(() => decodeTopKBucket('k', ['x', null, null], [], [])).toThrow('offset of k is not a number: "x"');
    expect(() => decodeTopKBucket('k', [null, null, null], ['y', 'NaN'], [])).toThrow('count of k is not a number: "NaN"');
  });

  it('sums the buckets; an entity absent from a bucket gets its missing bound in count and error', () => {
    const a: Summary = {
      items: [
        { entityId: 'x', count: 10, error: 0 },
        { entityId: 'y', count: 6, error: 2 },
      ],
      missingBound: 3,
      total: 20,
    };
    const b: Summary = {
      items: [
        { entityId: 'x', count: 4, error: 0 },
        { entityId: 'z', count: 8, error: 0 },
      ],
      missingBound: 0,
      total: 12,
    };
    const w = mergeWindow([a, b], 10);
    expect(w).toEqual({
      items: [
        { entityId: 'x', count: 14, error: 0 },
        { entityId: 'z', count: 11, error: 3 },
        { entityId: 'y', count: 6, error: 2 },
      ],
      missingBound: 3,
      total: 32,
      maxError: 3,
      truncated: false,
    });
    const top1 = answerTopK(w, 1);
    expect(top1).toEqual({
      items: [{ entityId: 'x', count: 14, lowerBound: 14, upperBound: 14 }],
      guaranteed: true,
      unlistedUpperBound: 11,
      total: 32,
      maxError: 3,
    });
    // z ∈ [8, 11] is certainly second, y ∈ [4, 6] third (an unlisted entity has at most 3), but a fourth is unknown
    expect(answerTopK(w, 2)).toMatchObject({ guaranteed: true, unlistedUpperBound: 6 });
    expect(answerTopK(w, 3)).toMatchObject({ guaranteed: true, unlistedUpperBound: 3 });
    expect(answerTopK(w, 4)).toMatchObject({ guaranteed: false, unlistedUpperBound: 3 });
  });

  it('is not guaranteed when a listed lower bound is below an unlisted upper bound', () => {
    const a: Summary = {
      items: [
        { entityId: 'x', count: 10, error: 5 },
        { entityId: 'y', count: 9, error: 0 },
      ],
      missingBound: 5,
      total: 30,
    };
    const w = mergeWindow([a], 10);
    expect(answerTopK(w, 1)).toMatchObject({ items: [{ entityId: 'x', lowerBound: 5, upperBound: 10 }], guaranteed: false, unlistedUpperBound: 9 });
    expect(answerTopK(w, 2)).toMatchObject({ guaranteed: true, unlistedUpperBound: 5 });
  });

  it('keeps only the largest items, and refuses a k it can no longer answer', () => {
    const a = batchSummary(new Map(Array.from({ length: 50 }, (_, i) => [`e${String(i).padStart(2, '0')}`, i + 1])), 100);
    const w = mergeWindow([a], 5);
    expect(w.items.map((i) => i.count)).toEqual([50, 49, 48, 47, 46]);
    expect(w.truncated).toBe(true);
    expect(answerTopK(w, 4)).toMatchObject({ guaranteed: true, unlistedUpperBound: 46 });
    expect(() => answerTopK(w, 5)).toThrow('k = 5 needs a window merged with keep > 5');
    expect(() => mergeWindow([a], 0)).toThrow('keep must be a positive integer');
  });

  it('takes a bucket out of a window sum as if it had never been added (fast-check)', () => {
    const bucket = fc
      .array(fc.tuple(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 1, max: 20 })), { maxLength: 12 })
      .map((pairs) => batchSummary(new Map(pairs.map(([e, c]) => [`e${e}`, c])), 4));
    fc.assert(
      fc.property(fc.array(fc.tuple(bucket, fc.boolean()), { maxLength: 8 }), (buckets) => {
        const acc = new WindowAccumulator();
        for (const [b] of buckets) acc.add(b);
        for (const [b, leaves] of buckets) if (leaves) acc.remove(b);
        const stay = buckets.filter(([, leaves]) => !leaves).map(([b]) => b);
        expect(acc.ranked(5)).toEqual(mergeWindow(stay, 5));
        expect(acc.size).toBe(new Set(stay.flatMap((b) => b.items.map((i) => i.entityId))).size);
      }),
    );
  });

  it('ranks only the entities a scope allows, among themselves, from the whole window', () => {
    const acc = new WindowAccumulator();
    acc.add(batchSummary(new Map(Array.from({ length: 20 }, (_, i) => [`e${String(i).padStart(2, '0')}`, 100 - i])), 100));
    acc.add({ items: [{ entityId: 'e10', count: 5, error: 0 }], missingBound: 2, total: 40 });
    // e10 is far below the top 5 of the window, yet first in the scope {e10, e15}; each has + 2 where absent
    const scoped = acc.ranked(5, (id) => id === 'e10' || id === 'e15');
    expect(scoped).toMatchObject({
      items: [
        { entityId: 'e10', count: 95 },
        { entityId: 'e15', count: 87 },
      ],
      missingBound: 2,
      truncated: false,
    });
    expect(answerTopK(scoped, 1)).toMatchObject({ guaranteed: true, unlistedUpperBound: 87 });
    expect(answerTopK(scoped, 3)).toMatchObject({ guaranteed: false, unlistedUpperBound: 2 }); // an unseen entity of the scope may have 2
    expect(acc.ranked(5).items.map((i) => i.entityId)).toEqual(['e00', 'e01', 'e02', 'e03', 'e04']);
  });

  it('restricted after the merge, bounds the entities beyond the kept items by the last kept count', () => {
    const a = batchSummary(new Map(Array.from({ length: 20 }, (_, i) => [`e${String(i).padStart(2, '0')}`, 100 - i])), 100);
    const w = mergeWindow([a], 5); // keeps 100 … 96; e05 … e19 (95 … 81) are cut
    // a restriction to e01 and e10: e10 (90) is not kept, so e01 alone is not certainly its top 2
    const restricted = restrictRanked(w, (id) => id === 'e01' || id === 'e10');
    expect(answerTopK(restricted, 2)).toMatchObject({ items: [{ entityId: 'e01', count: 99 }], guaranteed: false, unlistedUpperBound: 96 });
    expect(answerTopK(restricted, 1)).toMatchObject({ guaranteed: true, unlistedUpperBound: 96 });
    // nothing was cut: the restricted list is complete
    expect(
      answerTopK(
        restrictRanked(mergeWindow([a], 100), (id) => id === 'e01'),
        2,
      ),
    ).toMatchObject({ guaranteed: true, unlistedUpperBound: 0 });
  });

  it('bounds hold the true counts and the flag never lies, for any buckets of batch summaries (fast-check)', () => {
    const bucket = fc.array(fc.tuple(fc.integer({ min: 0, max: 14 }), fc.integer({ min: 1, max: 30 })), { maxLength: 25 });
    fc.assert(
      fc.property(fc.array(bucket, { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 6 }), (buckets, cap, k) => {
        const truth = new Map<string, number>();
        const summaries = buckets.map((pairs) => {
          const counts = new Map<string, number>();
          for (const [e, c] of pairs) {
            counts.set(`e${e}`, (counts.get(`e${e}`) ?? 0) + c);
            truth.set(`e${e}`, (truth.get(`e${e}`) ?? 0) + c);
          }
          return batchSummary(counts, cap);
        });
        const answer = answerTopK(mergeWindow(summaries, k + 1), k);
        const n = [...truth.values()].reduce((x, y) => x + y, 0);
        expect(answer.total).toBe(n);
        expect(answer.maxError).toBeLessThanOrEqual(n / cap);
        for (const it of answer.items) {
          const t = truth.get(it.entityId) ?? 0;
          expect(t).toBeGreaterThanOrEqual(it.lowerBound);
          expect(t).toBeLessThanOrEqual(it.upperBound);
          expect(it.upperBound - it.lowerBound).toBeLessThanOrEqual(answer.maxError);
        }
        const listed = new Set(answer.items.map((i) => i.entityId));
        const unlisted = [...truth].filter(([e]) => !listed.has(e)).map(([, c]) => c);
        for (const c of unlisted) expect(c).toBeLessThanOrEqual(answer.unlistedUpperBound);
        if (answer.guaranteed) {
          const minListed = Math.min(...answer.items.map((i) => truth.get(i.entityId) ?? 0));
          expect(Math.max(0, ...unlisted)).toBeLessThanOrEqual(minListed);
          expect(answer.items.length === k || unlisted.length === 0).toBe(true);
        }
        if (buckets.every((pairs) => new Set(pairs.map(([e]) => e)).size <= cap)) {
          expect(answer.guaranteed).toBe(true);
          for (const it of answer.items) expect(it.lowerBound).toBe(it.upperBound);
        }
      }),
      { numRuns: 500 },
    );
  });
});
