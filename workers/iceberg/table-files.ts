// Reads, writes, lists and deletes one table's metadata objects in the raw bucket (metadata JSON, manifests,
// manifest lists, the version hint). Every object but the version hint and the v<N> copies is written once under a
// unique name and never changed, so a file read once is cached by its location. Deletes are refused outside the
// table's metadata folder: data files are never the table's to delete. Transient S3 faults are retried.
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { parseS3Uri, type IcebergTableLayout } from '../../shared/contracts/iceberg-table.js';
import { classify } from '../../shared/errors.js';
import { withRetry } from '../../shared/retry.js';
import { checkMetadata, type TableMetadata } from './table-metadata.js';

const isMissing = (err: unknown): boolean => {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
};

/**
 * Immutable files already read, by location: metadata files (a new one per version; only the newest are read
 * again). Manifests and manifest lists are cached decoded, by ManifestReader (manifest-reader.ts).
 */
const CACHE_MAX = 32;

/** An object of the table's metadata folder, as a listing shows it. */
export interface StoredObject {
  key: string;
  bytes: number;
  lastModifiedMs: number;
}

export class TableFiles {
  private readonly cache = new Map<string, Promise<Buffer>>();

  constructor(
    private readonly s3: S3Client,
    readonly bucket: string,
    readonly layout: IcebergTableLayout,
  ) {}

  uri(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  private keyOf(location: string): { bucket: string; key: string } {
    const p = parseS3Uri(location);
    if (!p) throw new Error(`${location} is not an s3:// location of a table file`);
    return p;
  }

  /** The bytes at `location`, or undefined when there is no such object. */
  async get(location: string): Promise<Buffer | undefined> {
    const { bucket, key } = this.keyOf(location);
    return withRetry(async () => {
      try {
        const r = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        return Buffer.from(await r.Body!.transformToByteArray());
      } catch (err) {
        if (isMissing(err)) return undefined;
        throw classify(err, `read of ${location}`);
      }
    });
  }

  /** The bytes of a file the table references (not cached); throws naming it when it is missing. */
  async getRequired(location: string): Promise<Buffer> {
    const b = await this.get(location);
    if (!b) throw new Error(`${location} is missing: the table references it (was the raw bucket's iceberg/ folder changed by hand?)`);
    return b;
  }

  /** The bytes of an immutable file that must exist (cached). */
  async getImmutable(location: string): Promise<Buffer> {
    let p = this.cache.get(location);
    if (!p) {
      p = this.getRequired(location);
      p.catch(() => this.cache.delete(location));
      if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(location, p);
    }
    return p;
  }

  async put(key: string, body: Buffer | string, contentType: string): Promise<string> {
    await withRetry(() =>
      this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType })).catch((err: unknown) => {
        throw classify(err, `write of s3://${this.bucket}/${key}`);
      }),
    );
    return this.uri(key);
  }

  async exists(key: string): Promise<boolean> {
    return withRetry(async () => {
      try {
        await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
        return true;
      } catch (err) {
        if (isMissing(err)) return false;
        throw classify(err, `stat of s3://${this.bucket}/${key}`);
      }
    });
  }

  async metadata(location: string): Promise<TableMetadata> {
    const bytes = await this.getImmutable(location);
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new Error(`${location} is not JSON: ${(err as Error).message}`);
    }
    return checkMetadata(parsed, location);
  }

  /** Every object under the table's metadata folder. */
  async listMetadata(): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    let token: string | undefined;
    do {
      const page = await withRetry(() =>
        this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.layout.metadataPrefix, ContinuationToken: token })).catch((err: unknown) => {
          throw classify(err, `listing of s3://${this.bucket}/${this.layout.metadataPrefix}`);
        }),
      );
      for (const o of page.Contents ?? []) if (o.Key) out.push({ key: o.Key, bytes: o.Size ?? 0, lastModifiedMs: o.LastModified?.getTime() ?? 0 });
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** Deletes a metadata object (a missing one is fine); refuses any key outside the table's metadata folder. */
  async delete(key: string): Promise<void> {
    if (!key.startsWith(this.layout.metadataPrefix) || key.includes('/../'))
      throw new Error(`refusing to delete s3://${this.bucket}/${key}: the table ${this.layout.name} deletes only under ${this.layout.metadataPrefix}`);
    this.cache.delete(this.uri(key));
    await withRetry(() =>
      this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })).catch((err: unknown) => {
        if (isMissing(err)) return;
        throw classify(err, `delete of s3://${this.bucket}/${key}`);
      }),
    );
  }

  /** The number in version-hint.text, or undefined when there is none (or it is not a number). */
  async versionHint(): Promise<number | undefined> {
    const b = await this.get(this.uri(this.layout.versionHintKey));
    const n = b ? Number(b.toString('utf8').trim()) : Number.NaN;
    return Number.isInteger(n) && n > 0 ? n : undefined;
  }

  /**
   * Publishes version `version` (metadata at `location`) for readers without a catalog: writes its bytes to
   * v<version>.metadata.json, then version-hint.text. Repeating it writes the same bytes again.
   */
  async publish(version: number, location: string): Promise<void> {
    const to = this.layout.versionCopyKey(version);
    if (this.keyOf(location).key !== to) await this.put(to, await this.getImmutable(location), 'application/json');
    await this.put(this.layout.versionHintKey, String(version), 'text/plain');
  }
}
