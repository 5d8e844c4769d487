// The event archive as readers must see it: raw batch files minus those a compaction manifest supersedes,
// plus the compacted files that have a manifest (a compacted file without one is unverified and ignored).
// Compaction, audits and tests all decide "where does an event live" with this one rule.
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { ColdObject, ColdStorage } from '../../shared/clients/cold-storage.js';
import { compactionDayPrefix, decodeCompactionManifest, parseCompactedKey, type CompactionManifest } from '../../shared/contracts/cold-layout.js';
import { RAW_EVENTS_PREFIX, parseRawEventsKey } from '../../shared/contracts/parquet-schema.js';
import { TransientError, classify } from '../../shared/errors.js';
import { withRetry } from '../../shared/retry.js';

export interface RawObject {
  key: string;
  bytes: number;
}

/** Every raw batch key under `prefix` (ListObjectsV2, paged). */
export async function listRaw(s3: S3Client, bucket: string, prefix: string): Promise<RawObject[]> {
  const out: RawObject[] = [];
  let token: string | undefined;
  do {
    const r = await withRetry(() =>
      s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token })).catch((err: unknown) => {
        throw classify(err, `listing s3://${bucket}/${prefix}`);
      }),
    );
    for (const o of r.Contents ?? []) if (o.Key) out.push({ key: o.Key, bytes: o.Size ?? 0 });
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/** Event-time days (YYYY-MM-DD) that have a folder in the raw bucket. */
export async function rawDays(s3: S3Client, bucket: string): Promise<string[]> {
  const days = new Set<string>();
  let token: string | undefined;
  do {
    const r = await withRetry(() =>
      s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: RAW_EVENTS_PREFIX, Delimiter: '/', ContinuationToken: token })).catch((err: unknown) => {
        throw classify(err, `listing s3://${bucket}/${RAW_EVENTS_PREFIX}`);
      }),
    );
    for (const p of r.CommonPrefixes ?? []) {
      const m = /^events\/dt=(\d{4}-\d{2}-\d{2})\/$/.exec(p.Prefix ?? '');
      if (m) days.add(m[1]!);
    }
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return [...days].sort();
}

export async function downloadRaw(s3: S3Client, bucket: string, key: string, file: string): Promise<void> {
  await withRetry(async () => {
    try {
      const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      await pipeline(r.Body as Readable, createWriteStream(file));
    } catch (err) {
      throw classify(err, `download of s3://${bucket}/${key}`);
    }
  });
}

/** Deletes raw keys (1,000 per request); keys already gone are fine. Throws if any delete failed. */
export async function deleteRaw(s3: S3Client, bucket: string, keys: readonly string[], afterChunk?: (deleted: number) => Promise<void> | void): Promise<void> {
  for (let i = 0; i < keys.length; i += 1000) {
    const chunk = keys.slice(i, i + 1000);
    await withRetry(async () => {
      const r = await s3
        .send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: chunk.map((Key) => ({ Key })), Quiet: true } }))
        .catch((err: unknown) => {
          throw classify(err, `delete in s3://${bucket}`);
        });
      const failed = (r.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length)
        throw new TransientError(
          `could not delete ${failed.length} raw file(s) in s3://${bucket}, e.g. ${failed[0]!.Key}: ${failed[0]!.Message}`,
          'raw_delete_failed',
        );
    });
    await afterChunk?.(i + chunk.length);
  }
}

/** One day of the archive, resolved. */
export interface ArchiveDay {
  dt: string;
  /** Raw batch files not superseded by a verified compaction. */
  liveRaw: RawObject[];
  /** Raw files listed by a manifest but not deleted yet (an interrupted compaction's leftovers). */
  supersededRaw: RawObject[];
  /** Verified compactions (their data files are live). */
  manifests: CompactionManifest[];
  /** Compacted data files without a manifest: unverified, never read. */
  unverified: ColdObject[];
}

export async function resolveDay(s3: S3Client, rawBucket: string, cold: ColdStorage, dt: string): Promise<ArchiveDay> {
  const [raw, coldObjects] = await Promise.all([listRaw(s3, rawBucket, `${RAW_EVENTS_PREFIX}dt=${dt}/`), cold.list(compactionDayPrefix(dt))]);
  const manifests: CompactionManifest[] = [];
  const withManifest = new Set<string>();
  for (const o of coldObjects) {
    const k = parseCompactedKey(o.key);
    if (k?.kind !== 'manifest') continue;
    manifests.push(decodeCompactionManifest(await cold.getText(o.key), `s3://${cold.bucket}/${o.key}`));
    withManifest.add(k.id);
  }
  const superseded = new Set(manifests.filter((m) => m.inputBucket === rawBucket).flatMap((m) => m.inputs));
  const batches = raw.filter((o) => parseRawEventsKey(o.key));
  return {
    dt,
    liveRaw: batches.filter((o) => !superseded.has(o.key)),
    supersededRaw: batches.filter((o) => superseded.has(o.key)),
    manifests,
    unverified: coldObjects.filter((o) => {
      const k = parseCompactedKey(o.key);
      return k?.kind === 'data' && !withManifest.has(k.id);
    }),
  };
}
