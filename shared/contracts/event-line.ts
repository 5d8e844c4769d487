// The WAL line of an accepted event (the staged form between the ingest request and the Parquet writer): its fields,
// and the encoders ingest runs per request, which write straight into one buffer (a hot path: no per-event objects).
import { type Event, isClean } from './event.js';

/**
 * The staged form of an accepted event: one NDJSON line, as written to the ingest WAL and read by the
 * Parquet writer (ingest/parquet-batch-writer.ts). Short keys keep the WAL small; `it` is ingest time, `p` the producer.
 */
export interface EventLine {
  /**
   * The reservation token of the request that wrote the line (ingest/event-reservations.ts), always first in the line;
   * absent when dedup is off or in lines written before reservations existed. Never stored in Parquet.
   */
  r?: string;
  i: string;
  n: string;
  t: string;
  ts: number;
  v: number;
  d: Record<string, string> | null;
  it: number;
  p: string;
}

type UnicodeString = string & { toWellFormed(): string };

/**
 * A JSON string literal DuckDB's read_json accepts. Validated strings hold no control character or lone
 * surrogate, so only `"` and `\\` ever need escaping; anything else (a producer name, an unvalidated event) is
 * escaped by JSON.stringify after lone surrogates are replaced by U+FFFD, since DuckDB refuses a `\\ud800` escape.
 */
function quote(s: string): string {
  if (isClean(s)) return s.includes('"') || s.includes('\\') ? JSON.stringify(s) : `"${s}"`;
  return JSON.stringify((s as UnicodeString).toWellFormed());
}

/** The dims object as JSON; lone surrogates (only possible in unvalidated input) are replaced as in quote(). */
function dimsJson(d: Record<string, string>): string {
  const json = JSON.stringify(d);
  // JSON.stringify writes a lone surrogate as a \\udXXX escape; a well-formed string never produces one.
  if (!json.includes('\\ud')) return json;
  const out = Object.create(null) as Record<string, string>; // no prototype: a "__proto__" key stays a key
  for (const [k, v] of Object.entries(d)) out[(k as UnicodeString).toWellFormed()] = (String(v) as UnicodeString).toWellFormed();
  return JSON.stringify(out);
}

function finite(n: number, field: string): number {
  if (!Number.isFinite(n)) throw new RangeError(`cannot encode ${field}=${n} in the WAL: it must be a finite number (validateEvent guarantees it)`);
  return n;
}

/** An epoch-ms integer for a BIGINT column. */
function epochMs(n: number, field: string): number {
  const ms = Math.trunc(n);
  if (!Number.isSafeInteger(ms)) throw new RangeError(`cannot encode ${field}=${n} in the WAL: it must be epoch milliseconds (validateEvent guarantees it)`);
  return ms;
}

/**
 * Encodes one event as an EventLine, always a line DuckDB's read_json can read (see quote()). Hot path:
 * validated numbers are concatenated directly, strings are quoted without JSON.stringify unless they hold a
 * quote or a backslash. A non-finite number (never in a validated event) throws rather than write a bad line.
 */
export function encodeEventLine(e: Event, ingestTimeMs: number, producer: string, reservation?: string): string {
  return `{${reservation === undefined ? '' : `"r":"${reservation}",`}"i":${quote(e.eventId)},"n":${quote(e.entityId)},"t":${quote(e.eventType)},"ts":${epochMs(e.timestamp, 'timestamp')},"v":${finite(e.value, 'value')},"d":${e.dims === null ? 'null' : dimsJson(e.dims)},"it":${epochMs(ingestTimeMs, 'ingest time')},"p":${quote(producer)}}\n`;
}

const LINE_UTF8 = new TextEncoder();
const LINE_N = LINE_UTF8.encode('","n":"');
const LINE_T = LINE_UTF8.encode('","t":"');
const LINE_TS = LINE_UTF8.encode('","ts":');
const LINE_V = LINE_UTF8.encode(',"v":');
const LINE_D_NULL = LINE_UTF8.encode(',"d":null');
/** Bytes of a line besides its head, tail and three strings: separators, `ts` and `v` (String of a double ≤ 24 characters). */
const LINE_SLACK = 96;

