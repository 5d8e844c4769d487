// The Iceberg table over the archive (`sluice.events`, format v2): where its metadata lives in the raw bucket and
// the commit pointer that says which metadata file is current. workers/iceberg/ is the one writer (commits append,
// replace and overwrite snapshots); the query API's REST catalog reads the pointer and the metadata it names.
//
// Layout (raw bucket):
//   iceberg/events/metadata/<NNNNN>-<uuid>.metadata.json   every metadata version, written once under a unique name
//   iceberg/events/metadata/v<N>.metadata.json             a copy of version N for readers that follow version-hint
//   iceberg/events/metadata/version-hint.text              the number N of the latest copy
//   iceberg/events/metadata/<uuid>-m<i>.avro, snap-*.avro  manifests and manifest lists
// The data files are the archive's own Parquet files (raw batches, compacted day files), registered where they are.
//
// The pointer is a Redis hash `<prefix>iceberg:{sluice.events}:pointer` {version, location, committedAt}: a commit
// swaps it from its base version N to N+1 in one script (compare-and-swap), so of two committers on the same base
// exactly one wins and the other retries on the new base. One key, one slot, on a cluster too.

export const ICEBERG_NAMESPACE = 'sluice';
export const ICEBERG_TABLE = 'events';
export const ICEBERG_FORMAT_VERSION = 2;

/** Folder of the table in the raw bucket. */
export const ICEBERG_TABLE_PREFIX = 'iceberg/events/';
export const ICEBERG_METADATA_PREFIX = `${ICEBERG_TABLE_PREFIX}metadata/`;
export const VERSION_HINT_KEY = `${ICEBERG_METADATA_PREFIX}version-hint.text`;

/** s3://<raw bucket>/iceberg/events: the table's `location`. */
export const icebergTableLocation = (rawBucket: string): string => `s3://${rawBucket}/${ICEBERG_TABLE_PREFIX.replace(/\/$/, '')}`;

/** Key of the metadata file of version `version`, written once under a unique name. */
export const metadataFileKey = (version: number, uuid: string): string => `${ICEBERG_METADATA_PREFIX}${String(version).padStart(5, '0')}-${uuid}.metadata.json`;

/** Key of the copy of version `version` that version-hint.text readers open. */
export const versionCopyKey = (version: number): string => `${ICEBERG_METADATA_PREFIX}v${version}.metadata.json`;

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

export const commitPointerKey = (redisPrefix: string): string => `${redisPrefix}iceberg:{${ICEBERG_NAMESPACE}.${ICEBERG_TABLE}}:pointer`;

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
