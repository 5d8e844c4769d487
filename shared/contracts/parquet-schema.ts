// The archive contract: Parquet schema versions and the Hive-style key layout of the raw bucket.
// Workers, compaction, audits and analysts all read these files; columns are only ever added (as optional), and a
// column's type changes only to one every reader casts to without loss (v3: timestamps become UTC instants).

/**
 * Current schema version written by ingest (and by compaction, whose day files hold every column of it).
 * v1: the first columns. v2: optional session_id. v3: event_time and ingest_time are instants — Parquet
 * TIMESTAMP(MICROS, isAdjustedToUTC=true), DuckDB TIMESTAMPTZ, Iceberg timestamptz — instead of TIMESTAMP(MILLIS)
 * holding UTC wall-clock values without the flag. Microseconds because that is the only unit DuckDB writes with the
 * flag, and it is the unit of Iceberg's timestamptz (its Parquet mapping is TIMESTAMP_MICROS, adjusted to UTC),
 * Spark's TIMESTAMP and BigQuery's TIMESTAMP; the values stay whole milliseconds (ingest's precision).
 */
export const PARQUET_SCHEMA_VERSION = 3;
/** Versions this build can read. A file with another version is a permanent error for workers. */
export const READABLE_SCHEMA_VERSIONS: readonly number[] = [1, 2, 3];

/** How files up to `until` (inclusive) stored a column whose type later changed. */
export interface EarlierType {
  until: number;
  duckdbType: string;
  parquetType: string;
}

export interface ColumnSpec {
  name: string;
  /**
   * Iceberg field id of the column (workers/iceberg/ maps names to ids with schema.name-mapping.default: the files
   * carry no Parquet field ids). Assigned once, never reused or changed.
   */
  fieldId: number;
  /** DuckDB type used when writing the current version (every reader casts older files to it). */
  duckdbType: string;
  /** Parquet physical/logical type of the current version, as analysts see it. */
  parquetType: string;
  nullable: boolean;
  since: number;
  doc: string;
  /** Types of older versions, oldest first, when the column's type changed. */
  earlier?: readonly EarlierType[];
}

/** Timestamps of schema versions 1 and 2: UTC wall-clock values, milliseconds, without the adjusted-to-UTC flag. */
const NAIVE_MILLIS: readonly EarlierType[] = [{ until: 2, duckdbType: 'TIMESTAMP_MS', parquetType: 'INT64 TIMESTAMP(MILLIS, isAdjustedToUTC=false)' }];
/** Timestamps from schema version 3 on: instants. */
const UTC_MICROS = 'INT64 TIMESTAMP(MICROS, isAdjustedToUTC=true)';

export const EVENT_COLUMNS: readonly ColumnSpec[] = [
  {
    name: 'event_id',
    fieldId: 1,
    duckdbType: 'VARCHAR',
    parquetType: 'BYTE_ARRAY (UTF8)',
    nullable: false,
    since: 1,
    doc: 'Producer idempotency key; unique per event within the dedup window.',
  },
  {
    name: 'entity_id',
    fieldId: 2,
    duckdbType: 'VARCHAR',
    parquetType: 'BYTE_ARRAY (UTF8)',
    nullable: false,
    since: 1,
    doc: 'What is counted, e.g. a video id. Files are sorted by entity_id, then event_time.',
  },
  { name: 'event_type', fieldId: 3, duckdbType: 'VARCHAR', parquetType: 'BYTE_ARRAY (UTF8)', nullable: false, since: 1, doc: 'view, like, share, …' },
  {
    name: 'event_time',
    fieldId: 4,
    duckdbType: 'TIMESTAMPTZ',
    parquetType: UTC_MICROS,
    nullable: false,
    since: 1,
    doc: 'When the event happened (producer clock), an instant. Partitions follow this time (UTC).',
    earlier: NAIVE_MILLIS,
  },
  {
    name: 'value',
    fieldId: 5,
    duckdbType: 'DOUBLE',
    parquetType: 'DOUBLE',
    nullable: false,
    since: 1,
    doc: 'Summed by the aggregates (1 for plain counts).',
  },
  {
    name: 'dims',
    fieldId: 6,
    duckdbType: 'MAP(VARCHAR, VARCHAR)',
    parquetType: 'MAP<UTF8, UTF8>',
    nullable: true,
    since: 1,
    doc: 'Optional dimensions such as country or device.',
  },
  {
    name: 'ingest_time',
    fieldId: 7,
    duckdbType: 'TIMESTAMPTZ',
    parquetType: UTC_MICROS,
    nullable: false,
    since: 1,
    doc: 'When the ingest node accepted the event, an instant.',
    earlier: NAIVE_MILLIS,
  },
  {
    name: 'producer',
    fieldId: 8,
    duckdbType: 'VARCHAR',
    parquetType: 'BYTE_ARRAY (UTF8)',
    nullable: false,
    since: 1,
    doc: 'Producer name from the API key (or "anonymous").',
  },
  {
    name: 'schema_version',
    fieldId: 9,
    duckdbType: 'INTEGER',
    parquetType: 'INT32',
    nullable: false,
    since: 1,
    doc: 'Schema version the row was written with (compaction keeps it).',
  },
  {
    name: 'session_id',
    fieldId: 10,
    duckdbType: 'VARCHAR',
    parquetType: 'BYTE_ARRAY (UTF8)',
    nullable: true,
    since: 2,
    doc: 'Optional client session (since v2): NULL in v1 files, and while ingest has none to write.',
  },
];

