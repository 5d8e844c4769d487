// The stages of one batch, in order: decode manifest + check its source → fetch + verify object → scan Parquet
// (rows that break the contract set aside, each event id counted once within the batch) → aggregate → write InfluxDB
// (narrowed to the points it refuses) → quarantine the set-aside rows → top-K and all-time totals of exactly the points
// InfluxDB stored → remove temp file. Across batches, ingest lets an event id into the archive at most once within
// SLUICE_DEDUP_WINDOW (it reserves each id before its WAL append), so a batch needs no claim on its ids. process() resolves only once every effect is durable; the message handler alone then acknowledges
// (deletes the message). Every stage is idempotent for the same batch, and the
// quarantine object fixes which points were refused before any Redis effect, so redelivery at any point gives the
// same result. One bad row never fails its batch; only a batch that cannot be read at all is dead-lettered.
import type { S3Client } from '@aws-sdk/client-s3';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { decodeManifest } from '../shared/contracts/manifest.js';
import { PermanentError, SluiceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { scanBatch } from './batch-scan.js';
import type { RejectedPoint } from './batch-scan-types.js';
import { checkBatchSource, fetchBatch } from './fetch-batch.js';
import type { InfluxSink } from './influx-sink.js';
import type { QuarantineSink } from './quarantine-sink.js';
import type { BatchStats, DurableBatch } from './outcome.js';
import { batchKeyOf, batchOffsetNs } from './point-offset.js';
import { TOPK_BASE_BUCKET_MS, type TopKUpdater } from './topk.js';
import type { EntityTotalsUpdater } from './entity-totals.js';
import type { BatchEnrichment } from './dimensions/batch-enrichment.js';

/** Points between stages where a fault can be injected (the step has just completed). */
export const BATCH_STEPS = ['decoded', 'fetched', 'scanned', 'aggregated', 'written', 'quarantined', 'topk_updated', 'totals_updated', 'before_ack'] as const;
export type BatchStep = (typeof BATCH_STEPS)[number];

/** Called after each step; a throw there behaves like a failure of that step (used by fault tests). */
export type StepHook = (step: BatchStep, ctx: { messageId: string; batchKey?: string; signal: AbortSignal }) => void | Promise<void>;

export interface BatchProcessorDeps {
  s3: S3Client;
  sink: InfluxSink;
  /** Points per InfluxDB write request. */
  pointsPerRequest: number;
  topk: TopKUpdater;
  totals: EntityTotalsUpdater;
  /** With SLUICE_DIMENSIONS set: writes the batch's per-attribute series once its entity points are stored (workers/dimensions/). */
  enrichment?: BatchEnrichment;
  quarantine: QuarantineSink;
  /** SLUICE_RAW_BUCKET: the only bucket a manifest may name. */
  rawBucket: string;
  /** Folder for downloaded batches (SLUICE_DATA_DIR/worker-tmp). */
  tempDir: string;
  log: Logger;
  onStep?: StepHook;
}

export interface BatchInput {
  messageId: string;
  body: string | undefined;
  /** Aborted when the worker stops; the batch then ends at the next step boundary. */
  signal: AbortSignal;
}

export class BatchProcessor {
  constructor(private readonly d: BatchProcessorDeps) {}

  /** Runs every stage of one batch; resolves once all its effects are durable, throws (classified later) otherwise. */
  async process(input: BatchInput): Promise<DurableBatch> {
    const { signal, messageId } = input;
    const step = async (s: BatchStep, batchKey?: string) => {
      signal.throwIfAborted();
      await this.d.onStep?.(s, { messageId, batchKey, signal });
    };
    const manifest = decodeManifest(input.body);
    checkBatchSource(manifest, this.d.rawBucket);
    const batchKey = batchKeyOf(manifest);
    await step('decoded', batchKey);
    // Points refused on an earlier delivery stay refused (the quarantine object is the decision of record), so
    // InfluxDB, top-K and totals all leave out the same points whatever step an earlier attempt reached. Read while the
    // batch downloads.
    const earlierRefused = settled(this.d.quarantine.rejectedPoints(manifest.key, signal));
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
        await scan.rejectPoints(await earlierRefused());
        const lines = await scan.minuteLines({ offsetNs: batchOffsetNs(batchKey), linesPerChunk: this.d.pointsPerRequest });
        await step('aggregated', batchKey);
        // The Redis effects' inputs are computed by the engine while InfluxDB is written (engine work beside network
        // I/O); only when InfluxDB refuses points are they computed again without them.
        const prepareRedis = () => settled(Promise.all([scan.countBuckets(TOPK_BASE_BUCKET_MS), scan.entityTotals()]));
        let redisInputs = prepareRedis();
        const refusedLines = await this.d.sink.writeLines(lines.chunks, signal);
        const refused: RejectedPoint[] = [];
        if (refusedLines.length) {
          await redisInputs().catch(() => undefined);
          const keys = await scan.pointsAt(refusedLines);
          for (const [i, k] of keys.entries()) refused.push({ ...k, reason: refusedLines[i]!.reason, detail: refusedLines[i]!.detail });
          await scan.rejectPoints(refused);
          redisInputs = prepareRedis();
        }
        await step('written', batchKey);
        const [buckets, totals] = await redisInputs();
        if (this.d.enrichment) await this.d.enrichment.apply(scan, batchKey, signal);
        const quarantined = await scan.quarantineRows();
        if (quarantined.length) {
          const key = await this.d.quarantine.write(manifest.key, quarantined, signal);
          this.d.log.warn({ messageId, batchKey, events: quarantined.length, refusedPoints: refused.length, quarantine: key }, 'batch rows quarantined');
        }
        await step('quarantined', batchKey);
        // The two Redis effects are independent and each idempotent per batch: apply them at once, and wait for both
        // to settle (so no write of this attempt outlives it) before acknowledging or failing.
        const effects = await Promise.allSettled([
          this.d.topk.apply(batchKey, buckets).then(() => step('topk_updated', batchKey)),
          this.d.totals.apply(batchKey, totals).then(() => step('totals_updated', batchKey)),
        ]);
        for (const e of effects) if (e.status === 'rejected') throw e.reason;
        const counted = totals.reduce((n, t) => n + t.count, 0);
        const stats: BatchStats = {
          batchKey,
          rows: scan.rowCount,
          counted,
          duplicates: scan.rowCount - quarantined.length - counted,
          points: lines.points - refused.length,
        };
        await step('before_ack', batchKey);
        return { stats, setAside: { events: countBy(quarantined), rejectedPoints: countBy(refused) } };
      } finally {
        await scan.close(); // after the engine's queries still running (the Redis inputs, when a step failed)
      }
    } finally {
      await rm(fetched.file, { force: true });
    }
  }
}

/** Starts `p` now and returns its awaiter; a rejection before anyone awaits it is held, never reported as unhandled. */
function settled<T>(p: Promise<T>): () => Promise<T> {
  p.catch(() => undefined);
  return () => p;
}

function countBy(xs: readonly { reason: string }[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x.reason, (m.get(x.reason) ?? 0) + 1);
  return m;
}
