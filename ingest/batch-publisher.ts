// Publishes converted Parquet batches: each object to S3 under its deterministic raw key, then one manifest per
// object to SQS. Idempotent: an object already uploaded with the same event count is kept (so manifests already
// sent still match its checksum), and publishing again only re-announces the same objects. Used by segment
// delivery and by quarantine release; each object and each send is reported as a pipeline event when `events` is given.
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { S3Client } from '@aws-sdk/client-s3';
import { type IPolicy, noop } from 'cockatiel';
import { encodeManifest, MANIFEST_VERSION, type BatchManifest } from '../shared/contracts/manifest.js';
import { PARQUET_SCHEMA_VERSION, RAW_OBJECT_METADATA, rawEventsKey } from '../shared/contracts/parquet-schema.js';
import type { WrittenBatch } from './parquet-batch-writer.js';
import { headObject, sha256File, uploadFile } from '../shared/clients/object-store.js';
import { queueUrl } from '../shared/clients/aws.js';
import { classify } from '../shared/errors.js';
import { retryPolicy } from '../shared/retry.js';
import type { IngestEvents } from './ingest-events.js';

export interface PublisherOptions {
  s3: S3Client;
  sqs: SQSClient;
  bucket: string;
  queueName: string;
  /** Node part of the keys, and the manifests' producer. */
  node: string;
  s3Breaker?: IPolicy;
  sqsBreaker?: IPolicy;
  events?: IngestEvents;
}

const META_SHA = RAW_OBJECT_METADATA.sha256;
const META_EVENTS = RAW_OBJECT_METADATA.eventCount;

export class BatchPublisher {
  private readonly retry = retryPolicy({ maxAttempts: 4, initialDelayMs: 200, maxDelayMs: 5_000 });
  private readonly s3Breaker: IPolicy;
  private readonly sqsBreaker: IPolicy;

  constructor(private readonly o: PublisherOptions) {
    this.s3Breaker = o.s3Breaker ?? noop;
    this.sqsBreaker = o.sqsBreaker ?? noop;
  }

  /** The raw key of a batch of `unique` (a WAL segment id, or a release id). */
  keyOf(b: Pick<WrittenBatch, 'partition'>, unique: string): string {
    return rawEventsKey(b.partition, this.o.node, unique);
  }

  /** Uploads every batch (or keeps the copy already there) and announces them; returns the manifests sent. */
  async publish(written: readonly WrittenBatch[], unique: string): Promise<BatchManifest[]> {
    const { events } = this.o;
    const manifests: BatchManifest[] = [];
    for (const b of written) {
      const key = this.keyOf(b, unique);
      const existing = await this.s3Breaker.execute(() => this.retry.execute(() => headObject(this.o.s3, this.o.bucket, key)));
      let sha256: string;
      let bytes: number;
      let seconds: number | undefined;
      if (existing?.metadata[META_SHA] && Number(existing.metadata[META_EVENTS]) === b.eventCount) {
        // Uploaded before a crash: keep that object so manifests already sent still match its checksum.
        sha256 = existing.metadata[META_SHA]!;
        bytes = existing.bytes;
      } else {
        ({ sha256, bytes } = await sha256File(b.file));
        const tu = performance.now();
        await this.s3Breaker.execute(() =>
          this.retry.execute(() =>
            uploadFile(this.o.s3, this.o.bucket, key, b.file, {
              [META_SHA]: sha256,
              [META_EVENTS]: String(b.eventCount),
              [RAW_OBJECT_METADATA.schemaVersion]: String(PARQUET_SCHEMA_VERSION),
            }).catch((err: unknown) => {
              throw classify(err, `upload s3://${this.o.bucket}/${key}`);
            }),
          ),
        );
        seconds = (performance.now() - tu) / 1000;
      }
      manifests.push({
        manifestVersion: MANIFEST_VERSION,
        bucket: this.o.bucket,
        key,
        eventCount: b.eventCount,
        minEventTime: new Date(b.minEventTimeMs).toISOString(),
        maxEventTime: new Date(b.maxEventTimeMs).toISOString(),
        byteSize: bytes,
        checksum: { algorithm: 'sha256', value: sha256 },
        schemaVersion: PARQUET_SCHEMA_VERSION,
        producer: this.o.node,
        createdAt: new Date().toISOString(),
      });
      events?.emit({ type: 'BatchUploaded', key, events: b.eventCount, bytes, seconds });
    }
    const ts = performance.now();
    await this.sendManifests(manifests);
    events?.emit({ type: 'ManifestsSent', unique, manifests: manifests.length, seconds: (performance.now() - ts) / 1000 });
    return manifests;
  }

  private async sendManifests(manifests: BatchManifest[]): Promise<void> {
    if (!manifests.length) return;
    const url = await queueUrl(this.o.sqs, this.o.queueName);
    for (let i = 0; i < manifests.length; i += 10) {
      let entries = manifests.slice(i, i + 10).map((m, j) => ({ Id: String(j), MessageBody: encodeManifest(m) }));
      await this.sqsBreaker.execute(() =>
        this.retry.execute(async () => {
          try {
            const r = await this.o.sqs.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries }));
            const failed = new Set((r.Failed ?? []).map((f) => f.Id));
            if (failed.size) {
              entries = entries.filter((e) => failed.has(e.Id));
              throw classify(
                Object.assign(new Error(`SQS rejected ${failed.size} manifest(s): ${r.Failed?.map((f) => f.Message).join('; ')}`), {
                  $retryable: r.Failed?.some((f) => !f.SenderFault),
                }),
                `send to SQS queue ${this.o.queueName}`,
              );
            }
          } catch (err) {
            throw classify(err, `send to SQS queue ${this.o.queueName}`);
          }
        }),
      );
    }
  }
}
