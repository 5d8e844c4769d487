// The Iceberg view of the file contracts: the table schemas (events: field ids from EVENT_COLUMNS; rollups: the
// fixed ids of ROLLUP_FIELD_IDS), the name mapping that resolves those ids in data files that carry no Parquet field
// ids, the partition specs and the sort orders.
// events:  spec 0 partitions raw hourly batches by day(event_time) and hour(event_time) — the dt=/hour= of their
//          keys; spec 1 partitions compacted day files (which span every hour of their day) by day(event_time) only.
// rollups: spec 0 holds the hourly files (one per day) by resolution and day(period_start), spec 1 the daily files
//          (one per month) by resolution and month(period_start). `resolution` is not a column of the files: readers
//          take it from the identity partition (the Iceberg spec's rule for fields a data file lacks).
import { ROLLUP_COLUMNS, type RollupResolution } from '../../shared/contracts/cold-layout.js';
import { EVENT_COLUMNS, PARQUET_SCHEMA_VERSION, type ColumnSpec } from '../../shared/contracts/parquet-schema.js';

export type IcebergType = string | { type: 'map'; 'key-id': number; key: string; 'value-id': number; value: string; 'value-required': boolean };

export interface IcebergField {
  id: number;
  name: string;
  required: boolean;
  type: IcebergType;
  doc?: string;
}

export interface IcebergSchema {
  type: 'struct';
  'schema-id': number;
  fields: IcebergField[];
}

export interface PartitionField {
  name: string;
  transform: 'identity' | 'month' | 'day' | 'hour';
  'source-id': number;
  'field-id': number;
}

export interface PartitionSpec {
  'spec-id': number;
  fields: PartitionField[];
}

export interface SortOrder {
  'order-id': number;
  fields: { transform: 'identity'; 'source-id': number; direction: 'asc' | 'desc'; 'null-order': 'nulls-first' | 'nulls-last' }[];
}

export interface NameMapping {
  'field-id': number;
  names: string[];
  fields?: NameMapping[];
}

/** Ids of the map key and value of `dims`: after every top-level column id (EVENT_COLUMNS ids are 1–10). */
const MAP_IDS: Readonly<Record<string, { key: number; value: number }>> = { dims: { key: 11, value: 12 } };

/** Iceberg type of each DuckDB type the contracts write (TIMESTAMPTZ: instants; TIMESTAMP_MS: UTC wall clock). */
function icebergType(c: Pick<ColumnSpec, 'name' | 'duckdbType'>): IcebergType {
  switch (c.duckdbType) {
    case 'VARCHAR':
      return 'string';
    case 'DOUBLE':
      return 'double';
    case 'INTEGER':
      return 'int';
    case 'BIGINT':
      return 'long';
    case 'TIMESTAMPTZ':
      return 'timestamptz';
    case 'TIMESTAMP_MS':
      return 'timestamp';
    case 'MAP(VARCHAR, VARCHAR)': {
      const ids = MAP_IDS[c.name];
      if (!ids) throw new Error(`map column ${c.name} has no key/value field ids: add them to MAP_IDS in workers/iceberg/table-schema.ts`);
      return { type: 'map', 'key-id': ids.key, key: 'string', 'value-id': ids.value, value: 'string', 'value-required': false };
    }
    default:
      throw new Error(`column ${c.name} has DuckDB type ${c.duckdbType}, which has no Iceberg type in workers/iceberg/table-schema.ts`);
  }
}

/**
 * The table schema. Every field is optional: the files are written with OPTIONAL columns, and the archive may hold
 * rows from other writers that break the event contract (the workers quarantine them); a required field would make
 * engines fail on such a row instead of reading a NULL.
 */
export function tableSchema(columns: readonly ColumnSpec[] = EVENT_COLUMNS): IcebergSchema {
  return {
    type: 'struct',
    'schema-id': 0,
    fields: columns.map((c) => ({ id: c.fieldId, name: c.name, required: false, type: icebergType(c), doc: c.doc })),
  };
}

/**
 * Field ids of the rollup columns, fixed per name: ids are never reused or moved, so a column added to
 * ROLLUP_COLUMNS takes the next free id here. `resolution` comes from the partition, not the files.
 */
export const ROLLUP_FIELD_IDS: Readonly<Record<string, number>> = {
  entity_id: 1,
  event_type: 2,
  period_start: 3,
  count: 4,
  sum: 5,
  min: 6,
  max: 7,
  resolution: 8,
};

