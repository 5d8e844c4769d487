// The stages of one batch, in order: decode manifest → fetch + verify object → scan Parquet → claim event ids →
// aggregate → write InfluxDB, top-K and all-time totals (together) → acknowledge → remove temp file. Every stage
// before the acknowledgement is idempotent for the same batch, so a crash at any point is repaired by redelivery.
import type { S3Client } from '@aws-sdk/client-s3';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { decodeManifest } from '../shared/contracts/manifest.js';
import { PermanentError, SluiceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { scanBatch } from '../shared/parquet.js';
import { CLAIM_CHUNK, type EventDedup } from './event-dedup.js';
import { fetchBatch } from './fetch-batch.js';
import type { InfluxSink } from './influx-sink.js';
import { MEASUREMENT_1M, TAG_ENTITY, TAG_TYPE } from '../shared/clients/influx.js';
import type { BatchStats } from './outcome.js';
import { batchKeyOf, batchOffsetNs } from './point-offset.js';
import { TOPK_BASE_BUCKET_MS, type TopKUpdater } from './topk.js';
import type { EntityTotalsUpdater } from './entity-totals.js';

/** Points between stages where a fault can be injected (the step has just completed). */
export const BATCH_STEPS = ['decoded', 'fetched', 'scanned', 'claimed', 'aggregated', 'written', 'topk_updated', 'totals_updated', 'before_ack'] as const;
export type BatchStep = (typeof BATCH_STEPS)[number];

/** Called after each step; a throw there behaves like a failure of that step (used by fault tests). */
export type StepHook = (step: BatchStep, ctx: { messageId: string; batchKey?: string; signal: AbortSignal }) => void | Promise<void>;

export interface BatchProcessorDeps {
  s3: S3Client;
  dedup: EventDedup;
  sink: InfluxSink;
  /** Points per InfluxDB write request. */
  pointsPerRequest: number;
  topk: TopKUpdater;
  totals: EntityTotalsUpdater;
  /** Folder for downloaded batches (SLUICE_DATA_DIR/worker-tmp). */
  tempDir: string;
  log: Logger;
  onStep?: StepHook;
}

export interface BatchInput {
  messageId: string;
  body: string | undefined;
  /** Makes the effect final: stops the heartbeat and deletes the message. Called only after all effects are durable. */
  ack(): Promise<void>;
  /** Aborted when the worker stops; the batch then ends at the next step boundary. */
  signal: AbortSignal;
}

export class BatchProcessor {
  constructor(private readonly d: BatchProcessorDeps) {}

  async process(input: BatchInput): Promise<BatchStats> {
    const { signal, messageId } = input;
    const step = async (s: BatchStep, batchKey?: string) => {
      signal.throwIfAborted();
      await this.d.onStep?.(s, { messageId, batchKey, signal });
    };
    const manifest = decodeManifest(input.body);
    const batchKey = batchKeyOf(manifest);
    await step('decoded', batchKey);
    const fetched = await fetchBatch(this.d.s3, manifest, this.d.tempDir, `${randomUUID()}.parquet`, signal);
    try {
      await step('fetched', batchKey);
      const scan = await scanBatch(fetched.file).catch((err: unknown) => {
        if (err instanceof SluiceError && err.code === 'batch_corrupt')
          throw new PermanentError(`s3://${manifest.bucket}/${manifest.key}: ${err.message}`, err.code, { cause: err });
        throw err;
      });
      try {
        await step('scanned', batchKey);
        const { excluded } = await this.d.dedup.claimChunks(batchKey, await scan.idChunks(CLAIM_CHUNK));
        await step('claimed', batchKey);
        const lines = await scan.minuteLines(excluded, {
          measurement: MEASUREMENT_1M,
          entityTag: TAG_ENTITY,
          typeTag: TAG_TYPE,
          offsetNs: batchOffsetNs(batchKey),
          linesPerChunk: this.d.pointsPerRequest,
        });
        const buckets = await scan.countBuckets(excluded, TOPK_BASE_BUCKET_MS);
        const totals = await scan.entityTotals(excluded);
        await step('aggregated', batchKey);
        // The three effects are independent and each idempotent per batch: write them at once, and wait for all of
        // them to settle (so no write of this attempt outlives it) before acknowledging or failing.
        const effects = await Promise.allSettled([
          this.d.sink.writeLines(lines.chunks, signal).then(() => step('written', batchKey)),
          this.d.topk.apply(batchKey, buckets).then(() => step('topk_updated', batchKey)),
          this.d.totals.apply(batchKey, totals).then(() => step('totals_updated', batchKey)),
        ]);
        for (const e of effects) if (e.status === 'rejected') throw e.reason;
        const counted = lines.events;
        const stats: BatchStats = { batchKey, rows: scan.rowCount, counted, duplicates: scan.rowCount - counted, points: lines.points };
        await step('before_ack', batchKey);
        await input.ack();
        this.d.log.debug({ messageId, ...stats }, 'batch delivered');
        return stats;
      } finally {
        scan.close();
      }
    } finally {
      await rm(fetched.file, { force: true });
    }
  }
}
