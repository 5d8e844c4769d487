// Delivers sealed WAL segments: Parquet per event-time hour (shared/parquet.ts) → S3 under deterministic keys →
// one manifest per object to SQS → only then the segment is deleted. Failures back off with jitter and retry
// without limit (nothing is ever dropped); circuit breakers on S3 and SQS make /readyz report not ready.
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { S3Client } from '@aws-sdk/client-s3';
import { rmSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { CircuitBreakerPolicy } from 'cockatiel';
import type { Logger } from '../shared/logger.js';
import { encodeManifest, type BatchManifest } from '../shared/contracts/manifest.js';
import { PARQUET_SCHEMA_VERSION, rawEventsKey } from '../shared/contracts/parquet-schema.js';
import { writeEventBatches } from '../shared/parquet.js';
import { headObject, sha256File, uploadFile } from '../shared/clients/object-store.js';
import { queueUrl } from '../shared/clients/aws.js';
import { classify, errorMessage } from '../shared/errors.js';
import { backoffDelay, breakerIsOpen, dependencyBreaker, retryPolicy, sleep } from '../shared/retry.js';
import type { Segment } from './wal.js';
import type { IngestMetrics } from './metrics.js';

export interface DeliveryOptions {
  s3: S3Client;
  sqs: SQSClient;
  bucket: string;
  queueName: string;
  node: string;
  tmpDir: string;
  concurrency: number;
  log: Logger;
  metrics: IngestMetrics;
}

const META_SHA = 'sluice-sha256';
const META_EVENTS = 'sluice-event-count';

export class SegmentDelivery {
  private queue: Segment[] = [];
  private active = 0;
  private backlog = 0;
  private waiters: (() => void)[] = [];
  private stopped = false;
  readonly s3Breaker: CircuitBreakerPolicy = dependencyBreaker(5, 5_000);
  readonly sqsBreaker: CircuitBreakerPolicy = dependencyBreaker(5, 5_000);
  private readonly retry = retryPolicy({ maxAttempts: 4, initialDelayMs: 200, maxDelayMs: 5_000 });

  constructor(private readonly o: DeliveryOptions) {}

  /** Bytes of sealed segments not yet delivered. */
  get backlogBytes(): number {
    return this.backlog;
  }
  get pendingSegments(): number {
    return this.queue.length + this.active;
  }

  /** Why ingest should not receive traffic, if it should not. */
  notReadyReason(): string | undefined {
    if (breakerIsOpen(this.s3Breaker)) return 'S3 circuit breaker is open';
    if (breakerIsOpen(this.sqsBreaker)) return 'SQS circuit breaker is open';
    return undefined;
  }

  enqueue(seg: Segment): void {
    this.queue.push(seg);
    this.backlog += seg.bytes;
    this.o.metrics.backlogBytes.set(this.backlog);
    this.pump();
  }

  /** Resolves when every enqueued segment has been delivered. */
  async drain(): Promise<void> {
    while (this.queue.length + this.active > 0) await new Promise<void>((r) => this.waiters.push(r));
  }

  stop(): void {
    this.stopped = true;
  }

  private pump(): void {
    while (!this.stopped && this.active < this.o.concurrency && this.queue.length > 0) {
      const seg = this.queue.shift()!;
      this.active++;
      void this.deliverUntilDone(seg).finally(() => {
        this.active--;
        this.backlog -= seg.bytes;
        this.o.metrics.backlogBytes.set(this.backlog);
        for (const w of this.waiters.splice(0)) w();
        this.pump();
      });
    }
  }

  private async deliverUntilDone(seg: Segment): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await this.deliver(seg);
        return;
      } catch (err) {
        const delay = backoffDelay(attempt, 500, 30_000);
        this.o.metrics.deliveryFailures.inc();
        this.o.log.warn(
          { segment: seg.id, attempt, retryInMs: Math.round(delay), err: errorMessage(err) },
          'segment delivery failed; it stays in the WAL and will be retried',
        );
        await sleep(delay);
      }
    }
  }

  /** One attempt: idempotent, so a crash or failure at any step is repaired by running it again. */
  async deliver(seg: Segment): Promise<BatchManifest[]> {
    const { log, metrics } = this.o;
    const t0 = performance.now();
    const outDir = path.join(this.o.tmpDir, seg.id);
    try {
      const written = await writeEventBatches([seg.path], outDir);
      metrics.encodeSeconds.observe((performance.now() - t0) / 1000);
      const manifests: BatchManifest[] = [];
      for (const b of written) {
        const key = rawEventsKey(b.partition, this.o.node, seg.id);
        const existing = await this.s3Breaker.execute(() => this.retry.execute(() => headObject(this.o.s3, this.o.bucket, key)));
        let sha256: string;
        let bytes: number;
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
                'sluice-schema-version': String(PARQUET_SCHEMA_VERSION),
              }).catch((err: unknown) => {
                throw classify(err, `upload s3://${this.o.bucket}/${key}`);
              }),
            ),
          );
          metrics.uploadSeconds.observe((performance.now() - tu) / 1000);
        }
        manifests.push({
          manifestVersion: '1.0',
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
        metrics.flushEvents.observe(b.eventCount);
        metrics.flushBytes.observe(bytes);
      }
      const ts = performance.now();
      await this.sendManifests(manifests);
      metrics.sqsSeconds.observe((performance.now() - ts) / 1000);
      unlinkSync(seg.path);
      metrics.segmentsDelivered.inc();
      log.info(
        { segment: seg.id, objects: manifests.length, events: manifests.reduce((n, m) => n + m.eventCount, 0), ms: Math.round(performance.now() - t0) },
        'segment delivered',
      );
      return manifests;
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  }

  private async sendManifests(manifests: BatchManifest[]): Promise<void> {
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
