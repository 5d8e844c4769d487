// Reads the current version of one of Sluice's Iceberg tables for the REST catalog: the commit pointer in Redis
// (shared/contracts/iceberg-table.ts) names the metadata file; without Redis, or before a pointer exists, the newest
// version published in S3 (version-hint.text → v<N>.metadata.json), which lags the pointer by at most the commit in
// progress. Metadata files never change once written, so each is fetched once (a small bounded cache).
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { RedisClient } from '../../shared/clients/redis.js';
import { decodeCommitPointer, icebergLayout, parseS3Uri, type IcebergTableLayout, type IcebergTableName } from '../../shared/contracts/iceberg-table.js';
import { classify } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';

export interface LoadedTable {
  version: number;
  metadataLocation: string;
  metadata: Record<string, unknown>;
  /** Where the version came from: the commit pointer, or the published copy when the pointer could not be read. */
  source: 'pointer' | 'published';
}

const CACHE_MAX = 64;
/** How long Redis may take before the published copy is used instead. */
const POINTER_TIMEOUT_MS = 1_000;

export class TableReader {
  private readonly cache = new Map<string, Promise<Record<string, unknown>>>();
  private redisDown = false;
  private readonly layout: IcebergTableLayout;

  constructor(private readonly o: { s3: S3Client; redis: RedisClient; rawBucket: string; redisPrefix: string; log: Logger; table?: IcebergTableName }) {
    this.layout = icebergLayout(o.table ?? 'events');
  }

  private async get(bucket: string, key: string): Promise<string | undefined> {
    try {
      const r = await this.o.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return await r.Body!.transformToString('utf8');
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
      throw classify(err, `read of s3://${bucket}/${key}`);
    }
  }

  private metadataAt(location: string): Promise<Record<string, unknown>> {
    let p = this.cache.get(location);
    if (!p) {
      const where = parseS3Uri(location);
      if (!where) throw new Error(`the Iceberg commit pointer names ${location}, which is not an s3:// location`);
      p = this.get(where.bucket, where.key).then((text) => {
        if (text === undefined) throw new Error(`Iceberg metadata file ${location} is missing`);
        return JSON.parse(text) as Record<string, unknown>;
      });
      p.catch(() => this.cache.delete(location));
      if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(location, p);
    }
    return p;
  }

  private async pointer() {
    const key = this.layout.pointerKey(this.o.redisPrefix);
    let timer: NodeJS.Timeout | undefined;
    try {
      const hash = await Promise.race([
        this.o.redis.hgetall(key),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`Redis did not answer within ${POINTER_TIMEOUT_MS} ms`)), POINTER_TIMEOUT_MS);
        }),
      ]);
      if (this.redisDown) this.o.log.info('Iceberg catalog reads the commit pointer from Redis again');
      this.redisDown = false;
      return decodeCommitPointer(hash, `Redis key ${key}`);
    } catch (err) {
      if (!this.redisDown)
        this.o.log.warn(
          { table: this.layout.name, err: (err as Error).message },
          'Iceberg catalog cannot read the commit pointer; serving the version published in S3',
        );
      this.redisDown = true;
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The current version, or undefined when the table does not exist yet. */
  async load(): Promise<LoadedTable | undefined> {
    const p = await this.pointer();
    if (p) return { version: p.version, metadataLocation: p.location, metadata: await this.metadataAt(p.location), source: 'pointer' };
    const hint = Number((await this.get(this.o.rawBucket, this.layout.versionHintKey))?.trim());
    if (!Number.isInteger(hint) || hint < 1) return undefined;
    const location = `s3://${this.o.rawBucket}/${this.layout.versionCopyKey(hint)}`;
    return { version: hint, metadataLocation: location, metadata: await this.metadataAt(location), source: 'published' };
  }
}
