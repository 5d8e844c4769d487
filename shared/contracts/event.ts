// The event contract producers send to ingest, and its validation. An accepted event is storable by every stage:
// every string well-formed Unicode without control characters, |value| ≤ VALUE_MAX_ABS, and its WAL line
// (event-line.ts) always readable by the Parquet writer. Validation is a hot path: it runs per event, allocates only the validated copy,
// and returns a reason that names the field and the rule.

export const EVENT_ID_MAX = 128;
export const ENTITY_ID_MAX = 256;
export const EVENT_TYPE_PATTERN = /^[a-z0-9_.-]{1,64}$/;
export const DIMS_MAX = 16;
export const DIM_KEY_MAX = 64;
export const DIM_VALUE_MAX = 256;
/**
 * Largest accepted |value|. A per-minute sum (and a day's, or a year's) of events this large stays finite and
 * far from Number.MAX_VALUE, so no aggregate can overflow to Infinity, which InfluxDB cannot store.
 */
export const VALUE_MAX_ABS = 1e15;
/** Events stamped further in the future than this are rejected (clock skew guard). */
export const MAX_FUTURE_SKEW_MS = 5 * 60_000;
/** What a producer sends. `timestamp` is epoch milliseconds or an ISO-8601 string; `value` defaults to 1. */
export interface EventInput {
  eventId: string;
  entityId: string;
  eventType: string;
  timestamp: number | string;
  value?: number;
  dims?: Record<string, string>;
}

/** A validated event, timestamps normalised to epoch milliseconds. */
export interface Event {
  eventId: string;
  entityId: string;
  eventType: string;
  timestamp: number;
  value: number;
  dims: Record<string, string> | null;
}

export interface ValidationBounds {
  /** Now, epoch ms. */
  nowMs: number;
  /** Oldest accepted event age in ms. */
  maxAgeMs: number;
}

const ISO_8601 = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

/** What a value is, for a reason text; never "undefined undefined". */
function describe(v: unknown): string {
  if (v === undefined) return 'nothing (the field is missing)';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v.length > 40 || !isClean(v) ? `a string of ${v.length} characters` : JSON.stringify(v);
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

// C0 controls and DEL break line-oriented formats (NDJSON WAL, InfluxDB line protocol, logs). U+FEFF (byte-order
// mark) too: UTF-8 decoders drop it at the start of a string, so an id holding it would not read back the same.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f\ufeff]/;

/** Well-formed UTF-16 (no lone surrogate) and no control character: safe for every format downstream. */
export function isClean(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed() && !CONTROL_CHARS.test(s);
}

/**
 * Which rule an event broke, for counting rejections by kind (`rejectedByReason`): `field` is the field's
 * name without user data (`dims.value`, never `dims.<key>`), `rule` one of the words below. validateEvent
 * fills a caller's object instead of returning one, so a valid event costs no extra allocation.
 */
export interface RejectionKind {
  field: 'event' | 'eventId' | 'entityId' | 'eventType' | 'timestamp' | 'value' | 'dims' | 'dims.key' | 'dims.value';
  rule: 'missing' | 'type' | 'length' | 'unicode' | 'control-character' | 'trailing-backslash' | 'pattern' | 'too-old' | 'future' | 'range' | 'count';
}

function fail(why: RejectionKind | undefined, field: RejectionKind['field'], rule: RejectionKind['rule'], reason: string): string {
  if (why) {
    why.field = field;
    why.rule = rule;
  }
  return reason;
}

/** True when every character is printable ASCII (U+0020–U+007E): clean without asking the checks below (the common case). */
function isPrintableAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/** Why a string is not storable (lone surrogate or control character), or undefined when it is. */
function uncleanReason(field: string, kind: RejectionKind['field'], v: string, why: RejectionKind | undefined): string | undefined {
  if (isPrintableAscii(v)) return undefined;
  if (!(v as unknown as { isWellFormed(): boolean }).isWellFormed())
    return fail(
      why,
      kind,
      'unicode',
      `${field} must be valid Unicode (it holds a lone surrogate escape such as \\ud800); send well-formed UTF-8 or paired \\u escapes`,
    );
  const bad = CONTROL_CHARS.exec(v);
  if (bad)
    return fail(
      why,
      kind,
      'control-character',
      `${field} must not contain control characters (found U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()} at position ${bad.index})`,
    );
  return undefined;
}

function checkString(v: unknown, field: 'eventId' | 'entityId', max: number, why: RejectionKind | undefined): string | undefined {
  if (v === undefined) return fail(why, field, 'missing', `${field} is missing: send a string of 1–${max} characters`);
  if (typeof v !== 'string') return fail(why, field, 'type', `${field} must be a string of 1–${max} characters, got ${describe(v)}`);
  if (v.length === 0 || v.length > max) return fail(why, field, 'length', `${field} must be 1–${max} characters long, got ${v.length}`);
  return uncleanReason(field, field, v, why);
}

/** A timestamp for a reason text: ISO-8601 when Date can show it (±8.64e15 ms), else the raw milliseconds. */
function isoOrMs(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `${ms} (epoch ms)` : d.toISOString();
}

/** Parses a timestamp field into epoch ms, or returns a reason. */
export function parseTimestamp(v: unknown): number | string {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) return `timestamp must be epoch milliseconds or an ISO-8601 string, got ${describe(v)}`;
    return Math.floor(v);
  }
  if (typeof v === 'string' && ISO_8601.test(v)) {
    const ms = Date.parse(v);
    if (!Number.isNaN(ms)) return ms;
  }
  return `timestamp must be epoch milliseconds or an ISO-8601 string such as 2026-01-31T12:00:00Z, got ${describe(v)}`;
}

