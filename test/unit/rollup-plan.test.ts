// Pure rules of the retention features: which periods a rollup run recomputes, how ranges split into cold
// files, the cold key layout, and how an answer is stitched from rollups, cold rollups and finer buckets.
import { describe, expect, it } from 'vitest';
import { DAY_MS, HOUR_MS, parseRollupKey, rollupKey, compactionId } from '../../shared/contracts/cold-layout.js';
import { chunksOf, influxRetention, planRollup } from '../../workers/cold/rollup-plan.js';
import { foldInto, stitch } from '../../query/resolution-ladder.js';
import type { Bucket } from '../../query/buckets.js';

const NOW = Date.UTC(2026, 2, 10, 14, 25);
const H14 = Date.UTC(2026, 2, 10, 14);

describe('planRollup', () => {
  it('rolls complete periods from the checkpoint, or the late window when that is older', () => {
    expect(planRollup({ res: '1h', nowMs: NOW, checkpointMs: H14 - 10 * HOUR_MS, lateWindowMs: 2 * HOUR_MS, minuteRetentionMs: 7 * DAY_MS })).toEqual({
      fromMs: H14 - 10 * HOUR_MS,
      toMs: H14,
    });
    expect(planRollup({ res: '1h', nowMs: NOW, checkpointMs: H14, lateWindowMs: 2 * HOUR_MS, minuteRetentionMs: 7 * DAY_MS })).toEqual({
      fromMs: H14 - 2 * HOUR_MS,
      toMs: H14,
    });
  });
  it('starts at the oldest surely-kept minute on a first run and clamps explicit ranges to it', () => {
    const first = planRollup({ res: '1d', nowMs: NOW, lateWindowMs: 2 * DAY_MS, minuteRetentionMs: 7 * DAY_MS });
    expect(first).toEqual({ fromMs: Date.UTC(2026, 2, 4), toMs: Date.UTC(2026, 2, 10) });
    const clamped = planRollup({ res: '1h', nowMs: NOW, lateWindowMs: HOUR_MS, minuteRetentionMs: 7 * DAY_MS, fromMs: 0, toMs: NOW });
    expect(clamped.fromMs).toBe(Math.ceil((NOW - 7 * DAY_MS) / HOUR_MS) * HOUR_MS);
    expect(clamped.clampedFromMs).toBe(clamped.fromMs);
  });
  it('never rolls the current period', () => {
    expect(planRollup({ res: '1h', nowMs: NOW, lateWindowMs: HOUR_MS, minuteRetentionMs: 0, fromMs: H14, toMs: NOW + HOUR_MS })).toEqual({
      fromMs: H14,
      toMs: H14,
    });
  });
});

describe('cold layout', () => {
  it('splits ranges at cold-file boundaries and round-trips keys', () => {
    const day = Date.UTC(2026, 0, 31);
    expect(chunksOf('1h', { fromMs: day + 22 * HOUR_MS, toMs: day + 26 * HOUR_MS })).toEqual([
      { fromMs: day + 22 * HOUR_MS, toMs: day + DAY_MS },
      { fromMs: day + DAY_MS, toMs: day + 26 * HOUR_MS },
    ]);
    expect(chunksOf('1d', { fromMs: day - DAY_MS, toMs: day + 2 * DAY_MS }).map((c) => c.toMs)).toEqual([Date.UTC(2026, 1, 1), day + 2 * DAY_MS]);
    expect(rollupKey('1h', day + 5 * HOUR_MS)).toBe('rollups/1h/dt=2026-01-31/part.parquet');
    expect(rollupKey('1d', day)).toBe('rollups/1d/dt=2026-01/part.parquet');
    expect(parseRollupKey('rollups/1d/dt=2026-01/part.parquet')).toEqual({ res: '1d', startMs: Date.UTC(2026, 0, 1) });
    expect(parseRollupKey('rollups/1h/dt=2026-01/part.parquet')).toBeUndefined();
    expect(compactionId(['b', 'a'])).toBe(compactionId(['a', 'b']));
    expect(compactionId(['a'])).not.toBe(compactionId(['a', 'b']));
  });
  it('maps retentions to InfluxDB policy durations', () => {
    expect(influxRetention(0)).toEqual({ duration: 'INF', shardDuration: '7d' });
    expect(influxRetention(7 * DAY_MS)).toEqual({ duration: '168h', shardDuration: '1d' });
    expect(influxRetention(HOUR_MS).shardDuration).toBe('1h');
  });
});

describe('stitch', () => {
  const b = (t: number, count: number, min = 1, max = 1): Bucket => [t, count, count, min, max];
  it('prefers rollups, then cold rollups, then finer buckets for whole periods; edges only from finer buckets', () => {
    const from = 30 * 60_000; // half-way into hour 0
    const to = 3 * HOUR_MS + 15 * 60_000;
    const got = stitch(HOUR_MS, from, to, {
      rollup: new Map([
        [0, b(0, 100)],
        [HOUR_MS, b(HOUR_MS, 10)],
      ]),
      cold: new Map([
        [HOUR_MS, b(HOUR_MS, 999)],
        [2 * HOUR_MS, b(2 * HOUR_MS, 20)],
      ]),
      finer: new Map([
        [0, b(0, 5)],
        [HOUR_MS, b(HOUR_MS, 11)],
        [3 * HOUR_MS, b(3 * HOUR_MS, 3)],
      ]),
    });
    expect(got.map((x) => x[1])).toEqual([5, 10, 20, 3]);
  });
  it('folds hours into days exactly', () => {
    const folded = foldInto(DAY_MS, [b(0, 2, -1, 5), b(HOUR_MS, 3, -4, 2), b(DAY_MS, 1)]);
    expect([...folded.values()]).toEqual([
      [0, 5, 5, -4, 5],
      [DAY_MS, 1, 1, 1, 1],
    ]);
  });
});
