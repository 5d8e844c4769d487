// Downloads a batch's Parquet object to a local temp file, streaming, and verifies it against its manifest
// while it streams (byte size and sha256). Returns only a file whose bytes are exactly what ingest uploaded, and
// reads only objects of the raw bucket under the documented key layout, whatever a manifest names.
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BatchManifest } from '../shared/contracts/manifest.js';
import { RAW_EVENTS_KEY_PATTERN } from '../shared/contracts/parquet-schema.js';
import { PermanentError, TransientError, classify, errorMessage } from '../shared/errors.js';

export interface FetchedBatch {
  file: string;
  bytes: number;
}

function isMissing(err: unknown): boolean {
  const e = err as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.Code === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
}

/** A manifest field for an error message: quoted, and cut short (it comes from whoever could send to the queue). */
const shown = (s: string) => JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}…` : s);

/**
 * Throws PermanentError manifest_untrusted unless the manifest names `rawBucket` (SLUICE_RAW_BUCKET) and a key of
 * the raw layout (events/dt=YYYY-MM-DD/hour=HH/<node>-<segment>.parquet): a worker never reads any other object its
 * credentials reach. Called before anything is fetched.
 */
export function checkBatchSource(m: Pick<BatchManifest, 'bucket' | 'key'>, rawBucket: string): void {
  if (m.bucket !== rawBucket)
    throw new PermanentError(
      `manifest names bucket ${shown(m.bucket)} (key ${shown(m.key)}), but workers read batches only from SLUICE_RAW_BUCKET ${shown(rawBucket)}; the message did not come from this pipeline's ingest`,
      'manifest_untrusted',
    );
  if (!RAW_EVENTS_KEY_PATTERN.test(m.key))
    throw new PermanentError(
      `manifest key ${shown(m.key)} in bucket ${shown(m.bucket)} is not a raw batch key (events/dt=YYYY-MM-DD/hour=HH/<node>-<segment>.parquet); the message did not come from this pipeline's ingest`,
      'manifest_untrusted',
    );
}

/**
 * Streams s3://bucket/key into `<tempDir>/<name>`, hashing on the way.
 * Throws PermanentError batch_missing (no such object) or checksum_mismatch (size or sha256 differ from
 * the manifest); network and S3 faults are TransientErrors. The temp file is removed on any failure.
 */
export async function fetchBatch(s3: S3Client, m: BatchManifest, tempDir: string, name: string, signal?: AbortSignal): Promise<FetchedBatch> {
  const where = `s3://${m.bucket}/${m.key}`;
  await mkdir(tempDir, { recursive: true });
  const file = path.join(tempDir, name);
  let body: Readable;
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: m.bucket, Key: m.key }), { abortSignal: signal });
    if (res.ContentLength !== undefined && res.ContentLength !== m.byteSize) {
      (res.Body as Readable | undefined)?.destroy();
      throw new PermanentError(`${where} is ${res.ContentLength} bytes but its manifest says ${m.byteSize}`, 'checksum_mismatch');
    }
    body = res.Body as Readable;
  } catch (err) {
    if (isMissing(err)) throw new PermanentError(`${where} does not exist (its manifest was sent but the object is gone)`, 'batch_missing', { cause: err });
    throw classify(err, `fetching ${where}`);
  }
  const hash = createHash('sha256');
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      if (bytes > m.byteSize) done(new PermanentError(`${where} is larger than the ${m.byteSize} bytes of its manifest`, 'checksum_mismatch'));
      else done(null, chunk);
    },
  });
  try {
    await pipeline(body, tap, createWriteStream(file), signal ? { signal } : {});
  } catch (err) {
    await rm(file, { force: true });
    if (err instanceof PermanentError) throw err;
    throw new TransientError(`downloading ${where} failed: ${errorMessage(err)}`, 'download_interrupted', { cause: err });
  }
  const sha = hash.digest('hex');
  if (bytes !== m.byteSize || sha !== m.checksum.value) {
    await rm(file, { force: true });
    throw new PermanentError(
      `${where} does not match its manifest (got ${bytes} bytes, sha256 ${sha}; expected ${m.byteSize} bytes, sha256 ${m.checksum.value})`,
      'checksum_mismatch',
    );
  }
  return { file, bytes };
}