/**
 * Validates one decoded JSON value as an event. Returns the normalised event, or a string saying
 * which field is wrong and what it must be (and, when `why` is given, fills it with the field and rule).
 * Unknown fields are ignored.
 */
export function validateEvent(raw: unknown, bounds: ValidationBounds, why?: RejectionKind): Event | string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail(why, 'event', 'type', `event must be a JSON object, got ${describe(raw)}`);
  const o = raw as Record<string, unknown>;
  const bad = checkString(o.eventId, 'eventId', EVENT_ID_MAX, why) ?? checkString(o.entityId, 'entityId', ENTITY_ID_MAX, why);
  if (bad) return bad;
  // The entity is an InfluxDB tag value, and line protocol cannot carry one that ends in a backslash.
  if ((o.entityId as string).endsWith('\\'))
    return fail(why, 'entityId', 'trailing-backslash', 'entityId must not end with a backslash (\\): InfluxDB cannot store such a tag value');
  const eventType = o.eventType;
  if (eventType === undefined)
    return fail(why, 'eventType', 'missing', 'eventType is missing: send lowercase letters, digits, _ . - (1–64 characters), e.g. "view"');
  if (typeof eventType !== 'string' || !EVENT_TYPE_PATTERN.test(eventType)) {
    return fail(
      why,
      'eventType',
      'pattern',
      `eventType must match ${EVENT_TYPE_PATTERN.source} (lowercase letters, digits, _ . -; 1–64 characters), got ${describe(eventType)}`,
    );
  }
  if (o.timestamp === undefined)
    return fail(why, 'timestamp', 'missing', 'timestamp is missing: send epoch milliseconds or an ISO-8601 string such as 2026-01-31T12:00:00Z');
  const ts = parseTimestamp(o.timestamp);
  if (typeof ts === 'string') return fail(why, 'timestamp', 'type', ts);
  if (ts < bounds.nowMs - bounds.maxAgeMs)
    return fail(why, 'timestamp', 'too-old', `timestamp ${isoOrMs(ts)} is older than the accepted age of ${Math.round(bounds.maxAgeMs / 3_600_000)}h`);
  if (ts > bounds.nowMs + MAX_FUTURE_SKEW_MS) return fail(why, 'timestamp', 'future', `timestamp ${isoOrMs(ts)} is more than 5 minutes in the future`);
  let value = 1;
  if (o.value !== undefined) {
    if (typeof o.value !== 'number' || !Number.isFinite(o.value)) return fail(why, 'value', 'type', `value must be a finite number, got ${describe(o.value)}`);
    if (Math.abs(o.value) > VALUE_MAX_ABS)
      return fail(why, 'value', 'range', `value must be between -${VALUE_MAX_ABS} and ${VALUE_MAX_ABS} (so sums cannot overflow), got ${o.value}`);
    value = o.value === 0 ? 0 : o.value; // -0 is stored as 0
  }
  let dims: Record<string, string> | null = null;
  if (o.dims !== undefined && o.dims !== null) {
    if (typeof o.dims !== 'object' || Array.isArray(o.dims))
      return fail(why, 'dims', 'type', `dims must be an object of string values, got ${describe(o.dims)}`);
    const entries = Object.entries(o.dims as Record<string, unknown>);
    if (entries.length > DIMS_MAX) return fail(why, 'dims', 'count', `dims may hold at most ${DIMS_MAX} entries, got ${entries.length}`);
    for (const [k, v] of entries) {
      if (k.length === 0 || k.length > DIM_KEY_MAX) return fail(why, 'dims.key', 'length', `dims key must be 1–${DIM_KEY_MAX} characters, got ${describe(k)}`);
      const badKey = uncleanReason('dims key', 'dims.key', k, why);
      if (badKey) return `${badKey} (key ${describe(k)})`;
      if (typeof v !== 'string')
        return fail(why, 'dims.value', 'type', `dims.${k} must be a string of at most ${DIM_VALUE_MAX} characters, got ${describe(v)}`);
      if (v.length > DIM_VALUE_MAX)
        return fail(why, 'dims.value', 'length', `dims.${k} must be a string of at most ${DIM_VALUE_MAX} characters, got ${describe(v)}`);
      const badValue = uncleanReason(`dims.${k}`, 'dims.value', v, why);
      if (badValue) return badValue;
    }
    if (entries.length > 0) dims = o.dims as Record<string, string>;
  }
  return { eventId: o.eventId as string, entityId: o.entityId as string, eventType, timestamp: ts, value, dims };
}
