import { describe, expect, it } from 'vitest';
import { validateEvent, parseTimestamp, encodeEventLine } from '../../shared/contracts/event.js';
import { decodeManifest, encodeManifest } from '../../shared/contracts/manifest.js';
import { parseRawEventsKey, partitionOf, rawEventsKey } from '../../shared/contracts/parquet-schema.js';

const now = Date.parse('2026-06-01T12:00:00Z');
const bounds = { nowMs: now, maxAgeMs: 7 * 86_400_000 };
const ok = { eventId: 'e1', entityId: 'video-A', eventType: 'view', timestamp: now };

describe('event contract', () => {
  it('accepts a minimal event and defaults value to 1', () => {
    expect(validateEvent(ok, bounds)).toEqual({ ...ok, value: 1, dims: null });
  });
  it('accepts ISO-8601 timestamps and normalises to epoch ms', () => {
    expect(parseTimestamp('2026-06-01T11:59:00.250Z')).toBe(now - 59_750);
    expect(parseTimestamp('2026-06-01T13:59:00+02:00')).toBe(now - 60_000);
  });
  it.each([
    [{ ...ok, eventId: '' }, /eventId must be 1–128/],
    [{ ...ok, eventId: 'x'.repeat(129) }, /eventId must be 1–128 characters long, got 129/],
    [{ ...ok, entityId: 5 }, /entityId must be a string/],
    [{ ...ok, eventId: 'x\ud800' }, /eventId must be valid Unicode/],
    [{ ...ok, entityId: 'a\nb' }, /entityId must not contain control characters \(found U\+000A at position 1\)/],
    [{ ...ok, eventType: 'View' }, /eventType must match/],
    [{ ...ok, eventType: 'a'.repeat(65) }, /eventType must match/],
    [{ ...ok, timestamp: 'yesterday' }, /timestamp must be epoch milliseconds or an ISO-8601/],
    [{ ...ok, timestamp: now - 8 * 86_400_000 }, /older than the accepted age/],
    [{ ...ok, timestamp: now + 5 * 60_000 + 1 }, /more than 5 minutes in the future/],
    [{ ...ok, value: Infinity }, /value must be a finite number/],
    [{ ...ok, value: '3' }, /value must be a finite number, got "3"/],
    [{ ...ok, dims: ['a'] }, /dims must be an object/],
    [{ ...ok, dims: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, /at most 16 entries, got 17/],
    [{ ...ok, dims: { country: 3 } }, /dims\.country must be a string/],
    [null, /event must be a JSON object, got null/],
    [[ok], /event must be a JSON object, got an array/],
  ])('rejects %j with a reason naming the field', (input, reason) => {
    const r = validateEvent(input, bounds);
    expect(typeof r).toBe('string');
    expect(r).toMatch(reason);
  });
  it('accepts the edge of the future bound and dims', () => {
    expect(typeof validateEvent({ ...ok, timestamp: now + 5 * 60_000, dims: { country: 'FR' } }, bounds)).toBe('object');
  });
  it('encodes a staged line that round-trips through JSON', () => {
    const e = validateEvent({ ...ok, entityId: 'quote " and \\ backslash' }, bounds);
    if (typeof e === 'string') throw new Error(e);
    const line = encodeEventLine(e, now, 'web');
    expect(line.endsWith('\n')).toBe(true);
    expect(JSON.parse(line)).toEqual({ i: 'e1', n: 'quote " and \\ backslash', t: 'view', ts: now, v: 1, d: null, it: now, p: 'web' });
  });
});

describe('archive key layout', () => {
  it('partitions by event time (UTC) in Hive style and parses back', () => {
    const p = partitionOf(Date.parse('2026-01-02T03:59:59.999Z'));
    expect(p).toEqual({ dt: '2026-01-02', hour: '03' });
    const key = rawEventsKey(p, 'ingest-1', '1764067200123_000042');
    expect(key).toBe('events/dt=2026-01-02/hour=03/ingest-1-1764067200123_000042.parquet');
    expect(parseRawEventsKey(key)).toEqual({ dt: '2026-01-02', hour: '03', node: 'ingest-1', unique: '1764067200123_000042' });
    expect(parseRawEventsKey('events/dt=2026-01-02/x.parquet')).toBeUndefined();
  });
});

describe('batch manifest contract', () => {
  const m = {
    bucket: 'sluice-raw',
    key: 'events/dt=2026-01-02/hour=03/n-1_000001.parquet',
    eventCount: 10,
    minEventTime: '2026-01-02T03:00:00.000Z',
    maxEventTime: '2026-01-02T03:10:00.000Z',
    byteSize: 1234,
    checksum: { algorithm: 'sha256' as const, value: 'a'.repeat(64) },
    schemaVersion: 1,
    producer: 'n',
    createdAt: '2026-01-02T03:10:01.000Z',
  };
  it('round-trips', () => {
    expect(decodeManifest(encodeManifest(m))).toEqual({ manifestVersion: '1.0', ...m });
  });
  it('accepts a newer minor version with extra fields', () => {
    expect(decodeManifest(JSON.stringify({ ...JSON.parse(encodeManifest(m)), manifestVersion: '1.7', extra: true })).key).toBe(m.key);
  });
  it('rejects an unknown major version before anything else', () => {
    expect(() => decodeManifest(JSON.stringify({ manifestVersion: '2.0' }))).toThrow(/manifest version "2.0" is not supported/);
    try {
      decodeManifest(JSON.stringify({ manifestVersion: '2.0' }));
    } catch (e) {
      expect(e as { code: string; retryable: boolean }).toMatchObject({ code: 'manifest_version_unsupported', retryable: false });
    }
  });
  it('names the invalid fields', () => {
    expect(() => decodeManifest(JSON.stringify({ ...JSON.parse(encodeManifest(m)), eventCount: -1, checksum: { algorithm: 'md5', value: 'x' } }))).toThrow(
      /eventCount.*checksum\.algorithm/s,
    );
    expect(() => decodeManifest('not json')).toThrow(/manifest is not JSON/);
  });
  it('rejects an unreadable Parquet schema version', () => {
    expect(() => decodeManifest(encodeManifest({ ...m, schemaVersion: 9 }))).toThrow(/schema version 9/);
  });
});
