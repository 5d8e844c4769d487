// Downloads a batch's Parquet object to a local temp file, streaming, and verifies it against its manifest
// while it streams (byte size and sha256). Returns only a file whose bytes are exactly what ingest uploaded.
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BatchManifest } from '../shared/contracts/manifest.js';
import { PermanentError, TransientError, classify, errorMessage } from '../shared/errors.js';

export interface FetchedBatch {
  file: string;
  bytes: number;
}

function isMissing(err: unknown): boolean {
  const e = err as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.Code === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
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
