// Builds the InfluxQL the query API runs (InfluxDB 1.6+) over the series of contracts/influx-series.ts. Tag values
// are always quoted with influxString, so no request parameter can change a query's shape. Each statement folds
// workers' partial points with the contract's FOLD_SELECT over all points of a bucket.
import { FOLD_SELECT, MEASUREMENT_1M, TOTAL_SELECT, influxIdent as ident, qualifiedMeasurement, seriesIs } from '../shared/contracts/influx-series.js';
import type { StatsRequest, TotalRequest } from './params.js';

/**
 * Per-bucket aggregates of one series over [from, to): columns time, count, sum, min, max.
 * Buckets are aligned to UTC step boundaries; empty buckets are left out (fill(none)).
 */
export function statsQuery(req: Pick<StatsRequest, 'entityId' | 'eventType' | 'fromMs' | 'toMs' | 'step'>): string {
  return foldedQuery({ measurement: MEASUREMENT_1M }, req, req.fromMs, req.toMs, req.step);
}

/** All-time count and sum of one series: columns time, count, sum (one row, or none without data). */
export function totalQuery(req: TotalRequest): string {
  return `SELECT ${TOTAL_SELECT} FROM ${ident(MEASUREMENT_1M)} WHERE ${seriesIs(req.entityId, req.eventType)}`;
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
  return foldedQueryWhere(from, seriesIs(req.entityId, req.eventType), fromMs, toMs, step);
}

/** The foldedQuery shape for any series condition (`where`, e.g. an attribute series of influx-series.ts). */
export function foldedQueryWhere(
  from: { database?: string; retentionPolicy?: string; measurement: string },
  where: string,
  fromMs: number,
  toMs: number,
  step: string,
): string {
  const source = from.retentionPolicy ? qualifiedMeasurement(from.database ?? '', from.retentionPolicy, from.measurement) : ident(from.measurement);
  return `SELECT ${FOLD_SELECT} FROM ${source} WHERE ${where} AND time >= ${Math.trunc(fromMs)}ms AND time < ${Math.trunc(toMs)}ms GROUP BY time(${step}) fill(none)`;
}
