// The commit job (`sluice iceberg commit`, and every SLUICE_ICEBERG_COMMIT_INTERVAL from `sluice start`): brings the
// Iceberg tables up to date. sluice.events: per event-time day the verified compactions the table lacks
// (workers/iceberg/archive-commits.ts), then the raw batches that are durable — carrying ingest's object metadata,
// of a readable schema version, and either delivered (in the ledger of workers/reconcile/) or written more than
// SLUICE_RECONCILE_GRACE ago, so a batch whose segment is still being redelivered (same key, rewritten) waits.
// sluice.rollups: the rollup files it lacks or holds an older version of (workers/iceberg/rollup-commits.ts). Then
// the maintenance of both (workers/iceberg/maintenance.ts): snapshot expiry and the metadata folder's clean-up.
// Safe to run at any time, twice at once, or again after a crash at any step.
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import path from 'node:path';
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
import { MAX_BATCHES_PER_COMMIT, appendBatches, commitCompaction, tableHoldings, type DurableBatch } from './archive-commits.js';
import { IcebergTable, type CommitStep } from './iceberg-table.js';
import { maintainTable, maintenanceProperties, maintenanceSettings, type MaintenanceSettings, type MaintenanceSummary } from './maintenance.js';
import { commitRollups, openRollupsTable, type RollupCommitResult } from './rollup-commits.js';

export interface CommitJobDeps {
  /** sluice.events. */
  table: IcebergTable;
  /** sluice.rollups. */
  rollups: IcebergTable;
  s3: S3Client;
  cold: ColdStorage;
  ledger: BatchLedger;
  rawBucket: string;
  graceMs: number;
  /** Folder for rollup files downloaded while their rows are counted. */
  tmpDir: string;
  /** Maintenance after the commits (undefined: none). */
  maintenance?: MaintenanceSettings;
  log: Logger;
}

export interface CommitJobSummary {
  /** Version of sluice.events after the run. */
  version: number;
  /** Event-time days looked at. */
  days: number;
  compactions: number;
  appended: number;
  /** Raw batches not appended yet: written within the grace and not delivered. */
  waiting: number;
  /** Objects that cannot be registered (no ingest metadata, unreadable schema version, unreadable rollup), with the reason. */
  problems: string[];
  /** sluice.rollups: its version and the files it registered, swapped for a new version, removed. */
  rollups: { version: number; added: number; replaced: number; removed: number };
  /** One per table, when the job maintained them. */
  maintenance: MaintenanceSummary[];
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

/**
 * Runs the job once: sluice.events over every day of the archive (or `days`), sluice.rollups over every rollup
 * file, then (unless `maintain` is false or the deps have no settings) the maintenance of both tables.
 */
export async function runCommitJob(
  deps: CommitJobDeps,
  o: { days?: string[]; nowMs?: number; maintain?: boolean; progress?: (m: string) => void } = {},
): Promise<CommitJobSummary> {
  const t0 = performance.now();
  const nowMs = o.nowMs ?? Date.now();
  const s: CommitJobSummary = {
    version: 0,
    days: 0,
    compactions: 0,
    appended: 0,
    waiting: 0,
    problems: [],
    rollups: { version: 0, added: 0, replaced: 0, removed: 0 },
    maintenance: [],
    seconds: 0,
  };
  await commitArchive(deps, s, { ...o, nowMs });
  const r: RollupCommitResult = await commitRollups({ table: deps.rollups, cold: deps.cold, log: deps.log, tmpDir: deps.tmpDir });
  s.rollups = { version: r.version, added: r.added.length, replaced: r.replaced.length, removed: r.removed.length };
  s.problems.push(...r.problems);
  if (r.committed) o.progress?.(`iceberg: sluice.rollups at version ${r.version}`);
  if (deps.maintenance && o.maintain !== false)
    for (const table of [deps.table, deps.rollups]) s.maintenance.push(await maintainTable(table, deps.maintenance, { nowMs }));
  s.seconds = (performance.now() - t0) / 1000;
  return s;
}

async function commitArchive(deps: CommitJobDeps, s: CommitJobSummary, o: { days?: string[]; nowMs: number; progress?: (m: string) => void }): Promise<void> {
  const nowMs = o.nowMs;
  let cur = await deps.table.ensure();
  s.version = cur.version;

  // Days: those with raw batches, and those with a compaction the table does not hold yet.
  const have = (await tableHoldings(deps.table, cur)).compactions;
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
      if (have.has(m.id)) continue;
      const r = await commitCompaction(deps, m);
      if (r.committed) s.compactions++;
    }
    candidates.push(...day.liveRaw.map((r) => r.key));
  }

  cur = (await deps.table.current())!;
  const held = (await tableHoldings(deps.table, cur)).files;
  const open = candidates.filter((k) => !held.has(deps.table.files.uri(k)));
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
}

