// Checks one staged event line (contracts/event.ts EventLine) the way the Parquet engine needs it: UTF-8 JSON, the
// event-line shape and types, well-formed strings without control characters. Runs only when a segment cannot be
// converted (and on quarantine release), never on the hot path; it never throws, it returns a reason. What it cannot
// see (e.g. a key repeated within one object, which the engine refuses) is caught by converting the good lines again.
import { isUtf8 } from 'node:buffer';
import type { EventLine } from '../shared/contracts/event-line.js';
import type { QuarantineReason } from '../shared/contracts/quarantine.js';

export type LineCheck = { ok: true; line: EventLine } | { ok: false; reason: QuarantineReason; detail: string };

const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

const bad = (reason: QuarantineReason, detail: string): LineCheck => ({ ok: false, reason, detail });

function checkText(v: string, field: string): LineCheck | undefined {
  if (!(v as unknown as { isWellFormed(): boolean }).isWellFormed())
    return bad('malformed_unicode', `${field} holds a lone surrogate (e.g. the escape \\ud800)`);
  const c = CONTROL_CHARS.exec(v);
  if (c)
    return bad(
      'control_character',
      `${field} holds control character U+${c[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()} at position ${c.index}`,
    );
  return undefined;
}

const STRING_FIELDS = [
  ['i', 'eventId (i)'],
  ['n', 'entityId (n)'],
  ['t', 'eventType (t)'],
  ['p', 'producer (p)'],
] as const;
const INTEGER_FIELDS = [
  ['ts', 'timestamp (ts)'],
  ['it', 'ingest time (it)'],
] as const;

/** Checks one line (without its newline). */
export function checkEventLine(bytes: Buffer): LineCheck {
  if (!isUtf8(bytes)) return bad('malformed_unicode', 'line is not valid UTF-8');
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    return bad('invalid_json', `line is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return bad('not_an_event_line', `line must be a JSON object, got ${Array.isArray(raw) ? 'an array' : raw === null ? 'null' : typeof raw}`);
  const o = raw as Record<string, unknown>;
  for (const [k, field] of STRING_FIELDS) {
    const v = o[k];
    if (typeof v !== 'string') return bad('not_an_event_line', `${field} must be a string, got ${v === undefined ? 'nothing' : typeof v}`);
    const t = checkText(v, field);
    if (t) return t;
  }
  for (const [k, field] of INTEGER_FIELDS) {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      return bad('not_an_event_line', `${field} must be epoch milliseconds (a non-negative integer), got ${JSON.stringify(v) ?? 'nothing'}`);
  }
  if (typeof o.v !== 'number' || !Number.isFinite(o.v))
    return bad('not_an_event_line', `value (v) must be a finite number, got ${JSON.stringify(o.v) ?? 'nothing'}`);
  const d = o.d;
  if (d !== null && d !== undefined) {
    if (typeof d !== 'object' || Array.isArray(d))
      return bad('not_an_event_line', `dims (d) must be an object of strings or null, got ${Array.isArray(d) ? 'an array' : typeof d}`);
    for (const [k, v] of Object.entries(d as Record<string, unknown>)) {
      const tk = checkText(k, 'a dims key');
      if (tk) return tk;
      if (typeof v !== 'string') return bad('not_an_event_line', `dims.${k} must be a string, got ${v === null ? 'null' : typeof v}`);
      const tv = checkText(v, `dims.${k}`);
      if (tv) return tv;
    }
  }
  if (o.r !== undefined && typeof o.r !== 'string') return bad('not_an_event_line', `reservation (r) must be a string, got ${typeof o.r}`);
  return {
    ok: true,
    line: {
      ...(typeof o.r === 'string' ? { r: o.r } : {}),
      i: o.i as string,
      n: o.n as string,
      t: o.t as string,
      ts: o.ts as number,
      v: o.v,
      d: (d ?? null) as EventLine['d'],
      it: o.it as number,
      p: o.p as string,
    },
  };
}
