// Delivers sealed WAL segments: Parquet per event-time hour (ingest/parquet-batch-writer.ts) → S3 under deterministic keys →
// one manifest per object to SQS → only then the WAL releases (deletes) the segment. S3/SQS failures back off with jitter and retry
// without limit (nothing is ever dropped); circuit breakers on S3 and SQS make /readyz report not ready. A segment
// the engine cannot read is split once: its bad lines go to the quarantine (contracts/quarantine.ts) first, then its
// good lines are delivered under the same keys, then it is released — so one bad line never holds a delivery slot.
// Each step is reported as a pipeline event (ingest/ingest-events.ts), which gives its log line and metrics.
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { S3Client } from '@aws-sdk/client-s3';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { CircuitBreakerPolicy } from 'cockatiel';
import type { Logger } from '../shared/logger.js';
import type { IngestEvents } from './ingest-events.js';
import type { BatchManifest } from '../shared/contracts/manifest.js';
import { segmentQuarantineKey } from '../shared/contracts/quarantine.js';
import { writeEventBatches, type WrittenBatch } from './parquet-batch-writer.js';
import { putQuarantineFile } from '../shared/clients/quarantine-store.js';
import { classify, classifyEngineError, errorMessage, SluiceError } from '../shared/errors.js';
import { backoffDelay, breakerIsOpen, dependencyBreaker, retryPolicy, sleep } from '../shared/retry.js';
import type { Segment } from './wal-segments.js';
import type { IngestMetrics } from './metrics.js';
import { BatchPublisher } from './batch-publisher.js';
import { splitSegment, type SplitResult } from './segment-split.js';

/** Code of the PermanentError raised when the engine cannot read a segment's own content. */
export const SEGMENT_UNREADABLE = 'segment_unreadable';

/** Converts staged event lines to Parquet batches; engine failures on their content become PermanentError(segment_unreadable). */
export async function convertEventLines(files: readonly string[], outDir: string, where: string): Promise<WrittenBatch[]> {
  try {
    return await writeEventBatches(files, outDir);
  } catch (err) {
    throw classifyEngineError(err, where, SEGMENT_UNREADABLE);
  }
}

export interface DeliveryOptions {
  s3: S3Client;
  sqs: SQSClient;
  bucket: string;
  queueName: string;
  node: string;
  tmpDir: string;
  concurrency: number;
  log: Logger;
  events: IngestEvents;
  metrics: Pick<IngestMetrics, 'backlogBytes'>;
  /** Removes a delivered segment's file (WriteAheadLog.release): called once every manifest of it is in SQS. */
  release: (seg: Segment) => void;
  /**
   * Makes the segment file hold exactly the lines to deliver (ingest/segment-resolution.ts: lines of reservations
   * aborted in favour of another request are cut) before it is converted; absent, every line is delivered.
   */
  resolve?: (seg: Segment) => Promise<void>;
}

export class SegmentDelivery {
  private queue: Segment[] = [];
  private active = 0;
  private backlog = 0;
  private waiters: (() => void)[] = [];
  private stopped = false;
  readonly s3Breaker: CircuitBreakerPolicy = dependencyBreaker(5, 5_000);
  readonly sqsBreaker: CircuitBreakerPolicy = dependencyBreaker(5, 5_000);
  private readonly retry = retryPolicy({ maxAttempts: 4, initialDelayMs: 200, maxDelayMs: 5_000 });

  private readonly publisher: BatchPublisher;
  /** Segments whose quarantine object is written but which are not delivered yet. */
  private readonly quarantinedSegments = new Set<string>();

