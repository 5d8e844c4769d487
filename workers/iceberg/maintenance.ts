// Table maintenance with the defaults of S3 Tables: snapshot expiry, then the clean-up of the metadata folder.
//   1. Expiry commits a version without the snapshots older than SLUICE_ICEBERG_SNAPSHOT_RETENTION (at least
//      SLUICE_ICEBERG_MIN_SNAPSHOTS kept, the current one always), then deletes the manifest lists of the expired
//      snapshots and the manifests only they listed. The kept snapshots are an unbroken run of the history, and a
//      manifest is listed by an unbroken run of snapshots (workers/iceberg/table-commit.ts), so an expired
//      snapshot's manifest is still needed iff the oldest kept snapshot lists it: one manifest list read, not all.
//   2. Metadata files of versions older than the previous `write.metadata.previous-versions-max` (no longer in the
//      metadata log; unique files and v<N> copies) are deleted.
//   3. Orphans: any other object of the metadata folder that no kept version references — files of lost commit
//      attempts, leftovers of a run that crashed between its commit and its deletes — once older than
//      SLUICE_ICEBERG_ORPHAN_GRACE, counted back from the oldest kept snapshot (every file a kept snapshot wrote is
//      younger than that snapshot's base, so age alone protects them, and in-flight commits, without listing them;
//      this assumes committers' clocks and the store's agree to within the grace, at least an hour).
// Nothing outside the table's metadata folder is ever deleted: the data files belong to the archive and the rollup
// job, their retention and compaction. A crash at any point leaves a readable table: the commit swaps in a complete
// version, and the files deleted after it are referenced by no kept version.
import type { Config } from '../../shared/config.js';
import { MAINTENANCE_PROPERTIES, metadataFileVersion, parseS3Uri } from '../../shared/contracts/iceberg-table.js';
import type { IcebergTable } from './iceberg-table.js';
import { planExpiry, previousVersionsMax, withoutSnapshots, type ExpiryPlan, type Snapshot } from './table-metadata.js';

export interface MaintenanceSettings {
  /** Snapshots older than this expire (SLUICE_ICEBERG_SNAPSHOT_RETENTION). */
  snapshotRetentionMs: number;
  /** Snapshots of the current history always kept, the current one included (SLUICE_ICEBERG_MIN_SNAPSHOTS). */
  minSnapshots: number;
  /** Unreferenced metadata files younger than this are left alone (SLUICE_ICEBERG_ORPHAN_GRACE). */
  orphanGraceMs: number;
  /** Previous metadata versions kept (write.metadata.previous-versions-max; default that of the table). */
  previousVersionsMax?: number;
}

/** The maintenance settings of the configuration (a retention of inf, read as 0, keeps forever). */
export const maintenanceSettings = (
  cfg: Pick<Config, 'SLUICE_ICEBERG_SNAPSHOT_RETENTION' | 'SLUICE_ICEBERG_MIN_SNAPSHOTS' | 'SLUICE_ICEBERG_ORPHAN_GRACE'>,
): MaintenanceSettings => ({
  snapshotRetentionMs: cfg.SLUICE_ICEBERG_SNAPSHOT_RETENTION || Number.POSITIVE_INFINITY,
  minSnapshots: cfg.SLUICE_ICEBERG_MIN_SNAPSHOTS,
  orphanGraceMs: cfg.SLUICE_ICEBERG_ORPHAN_GRACE || Number.POSITIVE_INFINITY,
});

export type DeletedKind = 'expired' | 'old-metadata' | 'orphan';

export interface MaintenanceSummary {
  table: string;
  /** The version after the run (0: no table yet). */
  version: number;
  snapshots: number;
  expiredSnapshots: number;
  /** Manifest lists and manifests of the expired snapshots. */
  deletedExpired: number;
  /** Metadata files of versions past the kept count. */
  deletedMetadata: number;
  deletedOrphans: number;
}

export interface MaintenanceOptions {
  nowMs?: number;
  /** Called after each delete (fault-injection point for tests; a throw stops the run there). */
  onDelete?: (kind: DeletedKind, key: string) => void | Promise<void>;
}

const keyOf = (location: string): string | undefined => parseS3Uri(location)?.key;

/** The table properties that record the settings (Iceberg's names), set at creation and by every expiry. */
export function maintenanceProperties(s: MaintenanceSettings): Record<string, string> {
  return {
    // A long in Iceberg: "keep forever" is the largest one JSON numbers carry exactly.
    [MAINTENANCE_PROPERTIES.maxSnapshotAgeMs]: String(Math.min(s.snapshotRetentionMs, Number.MAX_SAFE_INTEGER)),
    [MAINTENANCE_PROPERTIES.minSnapshotsToKeep]: String(s.minSnapshots),
    [MAINTENANCE_PROPERTIES.deleteAfterCommit]: 'true',
    ...(s.previousVersionsMax ? { [MAINTENANCE_PROPERTIES.previousVersionsMax]: String(s.previousVersionsMax) } : {}),
  };
}