function putBytes(buf: Uint8Array, o: number, b: Uint8Array): number {
  for (let i = 0; i < b.length; i++) buf[o + i] = b[i]!;
  return o + b.length;
}

/** Writes `s` at `o` when it needs no escaping and is one byte per character (printable ASCII, no `"` or `\\`): its end, else -1. */
function putPlain(buf: Uint8Array, o: number, s: string): number {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return -1;
    buf[o + i] = c;
  }
  return o + n;
}

/** Writes the decimal digits of a non-negative safe integer at `o` (as String(n) would); its end. */
function putUint(buf: Uint8Array, o: number, n: number): number {
  let len = 1;
  for (let d = 10; d <= n; d *= 10) len++;
  let x = n;
  for (let i = o + len - 1; i > o; i--) {
    const q = Math.floor(x / 10);
    buf[i] = 48 + (x - q * 10);
    x = q;
  }
  buf[o] = 48 + x;
  return o + len;
}

/**
 * The WAL lines of a request's events, as UTF-8 bytes: exactly `events.map((e) => encodeEventLine(e, ingestTimeMs,
 * producer, reservation)).join('')`, without building a string per line (the hot path of every accepted event). An event
 * whose eventId, entityId and eventType are printable ASCII without `"` or `\\`, without dims, with an epoch-ms integer
 * timestamp and a finite value is written byte by byte; any other is written from encodeEventLine (which throws as it does).
 */
export function encodeEventLines(events: readonly Event[], ingestTimeMs: number, producer: string, reservation?: string): Buffer {
  if (!Number.isSafeInteger(Math.trunc(ingestTimeMs))) return Buffer.from(events.map((e) => encodeEventLine(e, ingestTimeMs, producer, reservation)).join(''));
  const head = LINE_UTF8.encode(`{${reservation === undefined ? '' : `"r":"${reservation}",`}"i":"`);
  const tail = LINE_UTF8.encode(`,"it":${epochMs(ingestTimeMs, 'ingest time')},"p":${quote(producer)}}\n`);
  let buf = Buffer.allocUnsafe(events.length * (head.length + tail.length + 80) + 1024);
  let o = 0;
  const room = (need: number, keep: number) => {
    if (buf.length - keep >= need) return;
    const bigger = Buffer.allocUnsafe(Math.max(2 * buf.length, keep + need));
    buf.copy(bigger, 0, 0, keep);
    buf = bigger;
  };
  for (const e of events) {
    room(head.length + tail.length + e.eventId.length + e.entityId.length + e.eventType.length + LINE_SLACK, o);
    const start = o;
    const ts = e.timestamp;
    const v = e.value;
    buf.set(head, o);
    let at = o + head.length;
    at = putPlain(buf, at, e.eventId);
    if (at >= 0) at = putPlain(buf, putBytes(buf, at, LINE_N), e.entityId);
    if (at >= 0) at = putPlain(buf, putBytes(buf, at, LINE_T), e.eventType);
    if (at < 0 || e.dims !== null || !Number.isSafeInteger(ts) || ts < 0 || !Number.isFinite(v)) {
      const line = encodeEventLine(e, ingestTimeMs, producer, reservation);
      room(Buffer.byteLength(line), start);
      o = start + buf.write(line, start, 'utf8');
      continue;
    }
    at = putUint(buf, putBytes(buf, at, LINE_TS), ts);
    at = putBytes(buf, at, LINE_V);
    if (Number.isSafeInteger(v) && v >= 0) at = putUint(buf, at, v);
    else {
      const n = String(v); // finite: digits, sign, point, exponent — ASCII
      for (let i = 0; i < n.length; i++) buf[at++] = n.charCodeAt(i);
    }
    at = putBytes(buf, at, LINE_D_NULL);
    buf.set(tail, at);
    o = at + tail.length;
  }
  return buf.subarray(0, o);
}

/** DuckDB column types of an EventLine, for read_json. */
export const EVENT_LINE_COLUMNS =
  "{r: 'VARCHAR', i: 'VARCHAR', n: 'VARCHAR', t: 'VARCHAR', ts: 'BIGINT', v: 'DOUBLE', d: 'MAP(VARCHAR, VARCHAR)', it: 'BIGINT', p: 'VARCHAR'}";
