// The dimension tables in the raw bucket (layout: contracts/dimensions.ts): publishing a new version (data file, then
// its manifest, then the pointer — so a reader that sees a pointer finds everything it names), reading the pointer,
// listing tables and versions, and downloading a version with its checksum verified. Versions are immutable: a load
// always writes a new version number, never over an existing one.
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import {
  DIMENSIONS_CONTRACT_VERSION,
  DIMENSIONS_PREFIX,
  type DimensionManifest,
  decodeDimensionManifest,
  encodeDimensionManifest,
  parseVersionManifestKey,
  pointerKey,
  tablePrefix,
  versionDataKey,
  versionManifestKey,
} from './contracts/dimensions.js';
import { PermanentError, TransientError, classify } from './errors.js';
import { sha256File, uploadFile } from './clients/object-store.js';

const isNotFound = (err: unknown) => {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
};

async function getText(s3: S3Client, bucket: string, key: string): Promise<string | undefined> {
  try {
    const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return await r.Body!.transformToString('utf8');
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw classify(err, `s3://${bucket}/${key}`);
  }
}

async function listKeys(s3: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token })).catch((err: unknown) => {
      throw classify(err, `listing of s3://${bucket}/${prefix}`);
    });
    for (const o of r.Contents ?? []) if (o.Key) keys.push(o.Key);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

/** The manifest of the table's current version, or undefined when nothing was loaded under that name. */
export async function readCurrentVersion(s3: S3Client, bucket: string, table: string): Promise<DimensionManifest | undefined> {
  const key = pointerKey(table);
  const body = await getText(s3, bucket, key);
  return body === undefined ? undefined : decodeDimensionManifest(body, `s3://${bucket}/${key}`);
}

/** The manifest of one version, or undefined when it does not exist. */
export async function readVersion(s3: S3Client, bucket: string, table: string, version: number): Promise<DimensionManifest | undefined> {
  const key = versionManifestKey(table, version);
  const body = await getText(s3, bucket, key);
  return body === undefined ? undefined : decodeDimensionManifest(body, `s3://${bucket}/${key}`);
}

/** Version numbers of a table that have a manifest, ascending. */
export async function listVersions(s3: S3Client, bucket: string, table: string): Promise<number[]> {
  const versions: number[] = [];
  for (const k of await listKeys(s3, bucket, tablePrefix(table))) {
    const v = parseVersionManifestKey(k);
    if (v && v.table === table) versions.push(v.version);
  }
  return versions.sort((a, b) => a - b);
}

/** Names of the tables that have a current version, sorted. */
export async function listTables(s3: S3Client, bucket: string): Promise<string[]> {
  const names = new Set<string>();
  for (const k of await listKeys(s3, bucket, DIMENSIONS_PREFIX)) {
    const m = /^dimensions\/([^/]+)\/current\.json$/.exec(k);
    if (m) names.add(m[1]!);
  }
  return [...names].sort();
}

export interface PublishInput {
  table: string;
  /** The validated Parquet file of the new version (entity_id first, then the attributes, sorted by entity_id). */
  file: string;
  rows: number;
  attributes: readonly string[];
  source: DimensionManifest['source'];
  now?: Date;
}

/**
 * Publishes `file` as the next version of `table`: uploads the data file, then the version's manifest, then the
 * pointer. Each object is written with If-None-Match: * where the store honours it (AWS S3, MinIO), and the version
 * manifest is read back before the pointer moves, so two loads racing for one version number fail instead of
 * mixing (the local emulator ignores conditional writes; the read-back still catches a lost race).
 */
export async function publishVersion(s3: S3Client, bucket: string, p: PublishInput): Promise<DimensionManifest> {
  const existing = await listVersions(s3, bucket, p.table);
  const version = (existing.at(-1) ?? 0) + 1;
  const loadId = randomUUID();
  const dataKey = versionDataKey(p.table, version);
  const { sha256, bytes } = await sha256File(p.file);
  try {
    await uploadFile(s3, bucket, dataKey, p.file, { 'sluice-dimension-load': loadId, 'sluice-sha256': sha256 });
  } catch (err) {
    throw classify(err, `upload of s3://${bucket}/${dataKey}`);
  }
  const manifest: DimensionManifest = {
    contractVersion: DIMENSIONS_CONTRACT_VERSION,
    table: p.table,
    version,
    dataKey,
    sha256,
    bytes,
    rows: p.rows,
    attributes: [...p.attributes],
    loadedAt: (p.now ?? new Date()).toISOString(),
    source: p.source,
    loadId,
  };
  const body = encodeDimensionManifest(manifest);
  const mKey = versionManifestKey(p.table, version);
  try {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: mKey, Body: body, ContentType: 'application/json', IfNoneMatch: '*' }));
  } catch (err) {
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 412 || status === 409)
      throw new TransientError(`another load wrote version ${version} of dimension table "${p.table}" first; run the load again`, 'dimension_version_taken', {
        cause: err,
      });
    throw classify(err, `upload of s3://${bucket}/${mKey}`);
  }
  const back = await readVersion(s3, bucket, p.table, version);
  if (back?.loadId !== loadId)
    throw new TransientError(
      `another load wrote version ${version} of dimension table "${p.table}" at the same time; run the load again`,
      'dimension_version_taken',
    );
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: pointerKey(p.table), Body: body, ContentType: 'application/json' })).catch((err: unknown) => {
    throw classify(err, `upload of s3://${bucket}/${pointerKey(p.table)}`);
  });
  return manifest;
}

/** Downloads a version's data file to `file` (via a temporary name) and checks its size and sha256 against the manifest. */
export async function downloadVersion(s3: S3Client, bucket: string, m: DimensionManifest, file: string): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${randomUUID()}.part`;
  try {
    let body: Readable;
    try {
      body = (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: m.dataKey }))).Body as Readable;
    } catch (err) {
      if (isNotFound(err))
        throw new PermanentError(`s3://${bucket}/${m.dataKey} (version ${m.version} of dimension table "${m.table}") is missing`, 'dimension_data_missing');
      throw classify(err, `download of s3://${bucket}/${m.dataKey}`);
    }
    await pipeline(body, createWriteStream(tmp));
    const got = await sha256File(tmp);
    if (got.sha256 !== m.sha256 || got.bytes !== m.bytes)
      throw new PermanentError(
        `s3://${bucket}/${m.dataKey}: ${got.bytes} bytes with sha256 ${got.sha256}, its manifest says ${m.bytes} bytes with sha256 ${m.sha256}`,
        'dimension_checksum_mismatch',
      );
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}
