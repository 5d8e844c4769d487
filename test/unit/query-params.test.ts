// Parameter validation of the query API: defaults, minute snapping, automatic step, and a 400 detail
// naming each wrong parameter with what it accepts.
import { describe, expect, it } from 'vitest';
import {
  InvalidParamsError,
  MAX_POINTS,
  autoStep,
  bucketCount,
  parseStatsParams,
  parseTopKParams,
  parseTotalParams,
  type ParamProblem,
} from '../../query/params.js';

const NOW = Date.UTC(2026, 0, 15, 12, 34, 56, 789);
const base = { entityId: 'e-1', eventType: 'click', fn: 'count' };

function problems(fn: () => unknown): ParamProblem[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidParamsError) return err.details;
    throw err;
  }
  throw new Error('expected InvalidParamsError');
}

describe('parseStatsParams', () => {
  it('defaults to the last hour ending now, snapped to whole minutes, with step 1m', () => {
    const r = parseStatsParams(base, NOW);
    expect(r.toMs).toBe(Date.UTC(2026, 0, 15, 12, 35));
    expect(r.fromMs).toBe(Date.UTC(2026, 0, 15, 11, 35));
    expect(r.step).toBe('1m');
  });

  it('accepts ISO-8601 and epoch milliseconds for from and to', () => {
    const from = Date.UTC(2026, 0, 10, 0, 0);
    const r = parseStatsParams({ ...base, from: '2026-01-10T00:00:00Z', to: String(from + 3_600_000), step: '1h' }, NOW);
    expect(r).toMatchObject({ fromMs: from, toMs: from + 3_600_000, step: '1h' });
    expect(parseStatsParams({ ...base, from: '2026-01-10T01:00:00+01:00', to: '2026-01-10T00:30:00.000Z' }, NOW).fromMs).toBe(from);
  });

  it('counts a minute in the range when its start is in [from, to)', () => {
    const r = parseStatsParams({ ...base, from: '2026-01-10T10:00:30Z', to: '2026-01-10T10:05:00.001Z' }, NOW);
    expect(new Date(r.fromMs).toISOString()).toBe('2026-01-10T10:01:00.000Z');
    expect(new Date(r.toMs).toISOString()).toBe('2026-01-10T10:06:00.000Z');
  });

  it('picks the step from the range length when none is given', () => {
    expect(autoStep(6 * 3_600_000)).toBe('1m');
    expect(autoStep(6 * 3_600_000 + 60_000)).toBe('1h');
    expect(autoStep(14 * 86_400_000)).toBe('1h');
    expect(autoStep(14 * 86_400_000 + 60_000)).toBe('1d');
    expect(parseStatsParams({ ...base, from: '2025-01-01T00:00:00Z', to: '2026-01-01T00:00:00Z' }, NOW).step).toBe('1d');
  });

  it.each([
    ['entityId', { ...base, entityId: '' }],
    ['entityId', { ...base, entityId: 'x'.repeat(257) }],
    ['eventType', { ...base, eventType: 'Not Valid' }],
    ['fn', { ...base, fn: 'median' }],
    ['step', { ...base, step: '5m' }],
    ['from', { ...base, from: 'yesterday' }],
    ['to', { ...base, to: '12/01/2026' }],
    ['to', { ...base, to: '-5' }],
  ])('rejects a bad %s, naming it', (param, raw) => {
    const details = problems(() => parseStatsParams(raw, NOW));
    expect(details.map((d) => d.param)).toEqual([param]);
  });

  it('names the accepted values of enums and says when a parameter is missing', () => {
    const [fn] = problems(() => parseStatsParams({ ...base, fn: 'median' }, NOW));
    expect(fn?.message).toContain('count, sum, avg, min, max');
    expect(fn?.message).toContain('"median"');
    const [step] = problems(() => parseStatsParams({ ...base, step: 'weekly' }, NOW));
    expect(step?.message).toContain('1m, 1h, 1d');
    const missing = problems(() => parseStatsParams({}, NOW));
    expect(missing.map((d) => d.param).sort()).toEqual(['entityId', 'eventType', 'fn']);
    expect(missing.every((d) => d.message.startsWith('is required'))).toBe(true);
  });

  it('rejects a repeated parameter and an unknown one', () => {
    expect(problems(() => parseStatsParams({ ...base, fn: ['count', 'sum'] }, NOW))[0]?.param).toBe('fn');
    const [unknown] = problems(() => parseStatsParams({ ...base, stpe: '1h' }, NOW));
    expect(unknown).toMatchObject({ param: 'stpe' });
    expect(unknown?.message).toContain('step');
  });

  it('rejects from after to', () => {
    const [d] = problems(() => parseStatsParams({ ...base, from: '2026-01-10T10:00:00Z', to: '2026-01-10T09:00:00Z' }, NOW));
    expect(d?.param).toBe('from');
    expect(d?.message).toContain('after to');
  });

  it('rejects more than MAX_POINTS buckets and suggests a larger step', () => {
    const to = Date.UTC(2026, 0, 10);
    const from = to - (MAX_POINTS + 1) * 60_000;
    const [d] = problems(() => parseStatsParams({ ...base, from: String(from), to: String(to), step: '1m' }, NOW));
    expect(d?.param).toBe('step');
    expect(d?.message).toContain('larger step (1h or 1d)');
    expect(parseStatsParams({ ...base, from: String(from + 60_000), to: String(to), step: '1m' }, NOW).step).toBe('1m');
  });
});

describe('bucketCount', () => {
  it('counts UTC-aligned buckets the range touches', () => {
    const h = Date.UTC(2026, 0, 10, 10);
    expect(bucketCount(h, h, '1h')).toBe(0);
    expect(bucketCount(h, h + 3_600_000, '1h')).toBe(1);
    expect(bucketCount(h + 1_800_000, h + 3_600_000 + 60_000, '1h')).toBe(2);
    expect(bucketCount(h, h + 60_000 * 90, '1m')).toBe(90);
  });
});

describe('parseTotalParams and parseTopKParams', () => {
  it('takes entityId from the path and eventType from the query', () => {
    expect(parseTotalParams({ entityId: 'a b' }, { eventType: 'click' })).toEqual({ entityId: 'a b', eventType: 'click' });
    expect(problems(() => parseTotalParams({ entityId: 'a' }, {}))[0]?.param).toBe('eventType');
  });

  it('defaults k to 10 and bounds it to 1–100', () => {
    expect(parseTopKParams({ eventType: 'click', window: '1h' })).toEqual({ eventType: 'click', window: '1h', k: 10 });
    expect(parseTopKParams({ eventType: 'click', window: '1d', k: '100' }).k).toBe(100);
    for (const k of ['0', '101', '2.5', 'ten', '']) {
      const [d] = problems(() => parseTopKParams({ eventType: 'click', window: '1m', k }));
      expect(d).toMatchObject({ param: 'k' });
      expect(d?.message).toContain('from 1 to 100');
    }
    expect(problems(() => parseTopKParams({ eventType: 'click', window: '5m' }))[0]?.message).toContain('1m, 1h, 1d');
  });
});
