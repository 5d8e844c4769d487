// The Iceberg view of the archive contract: the table schema (field ids from EVENT_COLUMNS), the name mapping
// that resolves those ids in data files that carry no Parquet field ids, the partition specs and the sort order.
// Spec 0 partitions raw hourly batches by day(event_time) and hour(event_time) — the dt=/hour= of their keys;
// spec 1 partitions compacted day files (which span every hour of their day) by day(event_time) only.
import { EVENT_COLUMNS, type ColumnSpec } from '../../shared/contracts/parquet-schema.js';

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
  transform: 'day' | 'hour';
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

/** Iceberg type of each DuckDB type the contract writes (timestamps: instants, microseconds). */
function icebergType(c: ColumnSpec): IcebergType {
  switch (c.duckdbType) {
    case 'VARCHAR':
      return 'string';
    case 'DOUBLE':
      return 'double';
    case 'INTEGER':
      return 'int';
    case 'TIMESTAMPTZ':
      return 'timestamptz';
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

/** Highest field id of the schema, nested ids included (metadata's last-column-id). */
export function lastColumnId(schema: IcebergSchema): number {
  let max = 0;
  for (const f of schema.fields) {
    max = Math.max(max, f.id);
    if (typeof f.type === 'object') max = Math.max(max, f.type['key-id'], f.type['value-id']);
  }
  return max;
}

/** schema.name-mapping.default: column names in the files → field ids (the files carry no Parquet field ids). */
export function nameMapping(schema: IcebergSchema): NameMapping[] {
  return schema.fields.map((f) => ({
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

/** A partition tuple: field id → value (days or hours since 1970-01-01 UTC). */
export type PartitionValues = Record<number, number>;

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

/** YYYY-MM-DD of a day partition value. */
export const dayOf = (days: number): string => new Date(days * DAY_MS).toISOString().slice(0, 10);
