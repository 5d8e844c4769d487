// The cold bucket's client (MinIO's S3 client, so any S3-compatible endpoint can serve the cold tier):
// streamed uploads and downloads with retries on transient faults; every failure names s3://bucket/key.
import * as Minio from 'minio';
import type { Config } from '../config.js';
import { classify, TransientError } from '../errors.js';
import { awsCredentials, type AwsConfig } from './aws.js';
import { RETRY, withRetry } from '../retry.js';

/** Multipart part size: below fauxqs' 11 MiB request limit, above S3's 5 MiB minimum. */
export const COLD_PART_SIZE = 8 * 1024 * 1024;

export interface ColdObject {
  key: string;
  bytes: number;
  etag: string;
  lastModified: Date;
}

type ColdConfig = AwsConfig & Pick<Config, 'SLUICE_COLD_ENDPOINT' | 'SLUICE_COLD_BUCKET'>;

function clientOf(cfg: ColdConfig): Minio.Client {
  const endpoint = cfg.SLUICE_COLD_ENDPOINT || cfg.AWS_ENDPOINT_URL;
  const u = new URL(endpoint || `https://s3.${cfg.AWS_REGION}.amazonaws.com`);
  // The same credentials as the S3 and SQS clients (clients/aws.ts); MinIO has no provider chain, so none = anonymous.
  const creds = awsCredentials(cfg, endpoint);
  return new Minio.Client({
    endPoint: u.hostname,
    port: u.port ? Number(u.port) : undefined,
    useSSL: u.protocol === 'https:',
    accessKey: creds?.accessKeyId ?? '',
    secretKey: creds?.secretAccessKey ?? '',
    sessionToken: creds?.sessionToken,
    region: cfg.AWS_REGION,
    pathStyle: true,
    partSize: COLD_PART_SIZE,
  });
}

const isNotFound = (err: unknown) => {
  const code = (err as { code?: string }).code;
  return code === 'NotFound' || code === 'NoSuchKey' || code === 'NoSuchObject';
};

export class ColdStorage {
  readonly bucket: string;
  private readonly client: Minio.Client;

  constructor(cfg: ColdConfig) {
    this.bucket = cfg.SLUICE_COLD_BUCKET;
    this.client = clientOf(cfg);
  }

  private where(key: string) {
    return `s3://${this.bucket}/${key}`;
  }

  private run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return withRetry(async () => {
      try {
        return await fn();
      } catch (err) {
        throw classify(err, what);
      }
    }, RETRY.coldStorage);
  }

  /** Uploads a local file (multipart above COLD_PART_SIZE); replaces any object under `key`. */
  async putFile(key: string, file: string, metadata: Record<string, string> = {}): Promise<void> {
    await this.run(`upload to ${this.where(key)}`, () =>
      this.client.fPutObject(this.bucket, key, file, { 'Content-Type': 'application/vnd.apache.parquet', ...metadata }),
    );
  }

  async putText(key: string, body: string, contentType = 'application/json'): Promise<void> {
    await this.run(`upload to ${this.where(key)}`, () =>
      this.client.putObject(this.bucket, key, Buffer.from(body), undefined, { 'Content-Type': contentType }),
    );
  }

  /** Downloads an object to `file` (streamed). */
  async getToFile(key: string, file: string): Promise<void> {
    await this.run(`download of ${this.where(key)}`, () => this.client.fGetObject(this.bucket, key, file));
  }

  async getText(key: string): Promise<string> {
    return this.run(`download of ${this.where(key)}`, async () => {
      const stream = await this.client.getObject(this.bucket, key);
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    });
  }

  /** The object's size, etag and time, or undefined when it does not exist. */
  async stat(key: string): Promise<ColdObject | undefined> {
    return this.run(`stat of ${this.where(key)}`, async () => {
      try {
        const s = await this.client.statObject(this.bucket, key);
        return { key, bytes: s.size, etag: s.etag, lastModified: s.lastModified };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  /** Every object under `prefix`, in key order. */
  async list(prefix: string): Promise<ColdObject[]> {
    return this.run(
      `listing of ${this.where(prefix)}`,
      () =>
        new Promise<ColdObject[]>((resolve, reject) => {
          const out: ColdObject[] = [];
          const stream = this.client.listObjectsV2(this.bucket, prefix, true);
          stream.on('data', (o) => {
            if (o.name) out.push({ key: o.name, bytes: o.size ?? 0, etag: o.etag ?? '', lastModified: o.lastModified ?? new Date(0) });
          });
          stream.on('error', reject);
          stream.on('end', () => resolve(out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))));
        }),
    );
  }

  /** Deletes objects (missing ones are fine); throws when any delete failed. */
  async remove(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const chunk = keys.slice(i, i + 1000);
      await this.run(`delete in s3://${this.bucket}`, async () => {
        const errors = (await this.client.removeObjects(this.bucket, [...chunk])) as { Code?: string; Key?: string; Message?: string }[];
        const failed = errors.filter((e) => e?.Code && e.Code !== 'NoSuchKey');
        if (failed.length)
          throw new TransientError(
            `could not delete ${failed.length} object(s) in s3://${this.bucket}, e.g. ${failed[0]!.Key}: ${failed[0]!.Message}`,
            'cold_delete_failed',
          );
      });
    }
  }
}
