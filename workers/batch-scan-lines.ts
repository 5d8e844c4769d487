// InfluxDB line protocol of a batch's per-minute points, formatted by the engine as SQL: the series layout of
// contracts/influx-series.ts (measurement events_1m, its tags and fields), tag values escaped for InfluxDB 1.x.
import { FIELDS, MEASUREMENT_1M, TAG_ENTITY, TAG_TYPE } from '../shared/contracts/influx-series.js';

/**
 * InfluxDB 1.x line-protocol escaping of a tag value, as SQL: comma, equals sign and space get a backslash. A
 * backslash itself is not an escape character in 1.x tag values (checked on InfluxDB 1.6: `\\` is stored as two
 * backslashes, and `a\,b` written as `a\\,b` reads back as `a\,b`), so it is written as it is; the one value this
 * cannot express, a trailing backslash, never gets here (UNSTORABLE_REASON_SQL). Control characters never get here.
 */
export const tagSql = (col: string): string => `replace(replace(replace(${col}, ',', '\\,'), '=', '\\='), ' ', '\\ ')`;

/** The fields of a point from the columns of the points table (pointsTableSql: count n, sum s, min lo, max hi). */
const FIELD_SOURCES: Record<keyof typeof FIELDS, string> = { count: 'n', sum: 's', min: 'lo', max: 'hi' };
const fieldsSql = (Object.keys(FIELDS) as (keyof typeof FIELDS)[])
  .map((f, i) => `'${i === 0 ? ' ' : ','}${f}=' || ${FIELD_SOURCES[f]}${FIELDS[f] === 'integer' ? " || 'i'" : ''}`)
  .join(' || ');

/**
 * The per-minute points of `from` (rows with entity_id, event_type, ts, value), numbered in a fixed order (rn) so
 * a line InfluxDB refuses maps back to its series.
 */
export const pointsTableSql = (from: string): string => `CREATE OR REPLACE TEMP TABLE points AS
  SELECT row_number() OVER (ORDER BY entity_id, event_type, m) - 1 AS rn, * FROM (
    SELECT entity_id, event_type, ts // 60000 AS m, count(*) AS n, sum(value) AS s, min(value) AS lo, max(value) AS hi
    FROM ${from} GROUP BY ALL)`;

/** The points table as line-protocol chunks of `linesPerChunk` lines: columns body, points, events. */
export const lineChunksSql = (offsetNs: bigint, linesPerChunk: number): string => `
  WITH lines AS (
    SELECT rn, n,
      '${MEASUREMENT_1M},${TAG_ENTITY}=' || ${tagSql('entity_id')} || ',${TAG_TYPE}=' || ${tagSql('event_type')}
      || ${fieldsSql} || ' ' || (m * 60000000000 + ${offsetNs}) AS line
    FROM points
  )
  SELECT string_agg(line, chr(10) ORDER BY rn) AS body, count(*)::INTEGER AS points, sum(n)::DOUBLE AS events
  FROM lines GROUP BY rn // ${linesPerChunk} ORDER BY rn // ${linesPerChunk}`;
