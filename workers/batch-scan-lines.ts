// A batch's cells and per-minute points: the engine groups the counted rows into cells (entity, event type, CELL_MS
// of event time), sorted, with strings replaced by dictionary indices; minutes, top-K buckets and totals are sums of
// consecutive cells, formed here in one pass each. Points are written as InfluxDB line protocol in the series layout
// of contracts/influx-series.ts (measurement events_1m, its tags and fields), tag values escaped for InfluxDB 1.x:
// each series' tag text is escaped once per batch and each minute's timestamp formatted once, so a line costs one
// string and no other object.
import { FIELDS, MEASUREMENT_1M, TAG_ENTITY, TAG_TYPE } from '../shared/contracts/influx-series.js';

/** Width of a cell (ms of event time): minutes and the top-K base buckets are whole numbers of cells. */
export const CELL_MS = 10_000;

/**
 * InfluxDB 1.x line-protocol escaping of a tag value: comma, equals sign and space get a backslash. A backslash
 * itself is not an escape character in 1.x tag values (checked on InfluxDB 1.6: `\\` is stored as two backslashes,
 * and `a\,b` written as `a\\,b` reads back as `a\,b`), so it is written as it is; the one value this cannot express,
 * a trailing backslash, never gets here (UNSTORABLE_REASON_SQL). Control characters never get here.
 */
export const escapeTag = (value: string): string => (/[,= ]/.test(value) ? value.replace(/[,= ]/g, '\\$&') : value);

/** The distinct entities and event types of `from`, in byte order, each joined by newlines (ids hold no control characters). */
export const dictionarySql = (from: string): string => `SELECT
  (SELECT string_agg(entity_id, chr(10) ORDER BY entity_id) FROM (SELECT DISTINCT entity_id FROM ${from})),
  (SELECT string_agg(event_type, chr(10) ORDER BY event_type) FROM (SELECT DISTINCT event_type FROM ${from}))`;

/**
 * The cells of `from` (rows with entity_id, event_type, ts, value): columns ei, ti (indices into dictionarySql's
 * lists), b (cell number: ts // CELL_MS), n, s, lo, hi (count, sum, min, max of value), ordered by ei, ti, b.
 */
export const cellsSql = (from: string): string => `
  WITH g AS (
    SELECT entity_id, event_type, ts // ${CELL_MS} AS b, count(*)::INTEGER AS n, sum(value)::DOUBLE AS s, min(value)::DOUBLE AS lo,
      max(value)::DOUBLE AS hi
    FROM ${from} GROUP BY ALL),
  e AS (SELECT entity_id, (row_number() OVER (ORDER BY entity_id) - 1)::INTEGER AS ei FROM (SELECT DISTINCT entity_id FROM g)),
  t AS (SELECT event_type, (row_number() OVER (ORDER BY event_type) - 1)::INTEGER AS ti FROM (SELECT DISTINCT event_type FROM g))
  SELECT e.ei, t.ti, g.b::DOUBLE, g.n, g.s, g.lo, g.hi FROM g JOIN e USING (entity_id) JOIN t USING (event_type) ORDER BY 1, 2, 3`;

/** Cells as parallel arrays (see cellsSql), or their sums over coarser buckets (same columns, b the bucket number). */
export interface Cells {
  ei: number[];
  ti: number[];
  b: number[];
  n: number[];
  s: number[];
  lo: number[];
  hi: number[];
}

/**
 * Sums consecutive cells of one (entity, event type) that fall in the same `width`-ms bucket (a multiple of CELL_MS):
 * `b` of the result is the bucket number (start / width). Sums add up in cell order, so the same cells always give
 * the same sums. `width` = CELL_MS returns the cells themselves.
 */
