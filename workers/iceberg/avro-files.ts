// The Avro files of an Iceberg v2 table — manifests (manifest_entry with its data_file struct) and manifest lists
// (manifest_file) — with the field ids of the table spec on every field, as readers resolve them by id, and the
// key-value metadata each file carries. Encoded and decoded with avsc; the files are written uncompressed (codec
// null), which every Avro reader supports.
import avro from 'avsc';
import type { IcebergSchema, PartitionField, PartitionSpec } from './table-schema.js';

type AvroSchema = Record<string, unknown>;

const optional = (name: string, type: unknown, fieldId: number): AvroSchema => ({ name, type: ['null', type], default: null, 'field-id': fieldId });
const required = (name: string, type: unknown, fieldId: number): AvroSchema => ({ name, type, 'field-id': fieldId });

/** An Iceberg map with non-string keys: an array of key/value records, named k<key id>_v<value id>. */
const intKeyMap = (keyId: number, valueId: number, value: string) => ({
  type: 'array',
  logicalType: 'map',
  items: { type: 'record', name: `k${keyId}_v${valueId}`, fields: [required('key', 'int', keyId), required('value', value, valueId)] },
});

/** Avro type of a partition field's value: day → date, month and hour → int, identity → its source column's type. */
function partitionType(f: PartitionField, schema: IcebergSchema): unknown {
  if (f.transform === 'day') return { type: 'int', logicalType: 'date' };
  if (f.transform !== 'identity') return 'int';
  const source = schema.fields.find((c) => c.id === f['source-id']);
  if (source?.type === 'string' || source?.type === 'int') return source.type;
  throw new Error(`identity partition ${f.name} is of a ${JSON.stringify(source?.type)} column; workers/iceberg/avro-files.ts writes string and int ones`);
}

/** The manifest_entry schema of a manifest written for `spec` of `schema` (its partition struct is the spec's fields). */
export function manifestEntrySchema(spec: PartitionSpec, schema: IcebergSchema): AvroSchema {
  const partition = {
    type: 'record',
    name: 'r102',
    fields: spec.fields.map((f) => optional(f.name, partitionType(f, schema), f['field-id'])),
  };
  return {
    type: 'record',
    name: 'manifest_entry',
    fields: [
      required('status', 'int', 0),
      optional('snapshot_id', 'long', 1),
      optional('sequence_number', 'long', 3),
      optional('file_sequence_number', 'long', 4),
      required(
        'data_file',
        {
          type: 'record',
          name: 'r2',
          fields: [
            required('content', 'int', 134),
            required('file_path', 'string', 100),
            required('file_format', 'string', 101),
            required('partition', partition, 102),
            required('record_count', 'long', 103),
            required('file_size_in_bytes', 'long', 104),
            optional('column_sizes', intKeyMap(117, 118, 'long'), 108),
            optional('value_counts', intKeyMap(119, 120, 'long'), 109),
            optional('null_value_counts', intKeyMap(121, 122, 'long'), 110),
            optional('nan_value_counts', intKeyMap(138, 139, 'long'), 137),
            optional('lower_bounds', intKeyMap(126, 127, 'bytes'), 125),
            optional('upper_bounds', intKeyMap(129, 130, 'bytes'), 128),
            optional('key_metadata', 'bytes', 131),
            optional('split_offsets', { type: 'array', items: 'long', 'element-id': 133 }, 132),
            optional('equality_ids', { type: 'array', items: 'int', 'element-id': 136 }, 135),
            optional('sort_order_id', 'int', 140),
          ],
        },
        2,
      ),
    ],
  };
}

export const MANIFEST_FILE_SCHEMA: AvroSchema = {
  type: 'record',
  name: 'manifest_file',
  fields: [
    required('manifest_path', 'string', 500),
    required('manifest_length', 'long', 501),
    required('partition_spec_id', 'int', 502),
    required('content', 'int', 517),
    required('sequence_number', 'long', 515),
    required('min_sequence_number', 'long', 516),
    required('added_snapshot_id', 'long', 503),
    required('added_files_count', 'int', 504),
    required('existing_files_count', 'int', 505),
    required('deleted_files_count', 'int', 506),
    required('added_rows_count', 'long', 512),
    required('existing_rows_count', 'long', 513),
    required('deleted_rows_count', 'long', 514),
    optional(
      'partitions',
      {
        type: 'array',
        'element-id': 508,
        items: {
          type: 'record',
          name: 'r508',
          fields: [
            required('contains_null', 'boolean', 509),
            optional('contains_nan', 'boolean', 518),
            optional('lower_bound', 'bytes', 510),
            optional('upper_bound', 'bytes', 511),
          ],
        },
      },
      507,
    ),
    optional('key_metadata', 'bytes', 519),
  ],
};

