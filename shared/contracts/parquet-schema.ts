// The archive contract: Parquet schema versions and the Hive-style key layout of the raw bucket.
// Workers, compaction, audits and analysts all read these files; columns are only ever added (as optional).

/** Current schema version written by ingest. */
export const PARQUET_SCHEMA_VERSION = 1;
/** Versions this build can read. A file with another version is a permanent error for workers. */
export const READABLE_SCHEMA_VERSIONS: readonly number[] = [1, 2];

export interface ColumnSpec {
  name: string;
  /** DuckDB type used when writing. */
  duckdbType: string;
  /** Parquet physical/logical type as analysts see it. */
  parquetType: string;
  nullable: boolean;
  since: number;
  doc: string;
}

export const EVENT_COLUMNS: readonly ColumnSpec[] = [
  {
    name: 'event_id',
    duckdbType: 'VARCHAR',
    parquetType: 'BYTE_ARRAY (UTF8)',
    nullable: false,
    since: 1,
    doc: 'Producer idempotency key; unique per event within the dedup window.',
  },
  {
    name: 'entity_id',
    duckdbType: 'VARCHAR',
    parquetType: 'BYTE_ARRAY (UTF8)',
    nullable: false,
    since: 1,
    doc: 'What is counted, e.g. a video id. Files are sorted by entity_id, then event_time.',
  },
  { name: 'event_type', duckdbType: 'VARCHAR', parquetType: 'BYTE_ARRAY (UTF8)', nullable: false, since: 1, doc: 'view, like, share, …' },
  {
    name: 'event_time',
    duckdbType: 'TIMESTAMP_MS',
    parquetType: 'INT64 TIMESTAMP(MILLIS) UTC values',
    nullable: false,
    since: 1,
    doc: 'When the event happened (producer clock, UTC). Partitions follow this time.',
  },
  { name: 'value', duckdbType: 'DOUBLE', parquetType: 'DOUBLE', nullable: false, since: 1, doc: 'Summed by the aggregates (1 for plain counts).' },
  {
    name: 'dims',
    duckdbType: 'MAP(VARCHAR, VARCHAR)',
    parquetType: 'MAP<UTF8, UTF8>',
    nullable: true,
    since: 1,
    doc: 'Optional dimensions such as country or device.',
  },
  {
    name: 'ingest_time',
    duckdbType: 'TIMESTAMP_MS',
    parquetType: 'INT64 TIMESTAMP(MILLIS) UTC values',
    nullable: false,
    since: 1,
    doc: 'When the ingest node accepted the event.',
  },
  {
    name: 'producer',
    duckdbType: 'VARCHAR',
    parquetType: 'BYTE_ARRAY (UTF8)',
    nullable: false,
    since: 1,
    doc: 'Producer name from the API key (or "anonymous").',
  },
  { name: 'schema_version', duckdbType: 'INTEGER', parquetType: 'INT32', nullable: false, since: 1, doc: 'Schema version the row was written with.' },
  {
    name: 'session_id',
    duckdbType: 'VARCHAR',
    parquetType: 'BYTE_ARRAY (UTF8)',
    nullable: true,
    since: 2,
    doc: 'v2: optional client session, absent (NULL) in v1 files.',
  },
];

/** Columns present in files of a given version. */
export function columnsOf(version: number): ColumnSpec[] {
  return EVENT_COLUMNS.filter((c) => c.since <= version);
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