export function formatMaintenance(m: MaintenanceSummary): string {
  if (m.version === 0) return `iceberg ${m.table}: no table yet, nothing to maintain`;
  return (
    `iceberg ${m.table} maintained at version ${m.version}: ${m.snapshots} snapshot(s) kept, ${m.expiredSnapshots} expired; ` +
    `${m.deletedExpired} file(s) of expired snapshots, ${m.deletedMetadata} old metadata file(s) and ${m.deletedOrphans} orphan(s) deleted`
  );
}

export function formatCommitJob(s: CommitJobSummary): string {
  const lines = [
    `iceberg sluice.events at version ${s.version}: ${s.days} day(s) looked at, ${s.compactions} compaction(s) and ${s.appended} batch(es) committed, ` +
      `${s.waiting} batch(es) waiting (written within the grace, not delivered yet) in ${s.seconds.toFixed(1)} s`,
    `iceberg sluice.rollups at version ${s.rollups.version}: ${s.rollups.added} file(s) added, ${s.rollups.replaced} replaced by their new version, ` +
      `${s.rollups.removed} removed`,
    ...s.maintenance.map(formatMaintenance),
  ];
  for (const p of s.problems) lines.push(`  not registered: ${p}`);
  return lines.join('\n');
}

/**
 * The tables and the clients a job needs, from the configuration; close() releases them. `onStep` and `now` go to
 * both tables (tests: fault injection, a shifted clock).
 */
export function openArchiveTable(
  cfg: Config,
  log: Logger,
  opts: { onStep?: (step: CommitStep, info: { version: number; attempt: number }) => void | Promise<void>; redis?: RedisClient; now?: () => number } = {},
): { deps: CommitJobDeps; close(): void } {
  const s3 = createS3(cfg);
  const redis = opts.redis ?? createRedis(cfg);
  const maintenance = maintenanceSettings(cfg);
  const properties = maintenanceProperties(maintenance);
  const table = new IcebergTable({
    s3,
    redis,
    rawBucket: cfg.SLUICE_RAW_BUCKET,
    redisPrefix: cfg.SLUICE_REDIS_PREFIX,
    log,
    onStep: opts.onStep,
    now: opts.now,
    properties,
  });
  const rollups = openRollupsTable(cfg, log, redis, { onStep: opts.onStep, now: opts.now, properties });
  return {
    deps: {
      table,
      rollups: rollups.table,
      s3,
      cold: new ColdStorage(cfg),
      ledger: new BatchLedger(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_LEDGER_RETENTION),
      rawBucket: cfg.SLUICE_RAW_BUCKET,
      graceMs: cfg.SLUICE_RECONCILE_GRACE,
      tmpDir: path.join(cfg.SLUICE_DATA_DIR, 'iceberg-tmp'),
      maintenance,
      log,
    },
    close() {
      s3.destroy();
      rollups.close();
      if (!opts.redis) redis.disconnect();
    },
  };
}
