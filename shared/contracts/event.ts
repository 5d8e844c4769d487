// The event contract producers send to ingest, and its validation. Validation is a hot path: it runs
// per event, allocates only the validated copy, and returns a reason that names the field and the rule.

export const EVENT_ID_MAX = 128;
export const ENTITY_ID_MAX = 256;
export const EVENT_TYPE_PATTERN = /^[a-z0-9_.-]{1,64}$/;
export const DIMS_MAX = 16;
export const DIM_KEY_MAX = 64;
export const DIM_VALUE_MAX = 256;
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

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

function checkString(v: unknown, field: string, max: number): string | undefined {
  if (typeof v !== 'string') return `${field} must be a string of 1–${max} characters, got ${describe(v)}`;
  if (v.length === 0 || v.length > max) return `${field} must be 1–${max} characters long, got ${v.length}`;
  if (!(v as unknown as { isWellFormed(): boolean }).isWellFormed()) return `${field} must be valid Unicode (it holds a lone surrogate escape such as \\ud800)`;
  const bad = CONTROL_CHARS.exec(v);
  if (bad)
    return `${field} must not contain control characters (found U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()} at position ${bad.index})`;
  return undefined;
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
 * which field is wrong and what it must be. Unknown fields are ignored.
 */
export function validateEvent(raw: unknown, bounds: ValidationBounds): Event | string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return `event must be a JSON object, got ${describe(raw)}`;
  const o = raw as Record<string, unknown>;
  const bad = checkString(o.eventId, 'eventId', EVENT_ID_MAX) ?? checkString(o.entityId, 'entityId', ENTITY_ID_MAX);
  if (bad) return bad;
  const eventType = o.eventType;
  if (typeof eventType !== 'string' || !EVENT_TYPE_PATTERN.test(eventType)) {
    return `eventType must match ${EVENT_TYPE_PATTERN.source} (lowercase letters, digits, _ . -; 1–64 characters), got ${describe(eventType)}`;
  }
  const ts = parseTimestamp(o.timestamp);
  if (typeof ts === 'string') return ts;
  if (ts < bounds.nowMs - bounds.maxAgeMs)
    return `timestamp ${new Date(ts).toISOString()} is older than the accepted age of ${Math.round(bounds.maxAgeMs / 3_600_000)}h`;
  if (ts > bounds.nowMs + MAX_FUTURE_SKEW_MS) return `timestamp ${new Date(ts).toISOString()} is more than 5 minutes in the future`;
  let value = 1;
  if (o.value !== undefined) {
    if (typeof o.value !== 'number' || !Number.isFinite(o.value)) return `value must be a finite number, got ${describe(o.value)}`;
    value = o.value;
  }
  let dims: Record<string, string> | null = null;
  if (o.dims !== undefined && o.dims !== null) {
    if (typeof o.dims !== 'object' || Array.isArray(o.dims)) return `dims must be an object of string values, got ${describe(o.dims)}`;
    const entries = Object.entries(o.dims as Record<string, unknown>);
    if (entries.length > DIMS_MAX) return `dims may hold at most ${DIMS_MAX} entries, got ${entries.length}`;
    for (const [k, v] of entries) {
      if (k.length === 0 || k.length > DIM_KEY_MAX) return `dims key must be 1–${DIM_KEY_MAX} characters, got ${describe(k)}`;
      if (typeof v !== 'string' || v.length > DIM_VALUE_MAX) return `dims.${k} must be a string of at most ${DIM_VALUE_MAX} characters, got ${describe(v)}`;
    }
    if (entries.length > 0) dims = o.dims as Record<string, string>;
  }
  return { eventId: o.eventId as string, entityId: o.entityId as string, eventType, timestamp: ts, value, dims };
}

/**
 * The staged form of an accepted event: one NDJSON line, as written to the ingest WAL and read by the
 * Parquet writer (shared/parquet.ts). Short keys keep the WAL small; `it` is ingest time, `p` the producer.
 */
export interface EventLine {
  i: string;
  n: string;
  t: string;
  ts: number;
  v: number;
  d: Record<string, string> | null;
  it: number;
  p: string;
}

/** A JSON string literal; validated ids hold no control characters, so only `"` and `\\` ever need escaping. */
function quote(s: string): string {
  return s.includes('"') || s.includes('\\') ? JSON.stringify(s) : `"${s}"`;
}

/**
 * Encodes one event as an EventLine. Hot path: validated numbers and eventType ([a-z0-9_.-]) are concatenated
 * directly, strings are quoted without JSON.stringify unless they hold a quote or a backslash.
 */
export function encodeEventLine(e: Event, ingestTimeMs: number, producer: string): string {
  return `{"i":${quote(e.eventId)},"n":${quote(e.entityId)},"t":"${e.eventType}","ts":${e.timestamp},"v":${e.value},"d":${e.dims === null ? 'null' : JSON.stringify(e.dims)},"it":${ingestTimeMs},"p":${quote(producer)}}\n`;
}

/** DuckDB column types of an EventLine, for read_json. */
export const EVENT_LINE_COLUMNS =
  "{i: 'VARCHAR', n: 'VARCHAR', t: 'VARCHAR', ts: 'BIGINT', v: 'DOUBLE', d: 'MAP(VARCHAR, VARCHAR)', it: 'BIGINT', p: 'VARCHAR'}";
