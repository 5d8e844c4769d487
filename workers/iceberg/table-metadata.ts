// Iceberg v2 table metadata (the metadata JSON file) of `sluice.events`: the first version, and each next version
// as its base plus one snapshot. Pure: no I/O. Each snapshot's summary records what Sluice committed — the raw batch
// keys an append added (`sluice.batch-keys`) and the compaction a replace stands for (`sluice.compaction-id`) — and
// committers check them before committing, so no batch and no compacted file is ever committed twice.
import { ICEBERG_FORMAT_VERSION } from '../../shared/contracts/iceberg-table.js';
import { PARQUET_SCHEMA_VERSION } from '../../shared/contracts/parquet-schema.js';
import {
  FILE_SORT_ORDER,
  PARTITION_SPECS,
  RAW_SPEC,
  UNSORTED,
  lastColumnId,
  nameMapping,
  tableSchema,
  type IcebergSchema,
  type PartitionSpec,
  type SortOrder,
} from './table-schema.js';

export type Operation = 'append' | 'replace' | 'overwrite';

export interface Snapshot {
  'snapshot-id': number;
  'parent-snapshot-id'?: number;
  'sequence-number': number;
  'timestamp-ms': number;
  'manifest-list': string;
  summary: Record<string, string> & { operation: Operation };
  'schema-id': number;
}

export interface TableMetadata {
  'format-version': 2;
  'table-uuid': string;
  location: string;
  'last-sequence-number': number;
  'last-updated-ms': number;
  'last-column-id': number;
  schemas: IcebergSchema[];
  'current-schema-id': number;
  'partition-specs': PartitionSpec[];
  'default-spec-id': number;
  'last-partition-id': number;
  properties: Record<string, string>;
  'current-snapshot-id'?: number;
  snapshots: Snapshot[];
  'snapshot-log': { 'timestamp-ms': number; 'snapshot-id': number }[];
  'metadata-log': { 'timestamp-ms': number; 'metadata-file': string }[];
  'sort-orders': SortOrder[];
  'default-sort-order-id': number;
  refs: Record<string, { 'snapshot-id': number; type: 'branch' }>;
}

/** Summary keys Sluice adds to its snapshots. */
export const SUMMARY = {
  batchKeys: 'sluice.batch-keys',
  compactionId: 'sluice.compaction-id',
  compactionDay: 'sluice.compaction-day',
} as const;

/** The first version of the table: schema, specs, sort order, name mapping; no snapshot. */
export function newTableMetadata(o: { uuid: string; location: string; nowMs: number }): TableMetadata {
  const schema = tableSchema();
  return {
    'format-version': ICEBERG_FORMAT_VERSION,
    'table-uuid': o.uuid,
    location: o.location,
    'last-sequence-number': 0,
    'last-updated-ms': o.nowMs,
    'last-column-id': lastColumnId(schema),
    schemas: [schema],
    'current-schema-id': schema['schema-id'],
    'partition-specs': [...PARTITION_SPECS],
    'default-spec-id': RAW_SPEC['spec-id'],
    'last-partition-id': Math.max(...PARTITION_SPECS.flatMap((s) => s.fields.map((f) => f['field-id']))),
    properties: {
      'schema.name-mapping.default': JSON.stringify(nameMapping(schema)),
      'write.format.default': 'parquet',
      'write.parquet.compression-codec': 'zstd',
      'sluice.parquet-schema-version': String(PARQUET_SCHEMA_VERSION),
      'sluice.managed-by': 'sluice iceberg commit (files are registered from the archive, never written by engines)',
    },
    snapshots: [],
    'snapshot-log': [],
    'metadata-log': [],
    'sort-orders': [UNSORTED, FILE_SORT_ORDER],
    'default-sort-order-id': FILE_SORT_ORDER['order-id'],
    refs: {},
  };
}

export function currentSnapshot(m: TableMetadata): Snapshot | undefined {
  return m['current-snapshot-id'] === undefined ? undefined : m.snapshots.find((s) => s['snapshot-id'] === m['current-snapshot-id']);
}

