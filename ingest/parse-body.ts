// Reads and decodes a POST /v1/events body into raw event values: JSON array or NDJSON, optionally gzip.
// Work per request is bounded while the body streams in: decompressed bytes are counted (and charged to the
// node's in-flight budget) chunk by chunk and events are counted before any JSON is parsed, so an oversized
// or over-long body is refused after reading at most one chunk past its limit. Failures carry an HTTP status
// and a message that says where the body is wrong (byte offset, line, column) or which limit it broke.
import type { Readable } from 'node:stream';
import { createGunzip, gunzipSync } from 'node:zlib';

export class BodyError extends Error {
  constructor(
    readonly status: 400 | 413 | 415 | 503,
    message: string,
  ) {
    super(message);
  }
}

export interface ParsedBody {
  /** One entry per event position; `undefined` entries had a per-line parse error (see lineErrors). */
  values: unknown[];
  /** NDJSON only: index → reason for lines that are not JSON. */
  lineErrors: Map<number, string>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function invalidUtf8Offset(buf: Buffer): number {
  for (let i = 0; i < buf.length; ) {
    const b = buf[i]!;
    const len = b < 0x80 ? 1 : b >> 5 === 0x6 ? 2 : b >> 4 === 0xe ? 3 : b >> 3 === 0x1e ? 4 : 0;
    if (len === 0 || i + len > buf.length) return i;
    for (let k = 1; k < len; k++) if (buf[i + k]! >> 6 !== 0x2) return i;
    i += len;
  }
  return -1;
}

function lineCol(text: string, pos: number): string {
  let line = 1;
  let last = -1;
  for (let i = 0; i < pos && i < text.length; i++)
    if (text.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  return `line ${line}, column ${pos - last}`;
}

function jsonErrorWhere(err: unknown, text: string): string {
  const msg = err instanceof Error ? err.message : String(err);
  const m = /at position (\d+)/.exec(msg);
  const pos = m ? Number(m[1]) : /end of JSON input|Unterminated/.test(msg) ? text.length : undefined;
  const detail = msg.replace(/, ".*" is not valid JSON$/s, '').replace(/ \(line \d+ column \d+\)$/, '');
  return pos === undefined ? detail : `${detail} (character ${pos}, ${lineCol(text, pos)})`;
}

/** JSON's insignificant whitespace: space, tab, line feed, carriage return. */
const JSON_WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
/** The same as a byte table (1 = whitespace), for the per-byte loop of the event counter. */
const JSON_WS_BYTE = new Uint8Array(256);
for (const b of JSON_WS) JSON_WS_BYTE[b] = 1;
const BOM = [0xef, 0xbb, 0xbf];

const tooManyEvents = (max: number) =>
  new BodyError(413, `request holds more than ${max} events (SLUICE_MAX_EVENTS_PER_REQUEST); split it into requests of at most ${max} events`);

/**
 * Counts the events of a body from its bytes as they arrive, without parsing them: top-level elements of a
 * JSON array (commas at depth 1 outside strings) or non-blank NDJSON lines. The mode is chosen as the parser
 * chooses it (first non-blank byte `[` and not an NDJSON content type → array). Bytes ≥ 0x80 never look like
 * JSON punctuation in UTF-8, so counting bytes is exact for valid bodies (and an upper bound for broken ones).
 */
export class EventCounter {
  private mode: 'unknown' | 'array' | 'ndjson' | 'done' = 'unknown';
  private lines = 0;
  private lineHasContent = false;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private commas = 0;
  private sawElement = false;
  private bomAt = 0;

  constructor(private readonly ndjson: boolean) {}

  /** Events seen so far (the last one may still be incomplete). */
  get count(): number {
    if (this.mode === 'ndjson') return this.lines + (this.lineHasContent ? 1 : 0);
    if (this.mode === 'array' || this.mode === 'done') return this.sawElement ? this.commas + 1 : 0;
    return 0;
  }

  feed(buf: Buffer): number {
    let i = 0;
    if (this.mode === 'unknown') {
      while (i < buf.length) {
        const b = buf[i]!;
        if (this.bomAt < 3 && b === BOM[this.bomAt]) {
          this.bomAt++;
          i++;
          continue;
        }
        this.bomAt = 3;
        if (JSON_WS.has(b)) {
          i++;
          continue;
        }
        this.mode = b === 0x5b && !this.ndjson ? 'array' : 'ndjson';
        break;
      }
    }
    if (this.mode === 'ndjson') this.feedLines(buf, i);
    else if (this.mode === 'array') this.feedArray(buf, i);
    return this.count;
  }

  private feedLines(buf: Buffer, from: number): void {
    let i = from;
    while (i < buf.length) {
      if (!this.lineHasContent) {
        while (i < buf.length && buf[i] !== 0x0a && JSON_WS.has(buf[i]!)) i++;
        if (i < buf.length && buf[i] !== 0x0a) this.lineHasContent = true;
      }
      const nl = buf.indexOf(0x0a, i);
      if (nl === -1) return;
      if (this.lineHasContent) this.lines++;
      this.lineHasContent = false;
      i = nl + 1;
    }
  }

  // Hot path (every byte of every JSON array body): a string's bytes are skipped in a tight loop up to its closing
  // quote or an escape, and inside an element only strings and brackets are looked at.
  private feedArray(buf: Buffer, from: number): void {
    let { depth, inString, escaped, commas, sawElement } = this;
    const n = buf.length;
    let i = from;
    while (i < n) {
      if (inString) {
        if (escaped) {
          escaped = false;
          i++;
          continue;
        }
        let b = buf[i]!;
        while (b !== 0x22 && b !== 0x5c && ++i < n) b = buf[i]!;
        if (i === n) break;
        if (b === 0x5c) escaped = true;
        else inString = false;
        i++;
        continue;
      }
      const b = buf[i++]!;
      if (depth > 1) {
        if (b === 0x22) inString = true;
        else if (b === 0x5b || b === 0x7b) depth++;
        else if (b === 0x5d || b === 0x7d) depth--;
        continue;
      }
      if (b === 0x22) {
        inString = true;
        if (depth === 1) sawElement = true;
      } else if (b === 0x5b || b === 0x7b) {
        if (depth === 1) sawElement = true;
        depth++;
      } else if (b === 0x5d || b === 0x7d) {
        depth--;
        if (depth <= 0) {
          this.mode = 'done'; // the array is closed; anything after it is the parser's to refuse
          break;
        }
      } else if (depth === 1) {
        if (b === 0x2c) commas++;
        else if (JSON_WS_BYTE[b] === 0) sawElement = true;
      }
    }
    this.depth = depth;
    this.inString = inString;
    this.escaped = escaped;
    this.commas = commas;
    this.sawElement = sawElement;
  }
}

export interface ReadBodyOptions {
  gzip: boolean;
  /** Largest body after decompression (SLUICE_MAX_BODY_BYTES). */
  maxBytes: number;
  /** Most events per request (SLUICE_MAX_EVENTS_PER_REQUEST). */
  maxEvents: number;
  ndjson: boolean;
  /** Charges n more decompressed bytes to the node's in-flight budget; returns a refusal message when it is full. */
  reserve(bytes: number): string | undefined;
}

/**
 * Reads a request body stream, gunzipping it on the fly, into one decompressed buffer within maxBytes and
 * maxEvents (413 past either), charging each chunk to the in-flight budget (503 when it is full). Stops
 * reading at the first broken limit, so a gzip bomb is never fully inflated.
 */
export function readEventsBody(raw: Readable, opts: ReadBodyOptions): Promise<Buffer> {
  const counter = new EventCounter(opts.ndjson);
  const chunks: Buffer[] = [];
  let total = 0;
  const gunzip = opts.gzip ? createGunzip() : undefined;
  const source: Readable = gunzip ? raw.pipe(gunzip) : raw;
  return new Promise<Buffer>((resolve, reject) => {
    let settled = false;
    const stop = (err: BodyError | undefined) => {
      if (settled) return;
      settled = true;
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
      raw.off('error', onError);
      raw.off('close', onClose);
      if (gunzip) {
        raw.unpipe(gunzip);
        gunzip.destroy();
      }
      if (err) {
        // The rest of the body is read and dropped (never kept), so the answer reaches the client and the
        // connection stays usable; SLUICE_INGEST_REQUEST_TIMEOUT bounds how long that may take.
        raw.resume();
        reject(err);
      } else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
    };
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > opts.maxBytes) {
        return stop(
          new BodyError(
            413,
            `request body exceeds the limit of ${opts.maxBytes} bytes${gunzip ? ' after gzip decompression' : ''} (SLUICE_MAX_BODY_BYTES); split it into smaller requests`,
          ),
        );
      }
      const refused = opts.reserve(chunk.length);
      if (refused) return stop(new BodyError(503, refused));
      if (counter.feed(chunk) > opts.maxEvents) return stop(tooManyEvents(opts.maxEvents));
      chunks.push(chunk);
    };
    const onEnd = () => stop(undefined);
    const onError = (err: NodeJS.ErrnoException) => {
      if (gunzip && err.code?.startsWith('Z_'))
        return stop(new BodyError(400, `body is declared gzip (Content-Encoding: gzip) but is not valid gzip: ${err.message}`));
      stop(new BodyError(400, `request body was cut off before it was complete (${err.message}); send it again`));
    };
    const onClose = () => {
      if (!raw.readableEnded) stop(new BodyError(400, 'request body was cut off before it was complete (connection closed); send it again'));
    };
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', onError);
    if (gunzip) raw.on('error', onError);
    raw.on('close', onClose);
  });
}

