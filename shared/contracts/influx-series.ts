// The InfluxDB series contract: measurements, retention policies, tags and fields of Sluice's points, the fold
// that merges partial points, and InfluxQL quoting. Workers and rollups write this layout, the query API and the
// audit read it; nothing else spells a measurement, tag or field name. A change that readers of existing points
// cannot follow needs a new major INFLUX_SERIES_VERSION (and a migration of the stored series).

export const INFLUX_SERIES_VERSION = '1.0';

/** Per-minute partial points, written by workers into the database's default retention policy. */
export const MEASUREMENT_1M = 'events_1m';
/** Hourly and daily rollups (one point per series and period, at the period start), same tags and fields. */
export const MEASUREMENT_1H = 'events_1h';
export const MEASUREMENT_1D = 'events_1d';
export const MEASUREMENTS = [MEASUREMENT_1M, MEASUREMENT_1H, MEASUREMENT_1D] as const;

/** Retention policies of the rollups (events_1m stays in the database's default policy). */
export const RP_1H = 'sluice_1h';
export const RP_1D = 'sluice_1d';

/** Tag keys: one series per (entity, event type). */
export const TAG_ENTITY = 'entity_id';
export const TAG_TYPE = 'event_type';
export const TAGS = [TAG_ENTITY, TAG_TYPE] as const;

/** Fields of every point and their InfluxDB types: the count is an integer, the rest floats. */
export const FIELDS = { count: 'integer', sum: 'float', min: 'float', max: 'float' } as const;

/** InfluxQL string literal. */
export function influxString(s: string): string {
  return `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

/** InfluxQL identifier (double-quoted). */
export function influxIdent(name: string): string {
  return `"${name.replaceAll('"', '\\"')}"`;
}

/** A fully qualified measurement: "db"."rp"."measurement" (rollups live in their own retention policies). */
export function qualifiedMeasurement(database: string, retentionPolicy: string, measurement: string): string {
  return `${influxIdent(database)}.${influxIdent(retentionPolicy)}.${influxIdent(measurement)}`;
}

/**
 * Folds any number of partial points of a series into one: workers may write several points for one series and
 * minute (one per batch), so every read sums counts and sums and takes the min of mins and max of maxes.
 */
export const FOLD_SELECT = 'sum("count") AS "count", sum("sum") AS "sum", min("min") AS "min", max("max") AS "max"';
/** The count-and-sum part of the fold, for totals. */
export const TOTAL_SELECT = 'sum("count") AS "count", sum("sum") AS "sum"';

/** GROUP BY clause that keeps series apart. */
export const GROUP_BY_SERIES = `${influxIdent(TAG_ENTITY)}, ${influxIdent(TAG_TYPE)}`;

/** WHERE condition selecting one tag value. */
export const tagIs = (tag: (typeof TAGS)[number], value: string): string => `${influxIdent(tag)} = ${influxString(value)}`;

/** WHERE condition selecting one series. */
export const seriesIs = (entityId: string, eventType: string): string => `${tagIs(TAG_ENTITY, entityId)} AND ${tagIs(TAG_TYPE, eventType)}`;