/** Every raw batch key any snapshot of the table added (also those a compaction later replaced). */
export function committedBatchKeys(m: TableMetadata): Set<string> {
  const out = new Set<string>();
  for (const s of m.snapshots) for (const k of (s.summary[SUMMARY.batchKeys] ?? '').split('\n')) if (k) out.add(k);
  return out;
}

/** Ids of the compactions the table holds the output of. */
export function committedCompactions(m: TableMetadata): Set<string> {
  return new Set(m.snapshots.map((s) => s.summary[SUMMARY.compactionId]).filter((id): id is string => id !== undefined));
}

/** What a snapshot changed, for its summary (Iceberg's standard keys). */
export interface SnapshotChange {
  operation: Operation;
  addedFiles: number;
  addedRecords: number;
  addedBytes: number;
  deletedFiles: number;
  deletedRecords: number;
  removedBytes: number;
  changedPartitions: number;
  /** Sluice's keys (SUMMARY). */
  extra: Record<string, string>;
}

function summaryOf(c: SnapshotChange, parent: Snapshot | undefined): Snapshot['summary'] {
  const total = (k: string) => Number(parent?.summary[k] ?? 0);
  return {
    operation: c.operation,
    ...(c.addedFiles ? { 'added-data-files': String(c.addedFiles), 'added-records': String(c.addedRecords), 'added-files-size': String(c.addedBytes) } : {}),
    ...(c.deletedFiles
      ? { 'deleted-data-files': String(c.deletedFiles), 'deleted-records': String(c.deletedRecords), 'removed-files-size': String(c.removedBytes) }
      : {}),
    'changed-partition-count': String(c.changedPartitions),
    'total-records': String(total('total-records') + c.addedRecords - c.deletedRecords),
    'total-files-size': String(total('total-files-size') + c.addedBytes - c.removedBytes),
    'total-data-files': String(total('total-data-files') + c.addedFiles - c.deletedFiles),
    'total-delete-files': '0',
    'total-position-deletes': '0',
    'total-equality-deletes': '0',
    ...c.extra,
  };
}

/**
 * The next version: `base` (stored at `baseLocation`) plus the snapshot `snapshotId` with sequence number
 * base's last + 1, whose manifest list is at `manifestList`, made current on the main branch.
 */
export function withSnapshot(
  base: TableMetadata,
  baseLocation: string,
  o: { snapshotId: number; manifestList: string; change: SnapshotChange; nowMs: number },
): TableMetadata {
  const parent = currentSnapshot(base);
  const snapshot: Snapshot = {
    'snapshot-id': o.snapshotId,
    ...(parent ? { 'parent-snapshot-id': parent['snapshot-id'] } : {}),
    'sequence-number': base['last-sequence-number'] + 1,
    'timestamp-ms': o.nowMs,
    'manifest-list': o.manifestList,
    summary: summaryOf(o.change, parent),
    'schema-id': base['current-schema-id'],
  };
  return {
    ...base,
    'last-sequence-number': snapshot['sequence-number'],
    'last-updated-ms': o.nowMs,
    'current-snapshot-id': o.snapshotId,
    snapshots: [...base.snapshots, snapshot],
    'snapshot-log': [...base['snapshot-log'], { 'timestamp-ms': o.nowMs, 'snapshot-id': o.snapshotId }],
    'metadata-log': [...base['metadata-log'], { 'timestamp-ms': base['last-updated-ms'], 'metadata-file': baseLocation }],
    refs: { ...base.refs, main: { 'snapshot-id': o.snapshotId, type: 'branch' } },
  };
}

/** Checks that a metadata file is one this build can extend; throws naming what is not. */
export function checkMetadata(m: unknown, where: string): TableMetadata {
  const t = m as Partial<TableMetadata>;
  if (typeof m !== 'object' || m === null || t['format-version'] !== ICEBERG_FORMAT_VERSION || !Array.isArray(t.snapshots) || !t['table-uuid'])
    throw new Error(`${where} is not Iceberg v${ICEBERG_FORMAT_VERSION} table metadata (format-version, table-uuid, snapshots)`);
  return t as TableMetadata;
}
