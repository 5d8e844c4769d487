// The event contract against hostile input: every string field (ids, entity, dims keys and values) must be
// storable, value within ±VALUE_MAX_ABS, missing fields say "missing", and every accepted event's WAL line
// parses back to the same event, also through the real Parquet writer (embedded DuckDB).
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateEvent, VALUE_MAX_ABS, type Event, type RejectionKind } from '../../shared/contracts/event.js';
import { encodeEventLine, type EventLine } from '../../shared/contracts/event-line.js';
import { openEngine, queryParquet } from '../../shared/parquet.js';
import { writeEventBatches } from '../../ingest/parquet-batch-writer.js';

const now = Date.parse('2026-06-01T12:00:00Z');
const bounds = { nowMs: now, maxAgeMs: 7 * 86_400_000 };
const ok = { eventId: 'e1', entityId: 'video-A', eventType: 'view', timestamp: now };

const reject = (input: unknown): { reason: string; kind: string } => {
  const why: RejectionKind = { field: 'event', rule: 'type' };
  const r = validateEvent(input, bounds, why);
  if (typeof r !== 'string') throw new Error(`accepted ${JSON.stringify(input)}`);
  return { reason: r, kind: `${why.field}:${why.rule}` };
};

/**
 * Strings a hostile producer sends: mostly storable but awkward (quotes, backslashes, `\u` text, emoji, U+2028,
 * BOM, noncharacters, JSON punctuation), sometimes poison (lone surrogates, control characters, random UTF-16).
 */
const awkwardChar = fc.constantFrom('"', '\\', '\\u', '\\ud800', '\ud83d\ude00', '\u2028', '\ufeff', '\uffff', 'é', '/', '{', '}', ',', ' ', 'a', 'Z', '9');
const poisonChar = fc.oneof(fc.constantFrom('\ud800', '\udfff', '\u0000', '\n', '\r', '\t', '\u001f', '\u007f'), fc.string({ unit: 'binary', maxLength: 3 }));
const hostileChar = fc.oneof({ arbitrary: awkwardChar, weight: 30 }, { arbitrary: poisonChar, weight: 1 });
const hostileString = (max: number) => fc.array(hostileChar, { minLength: 1, maxLength: 12 }).map((parts) => parts.join('').slice(0, max) || 'x');
const hostileNumber = fc.oneof(
  fc.double(),
  fc.constantFrom(1e308, -1e308, VALUE_MAX_ABS, -VALUE_MAX_ABS, VALUE_MAX_ABS * 1.000001, 5e-324, -0, 2 ** 53 + 1),
  fc.integer(),
);
const hostileEvent = fc.record(
  {
    eventId: hostileString(128),
    entityId: hostileString(256),
    eventType: fc.oneof(fc.constantFrom('view', 'like.v2', 'a_b-c'), hostileString(64)),
    timestamp: fc.oneof(fc.integer({ min: now - 6 * 86_400_000, max: now + 60_000 }), fc.constant(new Date(now).toISOString())),
    value: hostileNumber,
    dims: fc.dictionary(hostileString(64), hostileString(256), { maxKeys: 4 }),
  },
  { requiredKeys: ['eventId', 'entityId', 'eventType', 'timestamp'] },
);

const isStorable = (s: string) => (s as string & { isWellFormed(): boolean }).isWellFormed() && !/[\u0000-\u001f\u007f\ufeff]/.test(s);

