// Streaming object transfers for the archive: uploads stream from disk (multipart above 8 MiB, so any
// object size works on S3, MinIO, LocalStack and fauxqs) and carry Sluice's metadata; hashes are streamed too.
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';

export const PART_SIZE = 8 * 1024 * 1024;

/** sha256 (hex) and size of a file, streamed. */
export async function sha256File(file: string): Promise<{ sha256: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: h.digest('hex'), bytes };
}

export async function uploadFile(
  s3: S3Client,
  bucket: string,
  key: string,
  file: string,
  metadata: Record<string, string>,
  contentType = 'application/vnd.apache.parquet',
): Promise<void> {
  const size = statSync(file).size;
  const upload = new Upload({
    client: s3,
    params: {
      Bucket: bucket,
      Key: key,
      Body: createReadStream(file, { highWaterMark: 1 << 20 }),
      ContentLength: size,
      ContentType: contentType,
      Metadata: metadata,
    },
    partSize: PART_SIZE,
    queueSize: 2,
    leavePartsOnError: false,
  });
  await upload.done();
}

/** Metadata of an existing object, or undefined when it does not exist. */
export async function headObject(s3: S3Client, bucket: string, key: string): Promise<{ bytes: number; metadata: Record<string, string> } | undefined> {
  try {
    const r = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return { bytes: r.ContentLength ?? 0, metadata: r.Metadata ?? {} };
  } catch (err) {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
    throw err;
  }
}