/** manifest_entry.status. */
export const EntryStatus = { EXISTING: 0, ADDED: 1, DELETED: 2 } as const;
export type EntryStatus = (typeof EntryStatus)[keyof typeof EntryStatus];

/** A data file as a manifest holds it (the fields Sluice writes; the rest are null). */
export interface DataFile {
  content: 0;
  file_path: string;
  file_format: 'PARQUET';
  /** Partition field name → value. */
  partition: Record<string, number | string | null>;
  record_count: number;
  file_size_in_bytes: number;
  sort_order_id: number | null;
}

export interface ManifestEntry {
  status: EntryStatus;
  snapshot_id: number | null;
  sequence_number: number | null;
  file_sequence_number: number | null;
  data_file: DataFile;
}

export interface FieldSummary {
  contains_null: boolean;
  contains_nan: boolean | null;
  lower_bound: Buffer | null;
  upper_bound: Buffer | null;
}

export interface ManifestFile {
  manifest_path: string;
  manifest_length: number;
  partition_spec_id: number;
  content: 0;
  sequence_number: number;
  min_sequence_number: number;
  added_snapshot_id: number;
  added_files_count: number;
  existing_files_count: number;
  deleted_files_count: number;
  added_rows_count: number;
  existing_rows_count: number;
  deleted_rows_count: number;
  partitions: FieldSummary[] | null;
  key_metadata: Buffer | null;
}

/** An Avro object container file of `records`, with `metadata` in its header. */
export function encodeAvroFile(schema: AvroSchema, records: readonly object[], metadata: Record<string, string>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const meta = Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, Buffer.from(v, 'utf8')]));
    // The schema object itself (not a parsed type) so its field-id attributes are written to the header as they are.
    // avsc supports header metadata (`metadata`: string → bytes) but its typings do not declare the option.
    const opts = { codec: 'null', metadata: meta } as unknown as ConstructorParameters<typeof avro.streams.BlockEncoder>[1];
    const encoder = new avro.streams.BlockEncoder(schema as avro.Schema, opts);
    const chunks: Buffer[] = [];
    encoder.on('data', (c: Buffer) => chunks.push(c));
    encoder.on('end', () => resolve(Buffer.concat(chunks)));
    encoder.on('error', reject);
    for (const r of records) encoder.write(r);
    encoder.end();
  });
}

/** The records and header metadata of an Avro object container file; throws naming `where` when it is not one. */
export function decodeAvroFile<T>(bytes: Buffer, where: string): Promise<{ records: T[]; metadata: Record<string, string> }> {
  return new Promise((resolve, reject) => {
    const decoder = new avro.streams.BlockDecoder();
    const records: T[] = [];
    let metadata: Record<string, string> = {};
    decoder.on('metadata', (_type: unknown, _codec: string, header: { meta: Record<string, Buffer> }) => {
      metadata = Object.fromEntries(Object.entries(header.meta).map(([k, v]) => [k, v.toString('utf8')]));
    });
    decoder.on('data', (r: T) => records.push(r));
    decoder.on('end', () => resolve({ records, metadata }));
    decoder.on('error', (err: Error) => reject(new Error(`${where} is not a readable Avro file: ${err.message}`)));
    decoder.end(bytes);
  });
}

/** Iceberg's single-value binary form of an int (partition bounds): 4 bytes, little-endian. */
export function intBound(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
}

/** Iceberg's single-value binary form of a partition value: ints as intBound, strings as their UTF-8 bytes. */
export const partitionBound = (v: number | string): Buffer => (typeof v === 'string' ? Buffer.from(v, 'utf8') : intBound(v));
