// Table definitions of the raw archive for engines that read its Hive layout directly (DuckDB, Athena, Spark,
// BigQuery), generated from the archive contract: the columns of EVENT_COLUMNS with their current types and docs,
// and the partition columns of the raw key layout (rawEventsKey). `sluice schema --format <engine>` prints them; a
// column or partition added to the contract appears in every definition, and a type no engine mapping knows is an
// error here, not a silently wrong table.
import { EVENT_COLUMNS, PARQUET_SCHEMA_VERSION, RAW_EVENTS_PREFIX, RAW_PARTITION_COLUMNS, rawEventsKey, type ColumnSpec } from './parquet-schema.js';

export const DDL_FORMATS = ['duckdb', 'athena', 'spark', 'bigquery'] as const;
export type DdlFormat = (typeof DDL_FORMATS)[number];

/** Table name each format uses unless told otherwise (BigQuery needs a dataset). */
export const DEFAULT_TABLE: Readonly<Record<DdlFormat, string>> = {
  duckdb: 'events',
  athena: 'sluice_events',
  spark: 'sluice_events',
  bigquery: 'sluice.events',
};

export interface DdlOptions {
  /** Folder of the raw layout, ending in "/": e.g. s3://sluice-raw/events/ (s3a:// for Spark on Hadoop). */
  location: string;
  /** Table name, optionally qualified (db.table, dataset.table, project.dataset.table). */
  table?: string;
  /** BigQuery only: the connection (`region.name`) through which BigQuery Omni reads s3:// locations. */
  connection?: string;
  /** The columns to define (default: every column of the current schema version). */
  columns?: readonly Pick<ColumnSpec, 'name' | 'duckdbType' | 'doc'>[];
}

/** Engine types of each DuckDB type the contract writes. */
const COLUMN_TYPES: Readonly<Record<string, Readonly<Record<DdlFormat, string>>>> = {
  VARCHAR: { duckdb: 'VARCHAR', athena: 'string', spark: 'STRING', bigquery: 'STRING' },
  DOUBLE: { duckdb: 'DOUBLE', athena: 'double', spark: 'DOUBLE', bigquery: 'FLOAT64' },
  INTEGER: { duckdb: 'INTEGER', athena: 'int', spark: 'INT', bigquery: 'INT64' },
  // An instant; Athena's and Spark's TIMESTAMP read Parquet TIMESTAMP(MILLIS|MICROS) as UTC whatever the flag.
  TIMESTAMPTZ: { duckdb: 'TIMESTAMPTZ', athena: 'timestamp', spark: 'TIMESTAMP', bigquery: 'TIMESTAMP' },
  // BigQuery has no map type: it reads a Parquet MAP as a record holding the repeated key_value pairs.
  'MAP(VARCHAR, VARCHAR)': {
    duckdb: 'MAP(VARCHAR, VARCHAR)',
    athena: 'map<string,string>',
    spark: 'MAP<STRING, STRING>',
    bigquery: 'STRUCT<key_value ARRAY<STRUCT<key STRING, value STRING>>>',
  },
};

/** Engine types of the partition columns: the day as a date (Athena's date projection wants a string column). */
const PARTITION_TYPES: Readonly<Record<(typeof RAW_PARTITION_COLUMNS)[number]['kind'], Readonly<Record<DdlFormat, string>>>> = {
  date: { duckdb: 'DATE', athena: 'string', spark: 'DATE', bigquery: 'DATE' },
  hour: { duckdb: 'INTEGER', athena: 'int', spark: 'INT', bigquery: 'INT64' },
};

/** The partition folders of a raw key, `name=value` segment by segment, read from rawEventsKey itself. */
function keyPartitionNames(): string[] {
  const key = rawEventsKey({ dt: '2000-01-01', hour: '00' }, 'n', 'u');
  return key
    .slice(RAW_EVENTS_PREFIX.length)
    .split('/')
    .slice(0, -1)
    .map((segment) => segment.split('=')[0]!);
}