/** The rollups table schema: ROLLUP_COLUMNS, then `resolution` ('1h' or '1d'). All optional, as for events. */
export function rollupsSchema(): IcebergSchema {
  const id = (name: string): number => {
    const fieldId = ROLLUP_FIELD_IDS[name];
    if (fieldId === undefined) throw new Error(`rollup column ${name} has no Iceberg field id: add it to ROLLUP_FIELD_IDS in workers/iceberg/table-schema.ts`);
    return fieldId;
  };
  return {
    type: 'struct',
    'schema-id': 0,
    fields: [
      ...ROLLUP_COLUMNS.map((c) => ({ id: id(c.name), name: c.name, required: false, type: icebergType(c), doc: c.doc })),
      {
        id: id('resolution'),
        name: 'resolution',
        required: false,
        type: 'string',
        doc: "1h (hourly aggregates) or 1d (daily): the rollup file's folder, from the table's identity partition.",
      },
    ],
  };
}

/** Highest field id of the schema, nested ids included (metadata's last-column-id). */
export function lastColumnId(schema: IcebergSchema): number {
  let max = 0;
  for (const f of schema.fields) {
    max = Math.max(max, f.id);
    if (typeof f.type === 'object') max = Math.max(max, f.type['key-id'], f.type['value-id']);
  }
  return max;
}

/**
 * schema.name-mapping.default: column names in the files → field ids (the files carry no Parquet field ids).
 * Fields the files never hold (`notInFiles`, filled from identity partitions) are left out.
 */
export function nameMapping(schema: IcebergSchema, notInFiles: readonly string[] = []): NameMapping[] {
  return schema.fields
    .filter((f) => !notInFiles.includes(f.name))
    .map((f) => ({
      'field-id': f.id,
      names: [f.name],
      ...(typeof f.type === 'object'
        ? {
            fields: [
              { 'field-id': f.type['key-id'], names: ['key'] },
              { 'field-id': f.type['value-id'], names: ['value'] },
            ],
          }
        : {}),
    }));
}

const EVENT_TIME_ID = EVENT_COLUMNS.find((c) => c.name === 'event_time')!.fieldId;
const idOf = (name: string): number => EVENT_COLUMNS.find((c) => c.name === name)!.fieldId;

/** Partition field ids: the day field keeps its id in both specs (the same transform of the same column). */
export const DAY_FIELD: PartitionField = { name: 'event_time_day', transform: 'day', 'source-id': EVENT_TIME_ID, 'field-id': 1000 };
export const HOUR_FIELD: PartitionField = { name: 'event_time_hour', transform: 'hour', 'source-id': EVENT_TIME_ID, 'field-id': 1001 };

/** Spec of raw hourly batches (events/dt=D/hour=H/…). */
export const RAW_SPEC: PartitionSpec = { 'spec-id': 0, fields: [DAY_FIELD, HOUR_FIELD] };
/** Spec of compacted day files (events/dt=D/compacted-….parquet in the cold bucket). */
export const DAY_SPEC: PartitionSpec = { 'spec-id': 1, fields: [DAY_FIELD] };
export const PARTITION_SPECS: readonly PartitionSpec[] = [RAW_SPEC, DAY_SPEC];

/** The files' sort order (contracts/parquet-schema.ts): entity_id, event_time, event_id; the engine sorts NULLs last. */
export const FILE_SORT_ORDER: SortOrder = {
  'order-id': 1,
  fields: ['entity_id', 'event_time', 'event_id'].map((name) => ({
    transform: 'identity' as const,
    'source-id': idOf(name),
    direction: 'asc' as const,
    'null-order': 'nulls-last' as const,
  })),
};
export const UNSORTED: SortOrder = { 'order-id': 0, fields: [] };

/** A partition tuple: field id → value (days, months or hours since 1970-01-01 UTC; identity values as they are). */
export type PartitionValues = Record<number, number | string>;

const DAY_MS = 86_400_000;

/** Partition of a raw batch of event-time day `dt` (YYYY-MM-DD) and hour `hour` (00–23), in spec 0. */
export function rawPartition(dt: string, hour: string): PartitionValues {
  const day = Date.parse(`${dt}T00:00:00Z`) / DAY_MS;
  return { [DAY_FIELD['field-id']]: day, [HOUR_FIELD['field-id']]: day * 24 + Number(hour) };
}

/** Partition of a compacted day file of `dt`, in spec 1. */
export function dayPartition(dt: string): PartitionValues {
  return { [DAY_FIELD['field-id']]: Date.parse(`${dt}T00:00:00Z`) / DAY_MS };
}

