// Hostile query parameters: control characters and lone surrogates are 400s naming the parameter, and for ANY
// parameter object the parsers either return a request or throw InvalidParamsError — never another error (a 500).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidParamsError, parseStatsParams, parseTopKParams, parseTotalParams, textProblem } from '../../query/params.js';

const NOW = Date.UTC(2026, 0, 15, 12, 34, 56, 789);
const base = { entityId: 'e-1', eventType: 'click', fn: 'count' };

function problemsOf(fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidParamsError) return err.details;
    throw err;
  }
  throw new Error('expected InvalidParamsError');
}

/** What a parsed query string can hold: strings, or arrays of them for a repeated parameter. */
const value = fc.oneof(fc.string({ unit: 'binary' }), fc.string(), fc.array(fc.string({ unit: 'binary' }), { maxLength: 3 }));
const NAMES = ['entityId', 'eventType', 'fn', 'from', 'to', 'step', 'window', 'k'];
const query = fc.dictionary(fc.oneof(fc.constantFrom(...NAMES), fc.string({ unit: 'binary' })), value, { maxKeys: 8 });
const plausible = fc.record(
  {
    entityId: fc.oneof(fc.string({ unit: 'binary', minLength: 1 }), fc.constant('e-1')),
    eventType: fc.oneof(fc.constantFrom('click', 'view'), fc.string({ unit: 'binary' })),
    fn: fc.constantFrom('count', 'sum', 'avg', 'min', 'max'),
    from: fc.oneof(
      fc.string({ unit: 'binary' }),
      fc.integer({ min: -1e16, max: 1e16 }).map(String),
      fc.date().map((d) => (Number.isNaN(d.getTime()) ? 'x' : d.toISOString())),
    ),
    to: fc.oneof(fc.string({ unit: 'binary' }), fc.integer({ min: 0, max: 4e12 }).map(String)),
    step: fc.constantFrom('1m', '1h', '1d'),
  },
  { requiredKeys: ['entityId', 'eventType', 'fn'] },
);

/** Runs a parser: a request, or the InvalidParamsError every problem must be (with each problem named). */
function outcome(fn: () => unknown): 'ok' | 'invalid' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (!(err instanceof InvalidParamsError)) throw err;
    expect(err.details.length).toBeGreaterThan(0);
    for (const d of err.details) expect(typeof d.param === 'string' && d.param.length > 0 && d.message.length > 0).toBe(true);
    return 'invalid';
  }
}

describe('query parameters with hostile text', () => {
  it.each([
    ['a NUL', 'e\u00001', 'U+0000 at position 1'],
    ['a newline', 'line\nbreak', 'U+000A at position 4'],
    ['DEL', 'x\u007f', 'U+007F at position 1'],
    ['a lone surrogate', 'x\ud800y', 'lone UTF-16 surrogate'],
  ])('rejects an entityId holding %s with 400 naming entityId', (_what, entityId, says) => {
    for (const details of [
      problemsOf(() => parseStatsParams({ ...base, entityId }, NOW)),
      problemsOf(() => parseTotalParams({ entityId }, { eventType: 'click' })),
    ]) {
      expect(details.map((d) => d.param)).toEqual(['entityId']);
      expect(details[0]!.message).toContain(says);
    }
  });

  it('still accepts any other Unicode text, astral characters included', () => {
    expect(parseTotalParams({ entityId: 'vidéo 😀 a/b?c' }, { eventType: 'click' }).entityId).toBe('vidéo 😀 a/b?c');
    expect(textProblem('tab\tx')).toContain('U+0009');
    expect(textProblem('ok')).toBeUndefined();
  });

  it('never fails other than with InvalidParamsError, for any parameters (fast-check)', () => {
    fc.assert(
      fc.property(query, (q) => {
        outcome(() => parseStatsParams(q, NOW));
        outcome(() => parseTopKParams(q));
        outcome(() => parseTotalParams({ entityId: q.entityId }, q));
      }),
      { numRuns: 2_000 },
    );
  });

  it('accepts only identifiers free of control characters, for plausible requests (fast-check)', () => {
    fc.assert(
      fc.property(plausible, (q) => {
        try {
          const r = parseStatsParams(q, NOW);
          expect(textProblem(r.entityId)).toBeUndefined();
          expect(r.fromMs).toBeLessThanOrEqual(r.toMs);
        } catch (err) {
          if (!(err instanceof InvalidParamsError)) throw err;
        }
      }),
      { numRuns: 1_000 },
    );
  });
});
