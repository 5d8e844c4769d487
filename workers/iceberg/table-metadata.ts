// Iceberg v2 table metadata (the metadata JSON file) of Sluice's tables: the first version, each next version as its
// base plus one snapshot, and the version snapshot expiry makes (its base minus the expired snapshots). Pure: no I/O.
// The metadata log keeps the previous `write.metadata.previous-versions-max` metadata files; older ones drop out of
// it (and are deleted by the maintenance, workers/iceberg/maintenance.ts). What the table holds is read from its
// current snapshot's manifests, never from summaries, so expiring snapshots loses no record of what was committed.
import { DEFAULT_PREVIOUS_VERSIONS_MAX, ICEBERG_FORMAT_VERSION, MAINTENANCE_PROPERTIES } from '../../shared/contracts/iceberg-table.js';
import { lastColumnId, type IcebergSchema, type PartitionSpec, type SortOrder, type TableDefinition } from './table-schema.js';

export type Operation = 'append' | 'replace' | 'overwrite' | 'delete';

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

/** Summary keys Sluice adds to its snapshots (for people reading the history; no check depends on them). */
export const SUMMARY = {
  compactionId: 'sluice.compaction-id',
  compactionDay: 'sluice.compaction-day',
} as const;

/** The first version of the table `def`: schema, specs, sort orders, properties; no snapshot. */
export function newTableMetadata(def: TableDefinition, o: { uuid: string; location: string; nowMs: number }): TableMetadata {
  return {
    'format-version': ICEBERG_FORMAT_VERSION,
    'table-uuid': o.uuid,
    location: o.location,
    'last-sequence-number': 0,
    'last-updated-ms': o.nowMs,
    'last-column-id': lastColumnId(def.schema),
    schemas: [def.schema],
    'current-schema-id': def.schema['schema-id'],
    'partition-specs': [...def.specs],
    'default-spec-id': def.defaultSpecId,
    'last-partition-id': Math.max(...def.specs.flatMap((s) => s.fields.map((f) => f['field-id']))),
    properties: {
      'write.format.default': 'parquet',
      'write.parquet.compression-codec': 'zstd',
      [MAINTENANCE_PROPERTIES.previousVersionsMax]: String(DEFAULT_PREVIOUS_VERSIONS_MAX),
      [MAINTENANCE_PROPERTIES.deleteAfterCommit]: 'true',
      ...def.properties,
    },
    snapshots: [],
    'snapshot-log': [],
    'metadata-log': [],
    'sort-orders': [...def.sortOrders],
    'default-sort-order-id': def.defaultSortOrderId,
    refs: {},
  };
}

export function currentSnapshot(m: TableMetadata): Snapshot | undefined {
  return m['current-snapshot-id'] === undefined ? undefined : m.snapshots.find((s) => s['snapshot-id'] === m['current-snapshot-id']);
}

/** How many previous metadata files the metadata log keeps (write.metadata.previous-versions-max). */
export function previousVersionsMax(m: TableMetadata): number {
  const n = Number(m.properties[MAINTENANCE_PROPERTIES.previousVersionsMax]);
  return Number.isInteger(n) && n >= 1 ? n : DEFAULT_PREVIOUS_VERSIONS_MAX;
}

/** The metadata log of the version after `base` (stored at `baseLocation`): base's log plus base, the newest `max`. */
function nextMetadataLog(base: TableMetadata, baseLocation: string, max: number): TableMetadata['metadata-log'] {
  return [...base['metadata-log'], { 'timestamp-ms': base['last-updated-ms'], 'metadata-file': baseLocation }].slice(-max);
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
    'metadata-log': nextMetadataLog(base, baseLocation, previousVersionsMax(base)),
    refs: { ...base.refs, main: { 'snapshot-id': o.snapshotId, type: 'branch' } },
  };
}

/** The snapshots expiry keeps and the ones it removes. */
export interface ExpiryPlan {
  kept: Snapshot[];
  expired: Snapshot[];
}

/**
 * Which snapshots of `m` expire at `nowMs` (Iceberg's rule): those older than `maxAgeMs`, except the current one,
 * any a branch names, and the newest `minSnapshots` of the current snapshot's history — and, so that the kept ones
 * are an unbroken run of the history, none newer than a kept one (a committer's clock running behind cannot punch
 * a hole in it). `kept` and `expired` are in sequence order.
 */
export function planExpiry(m: TableMetadata, o: { nowMs: number; maxAgeMs: number; minSnapshots: number }): ExpiryPlan {
  const snapshots = [...m.snapshots].sort((a, b) => a['sequence-number'] - b['sequence-number']);
  const byId = new Map(snapshots.map((s) => [s['snapshot-id'], s]));
  const keep = new Set<number>(Object.values(m.refs).map((r) => r['snapshot-id']));
  if (m['current-snapshot-id'] !== undefined) keep.add(m['current-snapshot-id']);
  // The newest minSnapshots ancestors of the current snapshot (itself included).
  let s = currentSnapshot(m);
  for (let n = 0; s && n < o.minSnapshots; n++) {
    keep.add(s['snapshot-id']);
    s = s['parent-snapshot-id'] === undefined ? undefined : byId.get(s['parent-snapshot-id']);
  }
  const cutoff = o.nowMs - o.maxAgeMs;
  const first = snapshots.findIndex((snap) => keep.has(snap['snapshot-id']) || snap['timestamp-ms'] >= cutoff);
  if (first < 0) return { kept: snapshots, expired: [] };
  return { kept: snapshots.slice(first), expired: snapshots.slice(0, first) };
}

/**
 * The version after `base` (stored at `baseLocation`) without the snapshots `expired` (their snapshot-log entries
 * go too) and with `properties` set; the current snapshot and the data are unchanged.
 */
export function withoutSnapshots(
  base: TableMetadata,
  baseLocation: string,
  o: { expired: ReadonlySet<number>; properties: Record<string, string>; nowMs: number },
): TableMetadata {
  const next: TableMetadata = { ...base, properties: { ...base.properties, ...o.properties } };
  return {
    ...next,
    'last-updated-ms': o.nowMs,
    snapshots: base.snapshots.filter((s) => !o.expired.has(s['snapshot-id'])),
    'snapshot-log': base['snapshot-log'].filter((e) => !o.expired.has(e['snapshot-id'])),
    'metadata-log': nextMetadataLog(base, baseLocation, previousVersionsMax(next)),
  };
}

/** Checks that a metadata file is one this build can extend; throws naming what is not. */
export function checkMetadata(m: unknown, where: string): TableMetadata {
  const t = m as Partial<TableMetadata>;
  if (typeof m !== 'object' || m === null || t['format-version'] !== ICEBERG_FORMAT_VERSION || !Array.isArray(t.snapshots) || !t['table-uuid'])
    throw new Error(`${where} is not Iceberg v${ICEBERG_FORMAT_VERSION} table metadata (format-version, table-uuid, snapshots)`);
  return t as TableMetadata;
}