/** Columns present in files of a given version. */
export function columnsOf(version: number): ColumnSpec[] {
  return EVENT_COLUMNS.filter((c) => c.since <= version);
}

/** The DuckDB and Parquet type `column` has in files of schema `version` (its current type unless it changed since). */
export function typeIn(column: ColumnSpec, version: number): { duckdbType: string; parquetType: string } {
  const old = column.earlier?.find((e) => version <= e.until);
  return old ? { duckdbType: old.duckdbType, parquetType: old.parquetType } : { duckdbType: column.duckdbType, parquetType: column.parquetType };
}

export interface Partition {
  /** YYYY-MM-DD (UTC) of the event time. */
  dt: string;
  /** 00–23 (UTC) of the event time. */
  hour: string;
}

export function partitionOf(epochMs: number): Partition {
  const iso = new Date(epochMs).toISOString();
  return { dt: iso.slice(0, 10), hour: iso.slice(11, 13) };
}

export const RAW_EVENTS_PREFIX = 'events/';
/** The documented layout of raw batch keys (see rawEventsKey); workers accept manifests only for keys matching it. */
export const RAW_EVENTS_KEY_PATTERN = /^events\/dt=(\d{4}-\d{2}-\d{2})\/hour=(\d{2})\/([A-Za-z0-9_-]+)-([A-Za-z0-9_]+)\.parquet$/;

/**
 * Key of a raw batch: events/dt=YYYY-MM-DD/hour=HH/<node>-<unique>.parquet, partitioned by event time.
 * `unique` is deterministic for a WAL segment, so a replayed segment overwrites instead of duplicating.
 */
export function rawEventsKey(p: Partition, node: string, unique: string): string {
  return `${RAW_EVENTS_PREFIX}dt=${p.dt}/hour=${p.hour}/${node}-${unique}.parquet`;
}

/**
 * The Hive partition columns of the raw layout, in key order (rawEventsKey: `dt=…/hour=…/`), as table definitions
 * declare them: `dt` a date (YYYY-MM-DD, UTC), `hour` an integer 0–23 written with two digits.
 */
export const RAW_PARTITION_COLUMNS = [
  { name: 'dt', kind: 'date', doc: 'Event-time day (UTC), from the key: dt=YYYY-MM-DD.' },
  { name: 'hour', kind: 'hour', doc: 'Event-time hour (UTC, 0–23), from the key: hour=HH.' },
] as const;

export function parseRawEventsKey(key: string): (Partition & { node: string; unique: string }) | undefined {
  const m = RAW_EVENTS_KEY_PATTERN.exec(key);
  return m ? { dt: m[1]!, hour: m[2]!, node: m[3]!, unique: m[4]! } : undefined;
}

/**
 * User metadata (x-amz-meta-*) ingest sets on every raw batch object: its sha256, event count and schema version.
 * With the object's size and key they are everything a batch manifest holds, so a manifest can be rebuilt from the
 * archive alone (`sluice reconcile`, `sluice replay`).
 */
export const RAW_OBJECT_METADATA = { sha256: 'sluice-sha256', eventCount: 'sluice-event-count', schemaVersion: 'sluice-schema-version' } as const;
