// encodeEventLines, the request path's WAL encoder, writes exactly the bytes of encodeEventLine joined (the staged
// contract read by the Parquet writer), whatever the events hold: plain ids on its byte-by-byte path, anything else
// (escapes, non-ASCII, lone surrogates, dims, odd numbers) through encodeEventLine, and it throws where that throws.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Event } from '../../shared/contracts/event.js';
import { encodeEventLine, encodeEventLines } from '../../shared/contracts/event-line.js';

const now = Date.parse('2026-06-01T12:00:00Z');
const joined = (events: Event[], it: number, producer: string, r?: string) => Buffer.from(events.map((e) => encodeEventLine(e, it, producer, r)).join(''));

const anyString = fc.oneof(
  fc.stringMatching(/^[a-z0-9_.-]{1,20}$/),
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 8 }),
  fc.constantFrom('"', '\\', 'a"b', 'x\\', '\ud800', '\u0000', '\u007f', '~', ' ', 'é', '\ud83d\ude00', '\ufeff'),
);
const anyEvent: fc.Arbitrary<Event> = fc.record({
  eventId: anyString,
  entityId: anyString,
  eventType: anyString,
  timestamp: fc.oneof(
    fc.integer({ min: 0, max: now * 2 }),
    fc.maxSafeInteger(),
    fc.double({ min: 0, max: 1e13, noNaN: true }),
    fc.constantFrom(0, 9, 10, 99, 100),
  ),
  value: fc.oneof(
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.maxSafeInteger(),
    fc.constantFrom(0, -0, 1e15, -1e15, 5e-324, 2 ** 53 - 1, 1e21),
  ),
  dims: fc.option(fc.dictionary(anyString, anyString, { maxKeys: 3 }), { nil: null }),
});

describe('encodeEventLines', () => {
  it('writes the bytes of encodeEventLine joined, for any events, producer and reservation token', () => {
    fc.assert(
      fc.property(
        fc.array(anyEvent, { maxLength: 40 }),
        anyString,
        fc.option(fc.stringMatching(/^[A-Za-z0-9_-]{8}\.[0-9a-z]{1,6}$/), { nil: undefined }),
        (events, producer, r) => {
          expect(encodeEventLines(events, now, producer, r).equals(joined(events, now, producer, r))).toBe(true);
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('grows its buffer for long strings and many events', () => {
    const long = (c: string) => c.repeat(256);
    const events: Event[] = Array.from({ length: 3_000 }, (_, i) => ({
      eventId: i % 7 ? `id-${i}` : long('i'),
      entityId: i % 5 ? `video-${i}` : long('é'),
      eventType: 'view',
      timestamp: now - i,
      value: i % 3 ? i : i + 0.5,
      dims: i % 11 ? null : { k: long('v') },
    }));
    const bytes = encodeEventLines(events, now, 'web', 'tok.1');
    expect(bytes.equals(joined(events, now, 'web', 'tok.1'))).toBe(true);
    expect(bytes.toString().split('\n')).toHaveLength(3_001);
  });

  it('writes nothing for no events, and throws as encodeEventLine does on a number it cannot encode', () => {
    expect(encodeEventLines([], now, 'web').length).toBe(0);
    const e: Event = { eventId: 'a', entityId: 'b', eventType: 'view', timestamp: now, value: 1, dims: null };
    expect(() => encodeEventLines([e, { ...e, value: Number.NaN }], now, 'web')).toThrow(/cannot encode value=NaN in the WAL/);
    expect(() => encodeEventLines([{ ...e, timestamp: 2 ** 60 }], now, 'web')).toThrow(/cannot encode timestamp=/);
    expect(() => encodeEventLines([e], Number.POSITIVE_INFINITY, 'web')).toThrow(/cannot encode ingest time=Infinity/);
  });
});
