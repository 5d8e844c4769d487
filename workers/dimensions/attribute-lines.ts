// A batch's per-minute aggregates by attribute: one engine query joins the batch's counted rows — grouped first per
// (entity, event type, minute), so the join sees one row per group, not per event — with the attached dimension table
// (shared/dimension-store.ts) and groups them per (attribute, value, event type, minute); the answer is formatted as
// line protocol in the layout of contracts/influx-series.ts (events_1m_by_<attribute>, tags value and event_type, the
// entity series' fields plus dim_version). Entities the table does not know, and empty values, count for no value.
import { ATTRIBUTE_FIELDS, FIELD_DIM_VERSION, TAG_TYPE, TAG_VALUE, attributeMeasurement } from '../../shared/contracts/influx-series.js';
import type { DimensionLease } from '../../shared/dimension-store.js';
import { type DuckDBConnection, sqlIdent } from '../../shared/parquet.js';
import { escapeTag } from '../batch-scan-lines.js';

export interface AttributeLines {
  /** Newline-separated line protocol, at most linesPerChunk points each. */
  chunks: string[];
  points: number;
  /** Minutes (epoch ms) the counted rows cover: where the batch's attribute points of any version can sit. */
  minutesMs: number[];
}

// The line below writes the fields of contracts/influx-series.ts ATTRIBUTE_FIELDS in their order.
if (JSON.stringify(ATTRIBUTE_FIELDS) !== '{"count":"integer","sum":"float","min":"float","max":"float","dim_version":"integer"}')
  throw new Error(`workers/dimensions/attribute-lines.ts writes count, sum, min, max, dim_version; ATTRIBUTE_FIELDS is ${JSON.stringify(ATTRIBUTE_FIELDS)}`);

/** The SQL of the aggregates: columns k (index into `attributes`), v, event_type, m (minute number), n, s, lo, hi. */
export function attributeAggregatesSql(rows: string, relation: string, attributes: readonly string[]): string {
  const picks = attributes.map((a, i) => `d.${sqlIdent(a)} AS a${i}`).join(', ');
  const unions = attributes.map((_, i) => `SELECT ${i} AS k, a${i} AS v, event_type, m, n, s, lo, hi FROM j WHERE a${i} IS NOT NULL`).join(' UNION ALL ');
  return `WITH g AS (
      SELECT entity_id, event_type, ts // 60000 AS m, count(*)::BIGINT AS n, sum(value)::DOUBLE AS s, min(value)::DOUBLE AS lo, max(value)::DOUBLE AS hi
      FROM ${rows} GROUP BY ALL),
    j AS MATERIALIZED (SELECT g.*, ${picks} FROM g JOIN ${relation} d ON d.entity_id = g.entity_id)
    SELECT k, v, event_type, m::DOUBLE, sum(n)::DOUBLE, sum(s)::DOUBLE, min(lo)::DOUBLE, max(hi)::DOUBLE FROM (${unions})
    GROUP BY ALL ORDER BY 1, 2, 3, 4`;
}

/**
 * The attribute points of the counted rows `rows` on connection `c`, enriched with `lease`'s table, for the
 * `attributes` the version has; each stamped minute start + offsetNs like the batch's entity points.
 */
export async function attributeLines(
  c: DuckDBConnection,
  rows: string,
  lease: DimensionLease,
  attributes: readonly string[],
  o: { offsetNs: bigint; linesPerChunk: number },
): Promise<AttributeLines> {
  const [minutes = []] = (await c.runAndReadAll(`SELECT DISTINCT (ts // 60000)::DOUBLE AS m FROM ${rows} ORDER BY m`)).getColumnsJS() as [number[]];
  const minutesMs = minutes.map((m) => m * 60_000);
  if (!lease.relation || attributes.length === 0 || minutes.length === 0) return { chunks: [], points: 0, minutesMs };
  const [k = [], v = [], t = [], m = [], n = [], s = [], lo = [], hi = []] = (
    await c.runAndReadAll(attributeAggregatesSql(rows, lease.relation, attributes))
  ).getColumnsJS() as [number[], string[], string[], number[], number[], number[], number[], number[]];
  const per = Math.max(1, Math.floor(o.linesPerChunk));
  const fields = `,${FIELD_DIM_VERSION}=${lease.version}i `;
  const chunks: string[] = [];
  let body = '';
  let inChunk = 0;
  let prefixKey = '';
  let prefix = '';
  for (let i = 0; i < k.length; i++) {
    const key = `${k[i]}\u0000${v[i]}\u0000${t[i]}`;
    if (key !== prefixKey) {
      prefixKey = key;
      prefix = `${attributeMeasurement(attributes[k[i]!]!, '1m')},${TAG_VALUE}=${escapeTag(v[i]!)},${TAG_TYPE}=${escapeTag(t[i]!)} count=`;
    }
    body += `${prefix}${n[i]}i,sum=${s[i]},min=${lo[i]},max=${hi[i]}${fields}${BigInt(m[i]!) * 60_000_000_000n + o.offsetNs}\n`;
    if (++inChunk === per) {
      chunks.push(body.slice(0, -1));
      body = '';
      inChunk = 0;
    }
  }
  if (inChunk > 0) chunks.push(body.slice(0, -1));
  return { chunks, points: k.length, minutesMs };
}