/** The partition columns, checked against the key layout: a layout change must be reflected in RAW_PARTITION_COLUMNS. */
function partitionColumns(): typeof RAW_PARTITION_COLUMNS {
  const names = keyPartitionNames();
  const declared = RAW_PARTITION_COLUMNS.map((p) => p.name);
  if (names.join('/') !== declared.join('/'))
    throw new Error(
      `the raw key layout partitions by ${names.join(', ')} but RAW_PARTITION_COLUMNS declares ${declared.join(', ')}: update shared/contracts/parquet-schema.ts`,
    );
  return RAW_PARTITION_COLUMNS;
}

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_-]*){0,2}$/;
/** A URI (s3://, s3a://, gs://, file://) or an absolute local path, ending in "/", without quotes or blanks. */
const LOCATION = /^(?:[a-z][a-z0-9+.-]*:\/\/|\/)[^\s'"`\\]*\/$/;

function typeOf(column: Pick<ColumnSpec, 'name' | 'duckdbType'>, format: DdlFormat): string {
  const t = COLUMN_TYPES[column.duckdbType]?.[format];
  if (!t)
    throw new Error(
      `column ${column.name} has DuckDB type ${column.duckdbType}, which the ${format} definition cannot map: add it to COLUMN_TYPES in shared/contracts/table-ddl.ts`,
    );
  return t;
}

/** Single-quoted literal: doubled quotes for DuckDB, backslash escapes for Hive (Athena), Spark SQL and BigQuery. */
function literal(s: string, format: DdlFormat): string {
  if (format === 'duckdb') return `'${s.replaceAll("'", "''")}'`;
  return `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

/** A one-line SQL comment (newlines would end it early). */
const lineComment = (s: string) => `-- ${s.replace(/\s+/g, ' ')}`;

function header(format: DdlFormat, location: string): string[] {
  return [
    lineComment(
      `Sluice raw event archive, Parquet schema v${PARQUET_SCHEMA_VERSION}, Hive layout under ${location} (partitions ${RAW_PARTITION_COLUMNS.map((p) => p.name).join(', ')}).`,
    ),
    lineComment(`Generated by \`sluice schema --format ${format}\` from shared/contracts/parquet-schema.ts; do not edit by hand.`),
    lineComment(
      'Files of schema v1/v2 store event_time and ingest_time as TIMESTAMP(MILLIS) UTC wall-clock values without the UTC flag; v3 files as instants (MICROS, UTC). Count DISTINCT event_id.',
    ),
  ];
}

function duckdb(table: string, location: string, columns: NonNullable<DdlOptions['columns']>): string {
  const parts = partitionColumns();
  const glob = `${location}${parts.map((p) => `${p.name}=*`).join('/')}/*.parquet`;
  const select = [
    ...columns.map((c) => ({ expr: `${c.name}::${typeOf(c, 'duckdb')} AS ${c.name}`, doc: c.doc })),
    ...parts.map((p) => ({ expr: `${p.name}::${PARTITION_TYPES[p.kind].duckdb} AS ${p.name}`, doc: p.doc })),
  ];
  const hiveTypes = parts.map((p) => `${literal(p.name, 'duckdb')}: ${PARTITION_TYPES[p.kind].duckdb}`).join(', ');
  return [
    ...header('duckdb', location),
    lineComment('v1/v2 timestamps become instants by a cast in the session time zone: keep it UTC while reading.'),
    "SET TimeZone = 'UTC';",
    `CREATE OR REPLACE VIEW ${table} AS`,
    'SELECT',
    ...select.map((s, i) => `  ${s.expr}${i < select.length - 1 ? ',' : ''} ${lineComment(s.doc)}`),
    `FROM read_parquet(${literal(glob, 'duckdb')}, hive_partitioning = true, union_by_name = true, hive_types = {${hiveTypes}});`,
    '',
  ].join('\n');
}

function athena(table: string, location: string, columns: NonNullable<DdlOptions['columns']>): string {
  const parts = partitionColumns();
  const col = (name: string, type: string, doc: string) => `\`${name}\` ${type} COMMENT ${literal(doc, 'athena')}`;
  const projection: string[] = ["'projection.enabled' = 'true'"];
  for (const p of parts) {
    if (p.kind === 'date')
      projection.push(
        `'projection.${p.name}.type' = 'date'`,
        `'projection.${p.name}.format' = 'yyyy-MM-dd'`,
        `'projection.${p.name}.range' = '2020-01-01,NOW'`,
        `'projection.${p.name}.interval' = '1'`,
        `'projection.${p.name}.interval.unit' = 'DAYS'`,
      );
    else projection.push(`'projection.${p.name}.type' = 'integer'`, `'projection.${p.name}.range' = '0,23'`, `'projection.${p.name}.digits' = '2'`);
  }
  projection.push(`'storage.location.template' = ${literal(`${location}${parts.map((p) => `${p.name}=\${${p.name}}`).join('/')}/`, 'athena')}`);
  return [
    ...header('athena', location),
    `CREATE EXTERNAL TABLE IF NOT EXISTS ${table} (`,
    columns.map((c) => `  ${col(c.name, typeOf(c, 'athena'), c.doc)}`).join(',\n'),
    ')',
    `PARTITIONED BY (${parts.map((p) => col(p.name, PARTITION_TYPES[p.kind].athena, p.doc)).join(', ')})`,
    'STORED AS PARQUET',
    `LOCATION ${literal(location, 'athena')}`,
    'TBLPROPERTIES (',
    projection.map((p) => `  ${p}`).join(',\n'),
    ');',
    '',
  ].join('\n');
}