// ---- rollups ---------------------------------------------------------------------------------

const ROLLUP_PERIOD_ID = ROLLUP_FIELD_IDS.period_start!;
export const RESOLUTION_FIELD: PartitionField = { name: 'resolution', transform: 'identity', 'source-id': ROLLUP_FIELD_IDS.resolution!, 'field-id': 1000 };
export const PERIOD_DAY_FIELD: PartitionField = { name: 'period_start_day', transform: 'day', 'source-id': ROLLUP_PERIOD_ID, 'field-id': 1001 };
export const PERIOD_MONTH_FIELD: PartitionField = { name: 'period_start_month', transform: 'month', 'source-id': ROLLUP_PERIOD_ID, 'field-id': 1002 };
/** Spec of hourly rollup files (rollups/1h/dt=YYYY-MM-DD/part.parquet: the hours of one day). */
export const ROLLUP_1H_SPEC: PartitionSpec = { 'spec-id': 0, fields: [RESOLUTION_FIELD, PERIOD_DAY_FIELD] };
/** Spec of daily rollup files (rollups/1d/dt=YYYY-MM/part.parquet: the days of one month). */
export const ROLLUP_1D_SPEC: PartitionSpec = { 'spec-id': 1, fields: [RESOLUTION_FIELD, PERIOD_MONTH_FIELD] };
export const ROLLUP_SPECS: Readonly<Record<RollupResolution, PartitionSpec>> = { '1h': ROLLUP_1H_SPEC, '1d': ROLLUP_1D_SPEC };

/** The rollup files' sort order (contracts/cold-layout.ts ROLLUP_ORDER): entity_id, event_type, period_start. */
export const ROLLUP_SORT_ORDER: SortOrder = {
  'order-id': 1,
  fields: ['entity_id', 'event_type', 'period_start'].map((name) => ({
    transform: 'identity' as const,
    'source-id': ROLLUP_FIELD_IDS[name]!,
    direction: 'asc' as const,
    'null-order': 'nulls-last' as const,
  })),
};

/** Partition of the rollup file of `res` whose periods start at `startMs` (its UTC day for 1h, month for 1d). */
export function rollupPartition(res: RollupResolution, startMs: number): PartitionValues {
  const d = new Date(startMs);
  return res === '1h'
    ? { [RESOLUTION_FIELD['field-id']]: res, [PERIOD_DAY_FIELD['field-id']]: Math.floor(startMs / DAY_MS) }
    : { [RESOLUTION_FIELD['field-id']]: res, [PERIOD_MONTH_FIELD['field-id']]: (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth() };
}

// ---- the tables ------------------------------------------------------------------------------

/** What a table is made of: its schema, specs, sort orders and the properties of its first version. */
export interface TableDefinition {
  name: 'events' | 'rollups';
  schema: IcebergSchema;
  specs: readonly PartitionSpec[];
  defaultSpecId: number;
  sortOrders: readonly SortOrder[];
  defaultSortOrderId: number;
  properties: Record<string, string>;
}

export function eventsTable(): TableDefinition {
  const schema = tableSchema();
  return {
    name: 'events',
    schema,
    specs: PARTITION_SPECS,
    defaultSpecId: RAW_SPEC['spec-id'],
    sortOrders: [UNSORTED, FILE_SORT_ORDER],
    defaultSortOrderId: FILE_SORT_ORDER['order-id'],
    properties: {
      'schema.name-mapping.default': JSON.stringify(nameMapping(schema)),
      'sluice.parquet-schema-version': String(PARQUET_SCHEMA_VERSION),
      'sluice.managed-by': 'sluice iceberg commit (files are registered from the archive, never written by engines)',
    },
  };
}

export function rollupsTable(): TableDefinition {
  const schema = rollupsSchema();
  return {
    name: 'rollups',
    schema,
    specs: [ROLLUP_1H_SPEC, ROLLUP_1D_SPEC],
    defaultSpecId: ROLLUP_1H_SPEC['spec-id'],
    sortOrders: [UNSORTED, ROLLUP_SORT_ORDER],
    defaultSortOrderId: ROLLUP_SORT_ORDER['order-id'],
    properties: {
      'schema.name-mapping.default': JSON.stringify(nameMapping(schema, ['resolution'])),
      'sluice.managed-by': 'sluice iceberg commit (rollup files are registered from the cold bucket, never written by engines)',
    },
  };
}

/** YYYY-MM-DD of a day partition value. */
export const dayOf = (days: number): string => new Date(days * DAY_MS).toISOString().slice(0, 10);
