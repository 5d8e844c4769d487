// Reconcile and replay: the queue can be rebuilt from the archive. Reconcile lists raw batch objects, keeps those
// the ledger does not hold and that were written more than a grace ago (so not still on their way), and announces
// them again; replay announces every batch of a range (optionally only those holding one entity) on purpose.
// Both are safe to repeat: a worker's effects are idempotent per batch key (InfluxDB points overwrite themselves,
// top-K and totals are guarded by per-batch done keys, event-id claims are owned by the batch).
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import type { BatchManifest } from '../../shared/contracts/manifest.js';
import { headObject } from '../../shared/clients/object-store.js';
import { classify, errorMessage, SluiceError } from '../../shared/errors.js';
import { openEngine, queryParquet, sqlString } from '../../shared/parquet.js';
import { withRetry } from '../../shared/retry.js';
import { batchKeyOf } from '../point-offset.js';
import { manifestOfObject, sendManifests } from './announce.js';
import type { BatchLedger } from './ledger.js';
import { listBatches, type ListedBatch } from './raw-listing.js';

export interface ReconcileDeps {
  s3: S3Client;
  sqs: SQSClient;
  ledger: BatchLedger;
  rawBucket: string;
  queueName: string;
}

export interface RangeOptions {
  fromMs: number;
  toMs: number;
  /** Told every `progressEvery` listed objects (the summary is returned). */
  progress?: (message: string) => void;
  progressEvery?: number;
}

export interface ReconcileSummary {
  fromMs: number;
  toMs: number;
  /** Batch objects listed in the range. */
  listed: number;
  /** Of those, in the ledger (delivered). */
  delivered: number;
  /** Not in the ledger but written within the grace: possibly still on their way, left alone. */
  recent: number;
  /** Announced again. */
  announced: number;
  /** Objects without ingest's metadata (never announced; named in `problems`). */
  problems: string[];
  seconds: number;
}

const HEAD_CONCURRENCY = 16;
const DEFAULT_PROGRESS_EVERY = 1_000;

const iso = (ms: number) => new Date(ms).toISOString();

async function manifestsOf(deps: ReconcileDeps, batches: readonly ListedBatch[], problems: string[]): Promise<BatchManifest[]> {
  const out: BatchManifest[] = [];
  for (let i = 0; i < batches.length; i += HEAD_CONCURRENCY) {
    const heads = await Promise.all(
      batches.slice(i, i + HEAD_CONCURRENCY).map(async (b) => ({
        b,
        head: await withRetry(() =>
          headObject(deps.s3, deps.rawBucket, b.key).catch((err: unknown) => {
            throw classify(err, `reading the metadata of s3://${deps.rawBucket}/${b.key}`);
          }),
        ),
      })),
    );
    for (const { b, head } of heads) {
      if (!head) continue; // deleted since the listing (compacted): nothing to announce
      try {
        out.push(manifestOfObject(deps.rawBucket, b.key, head.bytes, head.metadata));
      } catch (err) {
        if (!(err instanceof SluiceError) || err.retryable) throw err;
        problems.push(err.message);
      }
    }
  }
  return out;
}

/** Announces every batch of [fromMs, toMs) that the ledger does not hold and that was written before now − graceMs. */
export async function reconcile(deps: ReconcileDeps, o: RangeOptions & { graceMs: number; nowMs?: number }): Promise<ReconcileSummary> {
  const t0 = performance.now();
  const cutoff = (o.nowMs ?? Date.now()) - o.graceMs;
  const s: ReconcileSummary = { fromMs: o.fromMs, toMs: o.toMs, listed: 0, delivered: 0, recent: 0, announced: 0, problems: [], seconds: 0 };
  const every = o.progressEvery ?? DEFAULT_PROGRESS_EVERY;
  let nextReport = every;
  for await (const page of listBatches(deps.s3, deps.rawBucket, o.fromMs, o.toMs)) {
    s.listed += page.length;
    const known = await deps.ledger.delivered(page.map((b) => batchKeyOf({ bucket: deps.rawBucket, key: b.key })));
    const missing: ListedBatch[] = [];
    for (const b of page) {
      if (known.has(batchKeyOf({ bucket: deps.rawBucket, key: b.key }))) s.delivered++;
      else if (b.writtenMs > cutoff) s.recent++;
      else missing.push(b);
    }
    const manifests = await manifestsOf(deps, missing, s.problems);
    await sendManifests(deps.sqs, deps.queueName, manifests);
    s.announced += manifests.length;
    if (s.listed >= nextReport) {
      o.progress?.(`reconcile: ${s.listed} batch object(s) listed, ${s.delivered} delivered, ${s.announced} announced again, ${s.recent} too recent`);
      nextReport = s.listed + every;
    }
  }
  s.seconds = (performance.now() - t0) / 1000;
  return s;
}

