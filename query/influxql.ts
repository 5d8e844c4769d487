// Builds the InfluxQL the query API runs (InfluxDB 1.6+). Tag values are always quoted with influxString,
// so no request parameter can change a query's shape. Each statement folds workers' partial points:
// sum(count), sum(sum), min(min), max(max) over all points of a bucket.
import { MEASUREMENT_1M, TAG_ENTITY, TAG_TYPE, foldedSource, influxIdent as ident, influxString } from '../shared/clients/influx.js';
import type { StatsRequest, TotalRequest } from './params.js';

export function seriesFilter(entityId: string, eventType: string): string {
  return `${ident(TAG_ENTITY)} = ${influxString(entityId)} AND ${ident(TAG_TYPE)} = ${influxString(eventType)}`;
}

/**
 * Per-bucket aggregates of one series over [from, to): columns time, count, sum, min, max.
 * Buckets are aligned to UTC step boundaries; empty buckets are left out (fill(none)).
 */
export function statsQuery(req: Pick<StatsRequest, 'entityId' | 'eventType' | 'fromMs' | 'toMs' | 'step'>): string {
  return (
    `SELECT sum("count") AS "count", sum("sum") AS "sum", min("min") AS "min", max("max") AS "max" ` +
    `FROM ${ident(MEASUREMENT_1M)} WHERE ${seriesFilter(req.entityId, req.eventType)} ` +
    `AND time >= ${Math.trunc(req.fromMs)}ms AND time < ${Math.trunc(req.toMs)}ms ` +
    `GROUP BY time(${req.step}) fill(none)`
  );
}

/** All-time count and sum of one series: columns time, count, sum (one row, or none without data). */
export function totalQuery(req: TotalRequest): string {
  return `SELECT sum("count") AS "count", sum("sum") AS "sum" FROM ${ident(MEASUREMENT_1M)} WHERE ${seriesFilter(req.entityId, req.eventType)}`;
}

/**
 * The statsQuery shape over any measurement: `from` is `"events_1m"` or a fully qualified
 * `"db"."rp"."events_1h"` (rollups live in their own retention policies). Used by the federated reader.
 */
export function foldedQuery(
  from: { database?: string; retentionPolicy?: string; measurement: string },
  req: Pick<StatsRequest, 'entityId' | 'eventType'>,
  fromMs: number,
  toMs: number,
  step: string,
): string {
  const source = from.retentionPolicy ? foldedSource(from.database ?? '', from.retentionPolicy, from.measurement) : ident(from.measurement);
  return (
    `SELECT sum("count") AS "count", sum("sum") AS "sum", min("min") AS "min", max("max") AS "max" ` +
    `FROM ${source} WHERE ${seriesFilter(req.entityId, req.eventType)} ` +
    `AND time >= ${Math.trunc(fromMs)}ms AND time < ${Math.trunc(toMs)}ms GROUP BY time(${step}) fill(none)`
  );
}
