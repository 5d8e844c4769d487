// Quarantine objects in the raw bucket (layout and records: contracts/quarantine.ts): written whole from a local
// NDJSON file (streamed, so any size works), listed with their metadata, read back record by record, removed.
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import {
  decodeQuarantineRecord,
  parseQuarantineKey,
  QUARANTINE_META,
  QUARANTINE_PREFIX,
  type QuarantineKind,
  type QuarantineObject,
  type QuarantineRecord,
} from '../contracts/quarantine.js';
import { headObject, uploadFile } from './object-store.js';

export async function putQuarantineFile(
  s3: S3Client,
  bucket: string,
  key: string,
  file: string,
  info: { events: number; firstReason: string; kind: QuarantineKind },
): Promise<void> {
  await uploadFile(
    s3,
    bucket,
    key,
    file,
    { [QUARANTINE_META.events]: String(info.events), [QUARANTINE_META.firstReason]: info.firstReason, [QUARANTINE_META.kind]: info.kind },
    'application/x-ndjson',
  );
}

export async function deleteQuarantineObject(s3: S3Client, bucket: string, key: string): Promise<void> {
  await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
}

export interface QuarantineListing extends QuarantineObject {
  /** Quarantined lines; undefined when the object carries no metadata (use readQuarantineRecords to count). */
  events: number | undefined;
  firstReason: string | undefined;
  bytes: number;
  lastModified: Date | undefined;
}

/** Every quarantine object of the bucket (segments and batches), oldest first. Keys of another layout are skipped. */
export async function listQuarantine(s3: S3Client, bucket: string): Promise<QuarantineListing[]> {
  const out: QuarantineListing[] = [];
  let token: string | undefined;
  do {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: QUARANTINE_PREFIX, ContinuationToken: token }));
    for (const o of r.Contents ?? []) {
      const q = o.Key ? parseQuarantineKey(o.Key) : undefined;
      if (!q) continue;
      const head = await headObject(s3, bucket, q.key);
      if (!head) continue; // removed while listing
      const events = head.metadata[QUARANTINE_META.events];
      out.push({
        ...q,
        events: events === undefined ? undefined : Number(events),
        firstReason: head.metadata[QUARANTINE_META.firstReason],
        bytes: o.Size ?? head.bytes,
        lastModified: o.LastModified,
      });
    }
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out.sort((a, b) => (a.lastModified?.getTime() ?? 0) - (b.lastModified?.getTime() ?? 0) || (a.key < b.key ? -1 : 1));
}

/** The raw body of a quarantine object, or undefined when it does not exist. */
export async function openQuarantineObject(s3: S3Client, bucket: string, key: string): Promise<Readable | undefined> {
  try {
    const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return r.Body as Readable;
  } catch (err) {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404) return undefined;
    throw err;
  }
}

/** Records of a quarantine object, decoded one line at a time; undefined when the object does not exist. */
export async function readQuarantineRecords(s3: S3Client, bucket: string, key: string): Promise<AsyncGenerator<QuarantineRecord> | undefined> {
  const body = await openQuarantineObject(s3, bucket, key);
  if (!body) return undefined;
  return (async function* () {
    let n = 0;
    for await (const text of createInterface({ input: body, crlfDelay: Number.POSITIVE_INFINITY })) {
      n++;
      if (text.trim() === '') continue;
      yield decodeQuarantineRecord(text, `s3://${bucket}/${key} line ${n}`);
    }
  })();
}