export function formatReconcile(s: ReconcileSummary): string {
  const lines = [
    `reconcile ${iso(s.fromMs)} → ${iso(s.toMs)}: ${s.listed} batch object(s) listed, ${s.delivered} delivered, ${s.announced} announced again, ` +
      `${s.recent} written within the grace (left alone) in ${s.seconds.toFixed(1)} s`,
  ];
  for (const p of s.problems) lines.push(`  not announced: ${p}`);
  return lines.join('\n');
}

export interface ReplaySummary {
  fromMs: number;
  toMs: number;
  entityId?: string;
  listed: number;
  /** Batches holding the entity (all listed ones without --entity). */
  matched: number;
  announced: number;
  problems: string[];
  seconds: number;
}

/** True when the Parquet object holds at least one event of `entityId` (downloaded to `tempDir`, then removed). */
async function holdsEntity(deps: ReconcileDeps, key: string, entityId: string, tempDir: string): Promise<boolean> {
  await openEngine({ tempDir });
  const file = path.join(tempDir, `${randomUUID()}.parquet`);
  try {
    await mkdir(tempDir, { recursive: true });
    await withRetry(async () => {
      try {
        const r = await deps.s3.send(new GetObjectCommand({ Bucket: deps.rawBucket, Key: key }));
        await pipeline(r.Body as Readable, createWriteStream(file));
      } catch (err) {
        throw classify(err, `download of s3://${deps.rawBucket}/${key}`);
      }
    });
    const rows = await queryParquet(`SELECT count(*) AS n FROM read_parquet(${sqlString(file)}) WHERE entity_id = ${sqlString(entityId)}`);
    return Number(rows[0]?.n ?? 0) > 0;
  } finally {
    await rm(file, { force: true });
  }
}

/** Announces every batch of [fromMs, toMs) again (only those holding `entityId` when given), delivered or not. */
export async function replay(deps: ReconcileDeps, o: RangeOptions & { entityId?: string; tempDir: string }): Promise<ReplaySummary> {
  const t0 = performance.now();
  const s: ReplaySummary = { fromMs: o.fromMs, toMs: o.toMs, entityId: o.entityId, listed: 0, matched: 0, announced: 0, problems: [], seconds: 0 };
  const every = o.progressEvery ?? DEFAULT_PROGRESS_EVERY;
  let nextReport = every;
  for await (const page of listBatches(deps.s3, deps.rawBucket, o.fromMs, o.toMs)) {
    s.listed += page.length;
    let chosen = page;
    if (o.entityId !== undefined) {
      chosen = [];
      for (const b of page) {
        try {
          if (await holdsEntity(deps, b.key, o.entityId, o.tempDir)) chosen.push(b);
        } catch (err) {
          s.problems.push(`s3://${deps.rawBucket}/${b.key}: ${errorMessage(err)}`);
        }
      }
    }
    s.matched += chosen.length;
    const manifests = await manifestsOf(deps, chosen, s.problems);
    await sendManifests(deps.sqs, deps.queueName, manifests);
    s.announced += manifests.length;
    if (s.listed >= nextReport) {
      o.progress?.(`replay: ${s.listed} batch object(s) listed, ${s.announced} announced`);
      nextReport = s.listed + every;
    }
  }
  s.seconds = (performance.now() - t0) / 1000;
  return s;
}

export function formatReplay(s: ReplaySummary): string {
  const lines = [
    `replay ${iso(s.fromMs)} → ${iso(s.toMs)}${s.entityId === undefined ? '' : ` (entity ${JSON.stringify(s.entityId)})`}: ${s.listed} batch object(s) listed, ` +
      `${s.matched} chosen, ${s.announced} announced in ${s.seconds.toFixed(1)} s`,
  ];
  for (const p of s.problems) lines.push(`  not announced: ${p}`);
  return lines.join('\n');
}
