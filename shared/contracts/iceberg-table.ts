// The Iceberg tables Sluice keeps (format v2, namespace `sluice`): `events` over the archive, `rollups` over the
// cold bucket's hourly and daily aggregates. Where each table's metadata lives in the raw bucket, the commit pointer
// that says which metadata file is current, and the maintenance properties its metadata carries. workers/iceberg/
// is the one writer (commits, snapshot expiry, orphan clean-up); the query API's REST catalog reads the pointer and
// the metadata it names.
//
// Layout (raw bucket), per table <name>:
//   iceberg/<name>/metadata/<NNNNN>-<uuid>.metadata.json   every metadata version, written once under a unique name
//   iceberg/<name>/metadata/v<N>.metadata.json             a copy of version N for readers that follow version-hint
//   iceberg/<name>/metadata/version-hint.text              the number N of the latest copy
//   iceberg/<name>/metadata/<uuid>-m<i>.avro, snap-*.avro  manifests and manifest lists
// The data files are the archive's own Parquet files (raw batches, compacted day files) and the rollup files,
// registered where they are; nothing outside iceberg/<name>/metadata/ is ever written or deleted by the tables.
//
// The pointer is a Redis hash `<prefix>iceberg:{sluice.<name>}:pointer` {version, location, committedAt}: a commit
// swaps it from its base version N to N+1 in one script (compare-and-swap), so of two committers on the same base
// exactly one wins and the other retries on the new base. One key, one slot, on a cluster too.

export const ICEBERG_NAMESPACE = 'sluice';
export const ICEBERG_FORMAT_VERSION = 2;

/** The tables of the namespace, in the order the catalog lists them. */
export const ICEBERG_TABLES = ['events', 'rollups'] as const;
export type IcebergTableName = (typeof ICEBERG_TABLES)[number];

/** The archive's table. */
export const ICEBERG_TABLE: IcebergTableName = 'events';
/** The rollups' table. */
export const ROLLUPS_TABLE: IcebergTableName = 'rollups';

export const isIcebergTableName = (name: string): name is IcebergTableName => (ICEBERG_TABLES as readonly string[]).includes(name);

/** Where one table's objects live, and its commit pointer. */
export interface IcebergTableLayout {
  name: IcebergTableName;
  /** Folder of the table in the raw bucket, ending in "/". */
  prefix: string;
  /** Folder of its metadata files: the only folder the table's writer writes to or deletes from. */
  metadataPrefix: string;
  versionHintKey: string;
  /** s3://<raw bucket>/iceberg/<name>: the table's `location`. */
  location(rawBucket: string): string;
  /** Key of the metadata file of `version`, written once under a unique name. */
  metadataFileKey(version: number, uuid: string): string;
  /** Key of the copy of `version` that version-hint.text readers open. */
  versionCopyKey(version: number): string;
  pointerKey(redisPrefix: string): string;
}

export function icebergLayout(name: IcebergTableName): IcebergTableLayout {
  const prefix = `iceberg/${name}/`;
  const metadataPrefix = `${prefix}metadata/`;
  return {
    name,
    prefix,
    metadataPrefix,
    versionHintKey: `${metadataPrefix}version-hint.text`,
    location: (rawBucket) => `s3://${rawBucket}/${prefix.replace(/\/$/, '')}`,
    metadataFileKey: (version, uuid) => `${metadataPrefix}${String(version).padStart(5, '0')}-${uuid}.metadata.json`,
    versionCopyKey: (version) => `${metadataPrefix}v${version}.metadata.json`,
    pointerKey: (redisPrefix) => `${redisPrefix}iceberg:{${ICEBERG_NAMESPACE}.${name}}:pointer`,
  };
}

/** The version a metadata file's name carries (`NNNNN-<uuid>.metadata.json` or `v<N>.metadata.json`), or undefined. */
export function metadataFileVersion(key: string): number | undefined {
  const m = /(?:^|\/)(?:(\d+)-[^/]+|v(\d+))\.metadata\.json$/.exec(key);
  const n = Number(m?.[1] ?? m?.[2]);
  return m && Number.isInteger(n) && n > 0 ? n : undefined;
}

const EVENTS_LAYOUT = icebergLayout('events');
/** The events table's layout, as constants (the archive's table was the first). */
export const ICEBERG_TABLE_PREFIX = EVENTS_LAYOUT.prefix;
export const ICEBERG_METADATA_PREFIX = EVENTS_LAYOUT.metadataPrefix;
export const VERSION_HINT_KEY = EVENTS_LAYOUT.versionHintKey;
export const icebergTableLocation = (rawBucket: string): string => EVENTS_LAYOUT.location(rawBucket);
export const metadataFileKey = (version: number, uuid: string): string => EVENTS_LAYOUT.metadataFileKey(version, uuid);
export const versionCopyKey = (version: number): string => EVENTS_LAYOUT.versionCopyKey(version);
export const commitPointerKey = (redisPrefix: string): string => EVENTS_LAYOUT.pointerKey(redisPrefix);

/**
 * Table properties of the maintenance Sluice runs (Iceberg's standard names, so engines and tools read them):
 * snapshot expiry's age and floor (set from SLUICE_ICEBERG_SNAPSHOT_RETENTION and SLUICE_ICEBERG_MIN_SNAPSHOTS),
 * and how many previous metadata files the metadata log keeps — older ones are deleted.
 */
export const MAINTENANCE_PROPERTIES = {
  maxSnapshotAgeMs: 'history.expire.max-snapshot-age-ms',
  minSnapshotsToKeep: 'history.expire.min-snapshots-to-keep',
  previousVersionsMax: 'write.metadata.previous-versions-max',
  deleteAfterCommit: 'write.metadata.delete-after-commit.enabled',
} as const;

/** Previous metadata versions kept (Iceberg's default of write.metadata.previous-versions-max). */
export const DEFAULT_PREVIOUS_VERSIONS_MAX = 100;

/** s3://bucket/key → { bucket, key }, or undefined when `uri` is not an s3:// URI. */
export function parseS3Uri(uri: string): { bucket: string; key: string } | undefined {
  const m = /^s3a?:\/\/([^/]+)\/(.+)$/.exec(uri);
  return m ? { bucket: m[1]!, key: m[2]! } : undefined;
}

/** The commit pointer: the current metadata version and its file. */
export interface CommitPointer {
  version: number;
  /** s3:// URI of the metadata file of `version`. */
  location: string;
  committedAtMs: number;
}

/** The pointer from its Redis hash (HGETALL), or undefined when there is none yet; throws naming a corrupt one. */
export function decodeCommitPointer(hash: Record<string, string>, where: string): CommitPointer | undefined {
  if (Object.keys(hash).length === 0) return undefined;
  const version = Number(hash.version);
  const committedAtMs = Number(hash.committedAt);
  if (!Number.isInteger(version) || version < 1 || !hash.location || !parseS3Uri(hash.location) || !Number.isFinite(committedAtMs))
    throw new Error(
      `${where} is not an Iceberg commit pointer (version, location, committedAt): ${JSON.stringify(hash)}; delete it to rebuild it from the metadata in S3`,
    );
  return { version, location: hash.location, committedAtMs };
}