function spark(table: string, location: string, columns: NonNullable<DdlOptions['columns']>): string {
  const parts = partitionColumns();
  const defs = [
    ...columns.map((c) => `  ${c.name} ${typeOf(c, 'spark')} COMMENT ${literal(c.doc, 'spark')}`),
    ...parts.map((p) => `  ${p.name} ${PARTITION_TYPES[p.kind].spark} COMMENT ${literal(p.doc, 'spark')}`),
  ];
  return [
    ...header('spark', location),
    lineComment(`New hours appear after: MSCK REPAIR TABLE ${table};`),
    `CREATE TABLE IF NOT EXISTS ${table} (`,
    defs.join(',\n'),
    ')',
    'USING parquet',
    `PARTITIONED BY (${parts.map((p) => p.name).join(', ')})`,
    `LOCATION ${literal(location, 'spark')};`,
    `MSCK REPAIR TABLE ${table};`,
    '',
  ].join('\n');
}

function bigquery(table: string, location: string, columns: NonNullable<DdlOptions['columns']>, connection: string | undefined): string {
  const parts = partitionColumns();
  if (location.startsWith('s3://') && !connection)
    throw new Error(`BigQuery reads ${location} only through a BigQuery Omni connection to AWS: pass its name, e.g. --connection aws-us-east-1.sluice`);
  if (connection !== undefined && !/^[A-Za-z0-9_.-]+$/.test(connection))
    throw new Error(`the BigQuery connection must be a name like aws-us-east-1.sluice (letters, digits, _ . -), got ${JSON.stringify(connection)}`);
  const col = (name: string, type: string, doc: string) => `${name} ${type} OPTIONS (description = ${literal(doc, 'bigquery')})`;
  return [
    ...header('bigquery', location),
    `CREATE EXTERNAL TABLE IF NOT EXISTS \`${table}\` (`,
    columns.map((c) => `  ${col(c.name, typeOf(c, 'bigquery'), c.doc)}`).join(',\n'),
    ')',
    `WITH PARTITION COLUMNS (${parts.map((p) => `${p.name} ${PARTITION_TYPES[p.kind].bigquery}`).join(', ')})`,
    ...(connection ? [`WITH CONNECTION \`${connection}\``] : []),
    'OPTIONS (',
    "  format = 'PARQUET',",
    `  uris = [${literal(`${location}*`, 'bigquery')}],`,
    `  hive_partition_uri_prefix = ${literal(location.replace(/\/$/, ''), 'bigquery')},`,
    '  require_hive_partition_filter = false',
    ');',
    '',
  ].join('\n');
}

/** Parses a --format value, or throws naming the formats. */
export function parseDdlFormat(raw: string): DdlFormat {
  if ((DDL_FORMATS as readonly string[]).includes(raw)) return raw as DdlFormat;
  throw new Error(`--format must be one of ${DDL_FORMATS.join(', ')}, got ${JSON.stringify(raw)}`);
}

/** The table definition of the raw archive for `format`. Throws on a bad table name, location or connection. */
export function tableDdl(format: DdlFormat, opts: DdlOptions): string {
  const table = opts.table ?? DEFAULT_TABLE[format];
  if (!TABLE_NAME.test(table)) throw new Error(`the table name must be letters, digits and _ (optionally qualified as db.table), got ${JSON.stringify(table)}`);
  if (!LOCATION.test(opts.location))
    throw new Error(
      `the location must be the raw layout's folder as a URI or absolute path ending in "/", e.g. s3://sluice-raw/events/, got ${JSON.stringify(opts.location)}`,
    );
  const columns = opts.columns ?? EVENT_COLUMNS;
  switch (format) {
    case 'duckdb':
      return duckdb(table, opts.location, columns);
    case 'athena':
      return athena(table, opts.location, columns);
    case 'spark':
      return spark(table, opts.location, columns);
    case 'bigquery':
      return bigquery(table, opts.location, columns, opts.connection);
  }
}
