// The commit job (`sluice iceberg commit`, and every SLUICE_ICEBERG_COMMIT_INTERVAL from `sluice start`): brings the
// Iceberg table up to date with the archive. Per event-time day it commits the verified compactions the table lacks
// (workers/iceberg/archive-commits.ts), then appends the raw batches that are durable — carrying ingest's object
// metadata, of a readable schema version, and either delivered (in the ledger of workers/reconcile/) or written more
// than SLUICE_RECONCILE_GRACE ago, so a batch whose segment is still being redelivered (same key, rewritten) waits.
// Safe to run at any time, twice at once, or again after a crash at any step.
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Config } from '../../shared/config.js';
import { createS3 } from '../../shared/clients/aws.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { createRedis, type RedisClient } from '../../shared/clients/redis.js';
import { COMPACTED_PREFIX, parseCompactedKey } from '../../shared/contracts/cold-layout.js';
import { RAW_OBJECT_METADATA, READABLE_SCHEMA_VERSIONS } from '../../shared/contracts/parquet-schema.js';
import { classify } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { withRetry } from '../../shared/retry.js';
import { rawDays, resolveDay } from '../cold/archive.js';
import { batchKeyOf } from '../point-offset.js';
import { BatchLedger } from '../reconcile/ledger.js';
import { MAX_BATCHES_PER_COMMIT, appendBatches, commitCompaction, type DurableBatch } from './archive-commits.js';
import { IcebergTable, type CommitStep } from './iceberg-table.js';
import { committedBatchKeys, committedCompactions } from './table-metadata.js';

export interface CommitJobDeps {
  table: IcebergTable;
  s3: S3Client;
  cold: ColdStorage;
  ledger: BatchLedger;
  rawBucket: string;
  graceMs: number;
  log: Logger;
}

export interface CommitJobSummary {
  version: number;
  /** Event-time days looked at. */
  days: number;
  compactions: number;
  appended: number;
  /** Raw batches not appended yet: written within the grace and not delivered. */
  waiting: number;
  /** Objects that cannot be registered (no ingest metadata, unreadable schema version), with the reason. */
  problems: string[];
  seconds: number;
}

const HEAD_CONCURRENCY = 16;

interface Head {
  bytes: number;
  writtenMs: number;
  metadata: Record<string, string>;
}

async function head(s3: S3Client, bucket: string, key: string): Promise<Head | undefined> {
  return withRetry(async () => {
    try {
      const r = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return { bytes: r.ContentLength ?? 0, writtenMs: r.LastModified?.getTime() ?? 0, metadata: r.Metadata ?? {} };
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404) return undefined; // compacted away meanwhile
      throw classify(err, `reading the metadata of s3://${bucket}/${key}`);
    }
  });
}