export function sumCells(c: Cells, width: number): Cells {
  if (width === CELL_MS) return c;
  if (!Number.isInteger(width / CELL_MS) || width <= 0) throw new RangeError(`bucket width must be a positive multiple of ${CELL_MS} ms, got ${width}`);
  const per = width / CELL_MS;
  const out: Cells = { ei: [], ti: [], b: [], n: [], s: [], lo: [], hi: [] };
  let k = -1;
  for (let i = 0; i < c.ei.length; i++) {
    const ei = c.ei[i]!;
    const ti = c.ti[i]!;
    const b = Math.floor(c.b[i]! / per);
    if (k >= 0 && out.ei[k] === ei && out.ti[k] === ti && out.b[k] === b) {
      out.n[k]! += c.n[i]!;
      out.s[k]! += c.s[i]!;
      if (c.lo[i]! < out.lo[k]!) out.lo[k] = c.lo[i]!;
      if (c.hi[i]! > out.hi[k]!) out.hi[k] = c.hi[i]!;
    } else {
      k++;
      out.ei.push(ei);
      out.ti.push(ti);
      out.b.push(b);
      out.n.push(c.n[i]!);
      out.s.push(c.s[i]!);
      out.lo.push(c.lo[i]!);
      out.hi.push(c.hi[i]!);
    }
  }
  return out;
}

/** Count and sum per (entity, event type) of cells sorted by ei, ti: parallel arrays. */
export function totalsOfCells(c: Cells): { ei: number[]; ti: number[]; n: number[]; s: number[] } {
  const out = { ei: [] as number[], ti: [] as number[], n: [] as number[], s: [] as number[] };
  let k = -1;
  for (let i = 0; i < c.ei.length; i++) {
    if (k >= 0 && out.ei[k] === c.ei[i] && out.ti[k] === c.ti[i]) {
      out.n[k]! += c.n[i]!;
      out.s[k]! += c.s[i]!;
    } else {
      k++;
      out.ei.push(c.ei[i]!);
      out.ti.push(c.ti[i]!);
      out.n.push(c.n[i]!);
      out.s.push(c.s[i]!);
    }
  }
  return out;
}

// The line below writes the fields of contracts/influx-series.ts in their order (count an integer, then sum, min and max
// as floats); a change of the contract must change it too, so a mismatch stops the worker at start-up.
if (JSON.stringify(FIELDS) !== '{"count":"integer","sum":"float","min":"float","max":"float"}')
  throw new Error(`workers/batch-scan-lines.ts writes count, sum, min, max; contracts/influx-series.ts FIELDS is ${JSON.stringify(FIELDS)}`);

/**
 * Formats minute points (sumCells at 60 s) as line protocol in chunks of `linesPerChunk` lines:
 * `events_1m,entity_id=…,event_type=… count=<n>i,sum=…,min=…,max=… <minute ns + offsetNs>`.
 */
export function lineChunks(points: Cells, entities: readonly string[], types: readonly string[], offsetNs: bigint, linesPerChunk: number): string[] {
  const series = new Array<string | undefined>(entities.length * types.length);
  const stamps = new Map<number, string>();
  const { ei, ti, b, n, s, lo, hi } = points;
  const chunks: string[] = [];
  for (let start = 0; start < ei.length; start += linesPerChunk) {
    const end = Math.min(ei.length, start + linesPerChunk);
    let body = '';
    for (let i = start; i < end; i++) {
      const key = ei[i]! * types.length + ti[i]!;
      let prefix = series[key];
      if (prefix === undefined) {
        prefix = `${MEASUREMENT_1M},${TAG_ENTITY}=${escapeTag(entities[ei[i]!]!)},${TAG_TYPE}=${escapeTag(types[ti[i]!]!)} count=`;
        series[key] = prefix;
      }
      let stamp = stamps.get(b[i]!);
      if (stamp === undefined) {
        stamp = ` ${BigInt(b[i]!) * 60_000_000_000n + offsetNs}`;
        stamps.set(b[i]!, stamp);
      }
      body += `${prefix}${n[i]}i,sum=${s[i]},min=${lo[i]},max=${hi[i]}${stamp}\n`;
    }
    chunks.push(body.slice(0, -1));
  }
  return chunks;
}
