// Prepared batches for the worker benchmark, made by the product's own path: events → staged NDJSON → Parquet per
// event-time hour (ingest/parquet-batch-writer) → S3 object + manifest on SQS (ingest/batch-publisher.ts, as an ingest node does).
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../../shared/config.js';
import { createS3, createSqs } from '../../shared/clients/aws.js';
import type { Event } from '../../shared/contracts/event.js';
import { encodeEventLine } from '../../shared/contracts/event-line.js';
import type { BatchManifest } from '../../shared/contracts/manifest.js';
import { openEngine } from '../../shared/parquet.js';
import { writeEventBatches, type WrittenBatch } from '../../ingest/parquet-batch-writer.js';
import { BatchPublisher } from '../../ingest/batch-publisher.js';

/** Writes `events` as Parquet files (one per event-time hour) under the run's data folder. */
export async function writeBatches(cfg: Config, events: readonly Event[]): Promise<WrittenBatch[]> {
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  const dir = path.join(cfg.SLUICE_DATA_DIR, 'bench-batches', `${Date.now()}-${randomBytes(3).toString('hex')}`);
  mkdirSync(dir, { recursive: true });
  const lines = path.join(dir, 'staged.ndjson');
  writeFileSync(lines, events.map((e) => encodeEventLine(e, Date.now(), 'bench')).join(''));
  return writeEventBatches([lines], path.join(dir, 'out'));
}

/**
 * Uploads the batches to the raw bucket (once: an object already there is kept) and sends their manifests to the
 * run's queue; returns the manifests.
 */
export async function publishBatches(cfg: Config, written: readonly WrittenBatch[], unique: string): Promise<BatchManifest[]> {
  const s3 = createS3(cfg);
  const sqs = createSqs(cfg);
  try {
    const publisher = new BatchPublisher({ s3, sqs, bucket: cfg.SLUICE_RAW_BUCKET, queueName: cfg.SLUICE_QUEUE_NAME, node: cfg.SLUICE_NODE_ID });
    return await publisher.publish(written, unique);
  } finally {
    s3.destroy();
    sqs.destroy();
  }
}