/** Runs the job once over every day of the archive (or `days`). */
export async function runCommitJob(
  deps: CommitJobDeps,
  o: { days?: string[]; nowMs?: number; progress?: (m: string) => void } = {},
): Promise<CommitJobSummary> {
  const t0 = performance.now();
  const nowMs = o.nowMs ?? Date.now();
  const s: CommitJobSummary = { version: 0, days: 0, compactions: 0, appended: 0, waiting: 0, problems: [], seconds: 0 };
  let cur = await deps.table.ensure();
  s.version = cur.version;

  // Days: those with raw batches, and those with a compaction the table does not hold yet.
  const have = committedCompactions(cur.metadata);
  const coldDays = new Set<string>();
  for (const obj of await deps.cold.list(COMPACTED_PREFIX)) {
    const k = parseCompactedKey(obj.key);
    if (k?.kind === 'manifest' && !have.has(k.id)) coldDays.add(k.dt);
  }
  const days = [...new Set([...(o.days ?? (await rawDays(deps.s3, deps.rawBucket))), ...(o.days ? [] : coldDays)])].sort();
  s.days = days.length;

  const candidates: string[] = [];
  for (const dt of days) {
    const day = await resolveDay(deps.s3, deps.rawBucket, deps.cold, dt);
    for (const m of day.manifests) {
      if (committedCompactions(cur.metadata).has(m.id)) continue;
      const r = await commitCompaction(deps, m);
      if (r.committed) s.compactions++;
      cur = (await deps.table.current())!;
    }
    candidates.push(...day.liveRaw.map((r) => r.key));
  }

  const committed = committedBatchKeys(cur.metadata);
  const open = candidates.filter((k) => !committed.has(k));
  const delivered = await deps.ledger.delivered(open.map((key) => batchKeyOf({ bucket: deps.rawBucket, key })));
  const ready: DurableBatch[] = [];
  for (let i = 0; i < open.length; i += HEAD_CONCURRENCY) {
    const chunk = open.slice(i, i + HEAD_CONCURRENCY);
    const heads = await Promise.all(chunk.map((key) => head(deps.s3, deps.rawBucket, key)));
    for (const [j, h] of heads.entries()) {
      const key = chunk[j]!;
      if (!h) continue;
      const rows = Number(h.metadata[RAW_OBJECT_METADATA.eventCount]);
      const version = Number(h.metadata[RAW_OBJECT_METADATA.schemaVersion]);
      if (!Number.isInteger(rows) || rows < 0) {
        s.problems.push(`s3://${deps.rawBucket}/${key}: no ${RAW_OBJECT_METADATA.eventCount} metadata (not written by ingest); not registered`);
        continue;
      }
      if (!READABLE_SCHEMA_VERSIONS.includes(version)) {
        s.problems.push(
          `s3://${deps.rawBucket}/${key}: schema version ${h.metadata[RAW_OBJECT_METADATA.schemaVersion] ?? '(none)'} is not readable by this build; not registered`,
        );
        continue;
      }
      if (!delivered.has(batchKeyOf({ bucket: deps.rawBucket, key })) && h.writtenMs > nowMs - deps.graceMs) {
        s.waiting++;
        continue;
      }
      ready.push({ key, bytes: h.bytes, rows });
    }
  }
  for (let i = 0; i < ready.length; i += MAX_BATCHES_PER_COMMIT) {
    const r = await appendBatches(deps, ready.slice(i, i + MAX_BATCHES_PER_COMMIT));
    s.appended += r.added.length;
    o.progress?.(`iceberg: ${s.appended} batch(es) appended, version ${r.version}`);
  }
  s.version = (await deps.table.current())?.version ?? s.version;
  s.seconds = (performance.now() - t0) / 1000;
  return s;
}

export function formatCommitJob(s: CommitJobSummary): string {
  const lines = [
    `iceberg sluice.events at version ${s.version}: ${s.days} day(s) looked at, ${s.compactions} compaction(s) and ${s.appended} batch(es) committed, ` +
      `${s.waiting} batch(es) waiting (written within the grace, not delivered yet) in ${s.seconds.toFixed(1)} s`,
  ];
  for (const p of s.problems) lines.push(`  not registered: ${p}`);
  return lines.join('\n');
}

/** The table and the clients a job needs, from the configuration; close() releases them. */
export function openArchiveTable(
  cfg: Config,
  log: Logger,
  opts: { onStep?: (step: CommitStep, info: { version: number; attempt: number }) => void | Promise<void>; redis?: RedisClient } = {},
): { deps: CommitJobDeps; close(): void } {
  const s3 = createS3(cfg);
  const redis = opts.redis ?? createRedis(cfg);
  const table = new IcebergTable({ s3, redis, rawBucket: cfg.SLUICE_RAW_BUCKET, redisPrefix: cfg.SLUICE_REDIS_PREFIX, log, onStep: opts.onStep });
  return {
    deps: {
      table,
      s3,
      cold: new ColdStorage(cfg),
      ledger: new BatchLedger(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_LEDGER_RETENTION),
      rawBucket: cfg.SLUICE_RAW_BUCKET,
      graceMs: cfg.SLUICE_RECONCILE_GRACE,
      log,
    },
    close() {
      s3.destroy();
      if (!opts.redis) redis.disconnect();
    },
  };
}