describe('event validation of every stored string', () => {
  it.each([
    [{ ...ok, dims: { k: '\ud800' } }, /dims\.k must be valid Unicode/, 'dims.value:unicode'],
    [{ ...ok, dims: { k: 'a\u0000b' } }, /dims\.k must not contain control characters \(found U\+0000 at position 1\)/, 'dims.value:control-character'],
    [{ ...ok, dims: { '\udc00x': 'v' } }, /dims key must be valid Unicode/, 'dims.key:unicode'],
    [{ ...ok, dims: { 'a\tb': 'v' } }, /dims key must not contain control characters \(found U\+0009/, 'dims.key:control-character'],
    [{ ...ok, dims: { '': 'v' } }, /dims key must be 1–64 characters/, 'dims.key:length'],
    [{ ...ok, entityId: 'ends-in\\' }, /entityId must not end with a backslash/, 'entityId:trailing-backslash'],
    [{ ...ok, value: 1e308 }, /value must be between -1000000000000000 and 1000000000000000 \(so sums cannot overflow\), got 1e\+308/, 'value:range'],
    [{ ...ok, value: -VALUE_MAX_ABS * 2 }, /value must be between/, 'value:range'],
    [{ ...ok, eventId: 'a\ud800' }, /eventId must be valid Unicode/, 'eventId:unicode'],
    [{ ...ok, timestamp: 8_640_000_000_000_001 }, /timestamp 8640000000000001 \(epoch ms\) is more than 5 minutes in the future/, 'timestamp:future'],
    [{ ...ok, entityId: '\ufeffx' }, /entityId must not contain control characters \(found U\+FEFF at position 0\)/, 'entityId:control-character'],
  ])('rejects %j naming the field and the rule', (input, reason, kind) => {
    const r = reject(input);
    expect(r.reason).toMatch(reason);
    expect(r.kind).toBe(kind);
  });

  it('accepts the edges: |value| = VALUE_MAX_ABS, paired surrogates and quotes in dims', () => {
    for (const value of [VALUE_MAX_ABS, -VALUE_MAX_ABS]) expect(typeof validateEvent({ ...ok, value }, bounds)).toBe('object');
    expect(validateEvent({ ...ok, dims: { 'k"\\': 'emoji \ud83d\ude00 "q" \\' } }, bounds)).toMatchObject({ dims: { 'k"\\': 'emoji \ud83d\ude00 "q" \\' } });
  });

  it.each([
    ['eventId', 'eventId is missing: send a string of 1–128 characters'],
    ['entityId', 'entityId is missing: send a string of 1–256 characters'],
    ['eventType', 'eventType is missing'],
    ['timestamp', 'timestamp is missing'],
  ] as const)('says "missing" for a missing %s, never "undefined undefined"', (field, reason) => {
    const { [field]: _gone, ...rest } = ok;
    const r = reject(rest);
    expect(r.reason).toContain(reason);
    expect(r.reason).not.toMatch(/undefined/);
    expect(r.kind).toBe(`${field}:missing`);
  });

  it('never throws, writes "undefined" or a raw hostile string into a reason', () => {
    fc.assert(
      fc.property(fc.anything(), hostileEvent, fc.oneof(fc.double(), fc.integer(), fc.maxSafeInteger()), (any, ev, num) => {
        for (const input of [any, ev, { ...ev, eventId: undefined }, { ...ev, dims: { k: any } }, { ...ev, timestamp: num }, { ...ev, value: num }]) {
          const r = validateEvent(input, bounds);
          if (typeof r === 'string') {
            expect(r).not.toMatch(/undefined undefined/);
            expect(isStorable(r)).toBe(true); // reasons are shown to clients and logged: they must be clean too
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('WAL lines of accepted events', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'event-validation-'));
  beforeAll(async () => {
    await openEngine({ tempDir: path.join(dir, 'tmp') });
  });

  const roundTrip = (e: Event, line: string) => {
    const back = JSON.parse(line) as EventLine;
    expect(back).toEqual({ i: e.eventId, n: e.entityId, t: e.eventType, ts: e.timestamp, v: e.value, d: e.dims, it: now, p: 'web' });
  };

  it('every accepted hostile event has only storable strings and a line that parses back to it', () => {
    let accepted = 0;
    fc.assert(
      fc.property(hostileEvent, (input) => {
        const e = validateEvent(input, bounds);
        if (typeof e === 'string') return;
        accepted++;
        for (const s of [e.eventId, e.entityId, e.eventType, ...Object.entries(e.dims ?? {}).flat()]) expect(isStorable(s)).toBe(true);
        expect(Math.abs(e.value)).toBeLessThanOrEqual(VALUE_MAX_ABS);
        const line = encodeEventLine(e, now, 'web');
        expect(line.indexOf('\n')).toBe(line.length - 1);
        roundTrip(e, line);
      }),
      { numRuns: 2_000 },
    );
    expect(accepted).toBeGreaterThan(50); // the generator must reach the accepting side too
  });

  it('the Parquet writer reads every line encodeEventLine writes, even for unvalidated strings', async () => {
    const events = fc.sample(
      fc.record({
        eventId: hostileString(128),
        entityId: hostileString(256),
        eventType: hostileString(64),
        timestamp: fc.integer({ min: now - 3_600_000, max: now }),
        value: fc.double({ noNaN: true, noDefaultInfinity: true }),
        dims: fc.option(fc.dictionary(hostileString(64), hostileString(256), { maxKeys: 4 }), { nil: null }),
      }),
      { numRuns: 300, seed: 42 },
    );
    const valid = fc.sample(hostileEvent, { numRuns: 2_000, seed: 7 }).flatMap((raw) => {
      const e = validateEvent(raw, bounds);
      return typeof e === 'string' ? [] : [e];
    });
    const all = [...events, ...valid.map((e, k) => ({ ...e, eventId: `v${k}-${e.eventId}` }))];
    const file = path.join(dir, 'hostile.ndjson');
    writeFileSync(file, all.map((e) => encodeEventLine(e, now, 'web')).join(''));
    const written = await writeEventBatches([file], path.join(dir, 'out'));
    expect(written.reduce((n, w) => n + w.eventCount, 0)).toBe(all.length);
    // Validated events come back from Parquet exactly.
    const rows = await queryParquet(
      `SELECT event_id, entity_id, event_type, value FROM read_parquet([${written.map((w) => `'${w.file}'`).join(',')}]) WHERE event_id LIKE 'v%'`,
    );
    const byId = new Map(rows.map((r) => [r.event_id as string, r]));
    valid.forEach((e, k) => {
      expect(byId.get(`v${k}-${e.eventId}`)).toMatchObject({ entity_id: e.entityId, event_type: e.eventType, value: e.value });
    });
  });

  it('refuses to encode a non-finite number instead of writing a line nobody can read', () => {
    expect(() => encodeEventLine({ eventId: 'a', entityId: 'b', eventType: 'view', timestamp: now, value: Number.NaN, dims: null }, now, 'web')).toThrow(
      /finite/,
    );
  });
});
