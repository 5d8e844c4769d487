// The InfluxDB series contract: measurements, retention policies, tags and fields of Sluice's points, the fold
// that merges partial points, and InfluxQL quoting. Workers and rollups write this layout, the query API and the
// audit read it; nothing else spells a measurement, tag or field name. A change that readers of existing points
// cannot follow needs a new major INFLUX_SERIES_VERSION (and a migration of the stored series).

export const INFLUX_SERIES_VERSION = '1.1';

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

// ---- attribute series (1.1): per-minute aggregates by an attribute of the dimension table (SLUICE_DIMENSIONS) ----

/** Resolutions of the attribute series, like the entity series'. */
export type SeriesResolution = '1m' | '1h' | '1d';
/** The measurement of one attribute at one resolution: events_1m_by_channel, events_1h_by_channel, … (1h/1d in RP_1H/RP_1D). */
export const attributeMeasurement = (attribute: string, res: SeriesResolution): string => `events_${res}_by_${attribute}`;
/** InfluxQL regular expression matching every per-minute attribute measurement (the rollup job finds them with it). */
export const ATTRIBUTE_1M_REGEX = '/^events_1m_by_[a-z][a-z0-9_]*$/';
/** The attribute of a per-minute attribute measurement name, or undefined when it is not one. */
export const attributeOfMeasurement = (measurement: string): string | undefined => /^events_1m_by_([a-z][a-z0-9_]*)$/.exec(measurement)?.[1];
/** Tag keys of the attribute series: one series per (attribute value, event type). */
export const TAG_VALUE = 'value';
export const ATTRIBUTE_TAGS = [TAG_VALUE, TAG_TYPE] as const;
/**
 * Fields of attribute points: those of FIELDS, plus the dimension-table version the batch was counted with (the
 * newest version of the period in rollups). Folds read only the FIELDS.
 */
export const FIELD_DIM_VERSION = 'dim_version';
export const ATTRIBUTE_FIELDS = { ...FIELDS, [FIELD_DIM_VERSION]: 'integer' } as const;
/**
 * One point per batch that wrote attribute points (no tags; stamped like the batch's first point: its first minute +
 * the batch offset), field dim_version: the version those points were counted with. A rewrite with another version
 * first deletes the batch's earlier attribute points (workers/dimensions/attribute-writer.ts).
 */
export const MEASUREMENT_DIMENSION_BATCHES = 'dimension_batches';
/** GROUP BY clause that keeps attribute series apart. */
export const GROUP_BY_ATTRIBUTE_SERIES = `${influxIdent(TAG_VALUE)}, ${influxIdent(TAG_TYPE)}`;
/** WHERE condition selecting one attribute series. */
export const attributeSeriesIs = (value: string, eventType: string): string =>
  `${influxIdent(TAG_VALUE)} = ${influxString(value)} AND ${influxIdent(TAG_TYPE)} = ${influxString(eventType)}`;