/** Runs expiry and the clean-up of `table` once. Safe to repeat, to run beside commits, or twice at once. */
export async function maintainTable(table: IcebergTable, s: MaintenanceSettings, o: MaintenanceOptions = {}): Promise<MaintenanceSummary> {
  const nowMs = o.nowMs ?? table.now();
  const summary: MaintenanceSummary = {
    table: table.qualifiedName,
    version: 0,
    snapshots: 0,
    expiredSnapshots: 0,
    deletedExpired: 0,
    deletedMetadata: 0,
    deletedOrphans: 0,
  };
  if (!(await table.current())) return summary;
  const del = async (kind: DeletedKind, key: string) => {
    await table.files.delete(key);
    await o.onDelete?.(kind, key);
  };

  // 1. Expiry: a new version without the expired snapshots, the maintenance properties set from the settings.
  const properties = maintenanceProperties(s);
  let plan: ExpiryPlan = { kept: [], expired: [] };
  const expiry = await table.commitMetadata('snapshot expiry', (base) => {
    plan = planExpiry(base.metadata, { nowMs, maxAgeMs: s.snapshotRetentionMs, minSnapshots: s.minSnapshots });
    const changed = Object.entries(properties).some(([k, v]) => base.metadata.properties[k] !== v);
    if (!plan.expired.length && !changed) return undefined;
    return withoutSnapshots(base.metadata, base.location, {
      expired: new Set(plan.expired.map((e) => e['snapshot-id'])),
      properties,
      nowMs: table.now(),
    });
  });
  if (expiry.committed && plan.expired.length) {
    summary.expiredSnapshots = plan.expired.length;
    table.log.info({ table: table.qualifiedName, version: expiry.version, expired: plan.expired.length, kept: plan.kept.length }, 'expired Iceberg snapshots');
    for (const key of await expiredFiles(table, plan)) {
      await del('expired', key);
      summary.deletedExpired++;
    }
  }

  // 2 and 3. The metadata folder against the version now current.
  const cur = (await table.current())!;
  summary.version = cur.version;
  summary.snapshots = cur.metadata.snapshots.length;
  const minKeptVersion = cur.version - previousVersionsMax(cur.metadata);
  const oldestKept = [...cur.metadata.snapshots].sort((a, b) => a['sequence-number'] - b['sequence-number'])[0];
  const referenced = await referencedKeys(table, cur.location, cur.metadata, oldestKept);
  const protectFrom = Math.min(nowMs, oldestKept?.['timestamp-ms'] ?? nowMs) - s.orphanGraceMs;
  for (const obj of await table.files.listMetadata()) {
    if (referenced.has(obj.key)) continue;
    const version = metadataFileVersion(obj.key);
    if (version !== undefined && version < minKeptVersion) {
      await del('old-metadata', obj.key);
      summary.deletedMetadata++;
    } else if (version !== undefined && version >= minKeptVersion && /\/v\d+\.metadata\.json$/.test(obj.key)) {
      // The published copy of a kept version.
    } else if (obj.lastModifiedMs < protectFrom) {
      await del('orphan', obj.key);
      summary.deletedOrphans++;
    }
  }
  if (summary.deletedMetadata || summary.deletedOrphans)
    table.log.info(
      { table: table.qualifiedName, oldMetadata: summary.deletedMetadata, orphans: summary.deletedOrphans },
      'deleted Iceberg metadata files no kept version references',
    );
  return summary;
}

/** Manifest lists of the expired snapshots and the manifests no kept snapshot lists (keys in the raw bucket). */
async function expiredFiles(table: IcebergTable, plan: ExpiryPlan): Promise<string[]> {
  const oldest = plan.kept[0];
  const stillListed = new Set(oldest ? (await table.manifestsOf(oldest)).map((m) => m.manifest_path) : []);
  const out = new Set<string>();
  for (const e of plan.expired) {
    let manifests: string[] = [];
    try {
      manifests = (await table.manifestsOf(e)).map((m) => m.manifest_path);
    } catch (err) {
      // Its manifest list is gone already (a run that crashed after its deletes began): nothing left to find.
      if (!(err instanceof Error && err.message.includes('is missing'))) throw err;
    }
    for (const m of manifests) if (!stillListed.has(m)) out.add(m);
    out.add(e['manifest-list']);
  }
  return [...out].map(keyOf).filter((k): k is string => k?.startsWith(table.layout.metadataPrefix) === true);
}

/** Keys the version at `location` references: itself, its metadata log, the version hint, its snapshots' files. */
async function referencedKeys(
  table: IcebergTable,
  location: string,
  metadata: { 'metadata-log': { 'metadata-file': string }[]; snapshots: Snapshot[]; 'current-snapshot-id'?: number },
  oldestKept: Snapshot | undefined,
): Promise<Set<string>> {
  const out = new Set<string>([table.layout.versionHintKey]);
  const add = (loc: string) => {
    const k = keyOf(loc);
    if (k) out.add(k);
  };
  add(location);
  for (const e of metadata['metadata-log']) add(e['metadata-file']);
  for (const snap of metadata.snapshots) add(snap['manifest-list']);
  const current = metadata.snapshots.find((x) => x['snapshot-id'] === metadata['current-snapshot-id']);
  for (const snap of [oldestKept, current]) if (snap) for (const m of await table.manifestsOf(snap)) add(m.manifest_path);
  return out;
}
