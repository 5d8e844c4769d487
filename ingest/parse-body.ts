// Decodes a POST /v1/events body into raw event values: JSON array or NDJSON, optionally gzip.
// Failures carry an HTTP status and a message that says where the body is wrong (byte offset, line, column).
import { gunzipSync } from 'node:zlib';

export class BodyError extends Error {
  constructor(
    readonly status: 400 | 413 | 415,
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

/** Decompresses (when gzip) within maxBytes, checks UTF-8, and parses. */
export function parseEventsBody(raw: Buffer, opts: { gzip: boolean; maxBytes: number; ndjson: boolean }): ParsedBody {
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
  let text: string;
  try {
    text = utf8.decode(buf);
  } catch {
    throw new BodyError(400, `body is not valid UTF-8 (first invalid byte at offset ${invalidUtf8Offset(buf)})`);
  }
  let start = 0;
  while (start < text.length && /\s/.test(text[start]!)) start++;
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
