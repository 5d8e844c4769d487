// The Avro files a new snapshot of an Iceberg table writes before its metadata: its manifests (entries with the
// table's current schema and the partition spec in the header, summarised for the manifest list) and its manifest
// list. Each goes under a new unique name in the table's metadata folder, so a lost or crashed attempt overwrites
// nothing; the maintenance deletes what no kept version references.
import { randomUUID } from 'node:crypto';
import { MANIFEST_FILE_SCHEMA, encodeAvroFile, manifestEntrySchema, partitionBound, type ManifestEntry, type ManifestFile } from './avro-files.js';
import type { TableFiles } from './table-files.js';
import { currentSnapshot, type TableMetadata } from './table-metadata.js';
import type { PartitionSpec } from './table-schema.js';

/** A manifest to write for the new snapshot. */
export interface NewManifest {
  spec: PartitionSpec;
  entries: ManifestEntry[];
  /** Extra key-value metadata for the manifest's header (Sluice's own keys; readers ignore them). */
  header?: Record<string, string>;
}

/** The snapshot a file is written for: its id and sequence number. */
export interface SnapshotIds {
  snapshotId: number;
  sequence: number;
}

/**
 * Writes manifest `m` (the `index`-th of the new snapshot) with the current schema of `meta`, and answers the
 * manifest-list entry for it: counts of files and rows by status, the sequence numbers, the partition bounds.
 */
export async function writeManifest(files: TableFiles, meta: TableMetadata, m: NewManifest, at: SnapshotIds, index: number): Promise<ManifestFile> {
  const { snapshotId, sequence } = at;
  const schema = meta.schemas.find((s) => s['schema-id'] === meta['current-schema-id'])!;
  const bytes = await encodeAvroFile(manifestEntrySchema(m.spec, schema), m.entries, {
    schema: JSON.stringify(schema),
    'schema-id': String(schema['schema-id']),
    'partition-spec': JSON.stringify(m.spec.fields),
    'partition-spec-id': String(m.spec['spec-id']),
    'format-version': '2',
    content: 'data',
    ...m.header,
  });
  const path = await files.put(`${files.layout.metadataPrefix}${randomUUID()}-m${index}.avro`, bytes, 'application/octet-stream');
  const count = (status: number) => m.entries.filter((e) => e.status === status);
  const rows = (es: ManifestEntry[]) => es.reduce((n, e) => n + e.data_file.record_count, 0);
  const [existing, added, deleted] = [count(0), count(1), count(2)];
  const live = [...existing, ...added];
  const seqs = live.map((e) => e.sequence_number ?? sequence);
  return {
    manifest_path: path,
    manifest_length: bytes.length,
    partition_spec_id: m.spec['spec-id'],
    content: 0,
    sequence_number: sequence,
    min_sequence_number: seqs.length ? Math.min(...seqs) : sequence,
    added_snapshot_id: snapshotId,
    added_files_count: added.length,
    existing_files_count: existing.length,
    deleted_files_count: deleted.length,
    added_rows_count: rows(added),
    existing_rows_count: rows(existing),
    deleted_rows_count: rows(deleted),
    partitions: m.spec.fields.map((f) => {
      const values = m.entries.map((e) => e.data_file.partition[f.name]).filter((v): v is number | string => v !== null && v !== undefined);
      const sorted = [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return {
        contains_null: m.entries.some((e) => e.data_file.partition[f.name] == null),
        contains_nan: false,
        lower_bound: sorted.length ? partitionBound(sorted[0]!) : null,
        upper_bound: sorted.length ? partitionBound(sorted[sorted.length - 1]!) : null,
      };
    }),
    key_metadata: null,
  };
}

/**
 * Writes the manifest list of a new snapshot on `base` (commit attempt `attempt`) naming `manifests`; answers its
 * location.
 */
export async function writeManifestList(files: TableFiles, base: TableMetadata, manifests: ManifestFile[], at: SnapshotIds, attempt: number): Promise<string> {
  const { snapshotId, sequence } = at;
  const listKey = `${files.layout.metadataPrefix}snap-${snapshotId}-${attempt}-${randomUUID()}.avro`;
  const list = await encodeAvroFile(MANIFEST_FILE_SCHEMA, manifests, {
    'snapshot-id': String(snapshotId),
    'parent-snapshot-id': String(currentSnapshot(base)?.['snapshot-id'] ?? 'null'),
    'sequence-number': String(sequence),
    'format-version': '2',
  });
  return files.put(listKey, list, 'application/octet-stream');
}