/**
 * Decompresses (when gzip) within maxBytes, checks UTF-8, and parses; with maxEvents, refuses (413) a body
 * holding more events before parsing any (readEventsBody has already counted them for the HTTP path).
 */
export function parseEventsBody(raw: Buffer, opts: { gzip: boolean; maxBytes: number; ndjson: boolean; maxEvents?: number }): ParsedBody {
  let buf = raw;
  if (opts.gzip) {
    try {
      buf = gunzipSync(raw, { maxOutputLength: opts.maxBytes });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || /maxOutputLength|too large/i.test(String(err))) {
        throw new BodyError(413, `request body exceeds the limit of ${opts.maxBytes} bytes after gzip decompression (SLUICE_MAX_BODY_BYTES)`);
      }
      throw new BodyError(400, `body is declared gzip (Content-Encoding: gzip) but is not valid gzip: ${(err as Error).message}`);
    }
  }
  if (opts.maxEvents !== undefined && new EventCounter(opts.ndjson).feed(buf) > opts.maxEvents) throw tooManyEvents(opts.maxEvents);
  let text: string;
  try {
    text = utf8.decode(buf);
  } catch {
    throw new BodyError(400, `body is not valid UTF-8 (first invalid byte at offset ${invalidUtf8Offset(buf)})`);
  }
  let start = 0;
  while (start < text.length && JSON_WS.has(text.charCodeAt(start))) start++;
  if (start === text.length) throw new BodyError(400, 'body is empty: send a JSON array of events or NDJSON (one event per line)');
  if (text[start] === '[' && !opts.ndjson) {
    let values: unknown;
    try {
      values = JSON.parse(text);
    } catch (err) {
      throw new BodyError(400, `body is not valid JSON: ${jsonErrorWhere(err, text)}`);
    }
    if (!Array.isArray(values)) throw new BodyError(400, 'body must be a JSON array of events or NDJSON');
    if (values.length === 0) throw new BodyError(400, 'body holds no events (empty array)');
    return { values, lineErrors: new Map() };
  }
  // NDJSON: each non-blank line is one event; a bad line is a per-event rejection, not a failed request.
  const values: unknown[] = [];
  const lineErrors = new Map<number, string>();
  let lineNo = 0;
  let from = 0;
  while (from <= text.length) {
    let nl = text.indexOf('\n', from);
    if (nl === -1) nl = text.length;
    const line = text.slice(from, nl).trim();
    lineNo++;
    if (line.length > 0) {
      try {
        values.push(JSON.parse(line));
      } catch (err) {
        lineErrors.set(values.length, `line ${lineNo} is not valid JSON: ${jsonErrorWhere(err, line)}`);
        values.push(undefined);
      }
    }
    from = nl + 1;
  }
  if (values.length === 0) throw new BodyError(400, 'body holds no events');
  return { values, lineErrors };
}
