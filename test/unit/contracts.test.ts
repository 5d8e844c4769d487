import { describe, expect, it } from 'vitest';
import { validateEvent, parseTimestamp } from '../../shared/contracts/event.js';
import { encodeEventLine } from '../../shared/contracts/event-line.js';
import { decodeManifest, encodeManifest } from '../../shared/contracts/manifest.js';
import {
  EVENT_COLUMNS,
  PARQUET_SCHEMA_VERSION,
  RAW_PARTITION_COLUMNS,
  READABLE_SCHEMA_VERSIONS,
  columnsOf,
  parseRawEventsKey,
  partitionOf,
  rawEventsKey,
  typeIn,
} from '../../shared/contracts/parquet-schema.js';
import {
  commitPointerKey,
  decodeCommitPointer,
  icebergTableLocation,
  metadataFileKey,
  parseS3Uri,
  versionCopyKey,
} from '../../shared/contracts/iceberg-table.js';

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

describe('Parquet schema contract', () => {
  it('writes v3 and reads v1, v2 and v3', () => {
    expect(PARQUET_SCHEMA_VERSION).toBe(3);
    expect(READABLE_SCHEMA_VERSIONS).toEqual([1, 2, 3]);
    expect(columnsOf(1).map((c) => c.name)).not.toContain('session_id');
    expect(columnsOf(3).map((c) => c.name)).toEqual(EVENT_COLUMNS.map((c) => c.name));
  });
  it('v3 timestamps are UTC instants (TIMESTAMPTZ, micros); v1/v2 files hold naive milliseconds', () => {
    for (const name of ['event_time', 'ingest_time']) {
      const c = EVENT_COLUMNS.find((x) => x.name === name)!;
      expect(typeIn(c, 3)).toEqual({ duckdbType: 'TIMESTAMPTZ', parquetType: 'INT64 TIMESTAMP(MICROS, isAdjustedToUTC=true)' });
      for (const v of [1, 2]) expect(typeIn(c, v)).toEqual({ duckdbType: 'TIMESTAMP_MS', parquetType: 'INT64 TIMESTAMP(MILLIS, isAdjustedToUTC=false)' });
    }
    const id = EVENT_COLUMNS.find((x) => x.name === 'event_id')!;
    expect(typeIn(id, 1)).toEqual(typeIn(id, 3));
  });
  it('field ids are unique, never reused, and fixed per column (Iceberg resolves columns by them)', () => {
    const ids = EVENT_COLUMNS.map((c) => [c.name, c.fieldId]);
    expect(ids).toEqual([
      ['event_id', 1],
      ['entity_id', 2],
      ['event_type', 3],
      ['event_time', 4],
      ['value', 5],
      ['dims', 6],
      ['ingest_time', 7],
      ['producer', 8],
      ['schema_version', 9],
      ['session_id', 10],
    ]);
  });
  it('the partition columns follow the raw key layout', () => {
    const key = rawEventsKey({ dt: '2026-01-02', hour: '03' }, 'n', 'u');
    const folders = key
      .split('/')
      .slice(1, -1)
      .map((s) => s.split('=')[0]);
    expect(RAW_PARTITION_COLUMNS.map((p) => p.name)).toEqual(folders);
  });
});

describe('Iceberg table contract', () => {
  it('lays the table out under iceberg/events/ of the raw bucket', () => {
    expect(icebergTableLocation('sluice-raw')).toBe('s3://sluice-raw/iceberg/events');
    expect(metadataFileKey(12, 'u-1')).toBe('iceberg/events/metadata/00012-u-1.metadata.json');
    expect(versionCopyKey(12)).toBe('iceberg/events/metadata/v12.metadata.json');
    expect(commitPointerKey('sluice:')).toBe('sluice:iceberg:{sluice.events}:pointer');
    expect(parseS3Uri('s3://b/k/x.json')).toEqual({ bucket: 'b', key: 'k/x.json' });
    expect(parseS3Uri('/local/x.json')).toBeUndefined();
  });
  it('decodes the commit pointer, and names a corrupt one', () => {
    expect(decodeCommitPointer({}, 'k')).toBeUndefined();
    expect(decodeCommitPointer({ version: '3', location: 's3://b/m.json', committedAt: '5' }, 'k')).toEqual({
      version: 3,
      location: 's3://b/m.json',
      committedAtMs: 5,
    });
    expect(() => decodeCommitPointer({ version: 'x', location: 's3://b/m.json', committedAt: '5' }, 'Redis key k')).toThrow(
      /Redis key k is not an Iceberg commit pointer .*delete it to rebuild it from the metadata in S3/,
    );
    expect(() => decodeCommitPointer({ version: '2', location: 'file:///m.json', committedAt: '5' }, 'k')).toThrow(/not an Iceberg commit pointer/);
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
  it('rejects an unreadable Parquet schema version, accepts every readable one', () => {
    expect(() => decodeManifest(encodeManifest({ ...m, schemaVersion: 9 }))).toThrow(/schema version 9/);
    for (const v of [1, 2, 3]) expect(decodeManifest(encodeManifest({ ...m, schemaVersion: v })).schemaVersion).toBe(v);
  });
});