  constructor(private readonly o: DeliveryOptions) {
    this.publisher = new BatchPublisher({
      s3: o.s3,
      sqs: o.sqs,
      bucket: o.bucket,
      queueName: o.queueName,
      node: o.node,
      s3Breaker: this.s3Breaker,
      sqsBreaker: this.sqsBreaker,
      events: o.events,
    });
  }

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
        this.o.events.emit({ type: 'SegmentDeliveryRetried', segment: seg.id, attempt, retryInMs: Math.round(delay), err: errorMessage(err) });
        await sleep(delay);
      }
    }
  }

  /** One attempt: idempotent, so a crash or failure at any step is repaired by running it again. */
  async deliver(seg: Segment): Promise<BatchManifest[]> {
    const { events } = this.o;
    const t0 = performance.now();
    const outDir = path.join(this.o.tmpDir, seg.id);
    try {
      await this.o.resolve?.(seg);
      let written: WrittenBatch[] = [];
      try {
        if (seg.events > 0) written = await convertEventLines([seg.path], outDir, `convert WAL segment ${seg.path}`);
      } catch (err) {
        if (!(err instanceof SluiceError && err.code === SEGMENT_UNREADABLE)) throw err;
        written = await this.splitAndQuarantine(seg, outDir, err);
      }
      events.emit({ type: 'SegmentConverted', segment: seg.id, batches: written.length, seconds: (performance.now() - t0) / 1000 });
      const manifests = await this.publisher.publish(written, seg.id);
      this.o.release(seg);
      this.quarantinedSegments.delete(seg.id);
      const delivered = manifests.reduce((n, m) => n + m.eventCount, 0);
      events.emit({ type: 'SegmentDelivered', segment: seg.id, objects: manifests.length, events: delivered, ms: Math.round(performance.now() - t0) });
      return manifests;
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  }

  /**
   * The engine cannot read the segment: split it into good lines and quarantine records, convert the good lines
   * (when even they fail, quarantine every line with the engine's error) and write the quarantine object. Returns the
   * batches of the good lines, still to be published. Runs again identically after a crash (same quarantine key).
   */
  private async splitAndQuarantine(seg: Segment, outDir: string, cause: SluiceError): Promise<WrittenBatch[]> {
    const { log, node } = this.o;
    mkdirSync(outDir, { recursive: true });
    const cleanFile = path.join(outDir, 'clean.ndjson');
    const quarantineFile = path.join(outDir, 'quarantine.ndjson');
    const split = { segmentFile: seg.path, cleanFile, quarantineFile, node, segmentId: seg.id };
    log.warn({ segment: seg.id, err: cause.message }, 'WAL segment cannot be converted; splitting it into good lines and quarantined lines');
    let r: SplitResult = await splitSegment(split);
    let written: WrittenBatch[] = [];
    if (r.goodLines > 0) {
      try {
        written = await convertEventLines([cleanFile], path.join(outDir, 'clean'), `convert the good lines of WAL segment ${seg.path}`);
      } catch (err) {
        if (!(err instanceof SluiceError && err.code === SEGMENT_UNREADABLE)) throw err;
        log.warn({ segment: seg.id, err: err.message }, 'the good lines of the segment still cannot be converted; quarantining every line');
        r = await splitSegment({ ...split, rejectAll: { reason: 'engine_rejected', detail: err.message } });
        written = [];
      }
    }
    if (r.badLines > 0) {
      const key = segmentQuarantineKey(node, seg.id);
      const firstReason = r.byReason.keys().next().value ?? 'unknown';
      await this.s3Breaker.execute(() =>
        this.retry.execute(() =>
          putQuarantineFile(this.o.s3, this.o.bucket, key, quarantineFile, { events: r.badLines, firstReason, kind: 'segment' }).catch((err: unknown) => {
            throw classify(err, `write quarantine object s3://${this.o.bucket}/${key}`);
          }),
        ),
      );
      // Counted once per segment, although a failed publish below repeats this step on the next attempt.
      const repeated = this.quarantinedSegments.has(seg.id);
      this.quarantinedSegments.add(seg.id);
      this.o.events.emit({
        type: 'SegmentQuarantined',
        segment: seg.id,
        quarantined: r.badLines,
        delivered: r.goodLines,
        reasons: Object.fromEntries(r.byReason),
        firstReason,
        object: `s3://${this.o.bucket}/${key}`,
        repeated,
      });
    }
    return written;
  }
}
