// Compaction (`sluice compact`): merges the raw batch files of event-time days older than SLUICE_COMPACT_AFTER
// into one sorted, zstd file per day and run in the cold bucket. Crash-safe at every step: the compacted file
// counts only once its manifest exists, the manifest is written only after the uploaded copy was read back
// and matched the inputs (rows + id checksum), the Iceberg table swaps the originals for it (a replace snapshot,
// workers/iceberg/), and originals are deleted last: by a later run, once the replace is older than
// SLUICE_COMPACTION_DELETE_GRACE, so readers of the snapshots before it can finish (0 = at once); a rerun finishes
// any step. Until then readers skip them already: the manifest supersedes them (archive.ts).
import type { S3Client } from '@aws-sdk/client-s3';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../../shared/config.js';
import { createS3 } from '../../shared/clients/aws.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { sha256File } from '../../shared/clients/object-store.js';
import {
  COMPACTION_MANIFEST_VERSION,
  DAY_MS,
  compactedKey,
  compactionId,
  compactionManifestKey,
  encodeCompactionManifest,
  type CompactionManifest,
} from '../../shared/contracts/cold-layout.js';
import { PermanentError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { openEngine } from '../../shared/parquet.js';
import { commitCompaction } from '../iceberg/archive-commits.js';
import type { IcebergTable } from '../iceberg/iceberg-table.js';
import { openArchiveTable } from '../iceberg/commit-job.js';
import { SUMMARY } from '../iceberg/table-metadata.js';
import { deleteRaw, downloadRaw, rawDays, resolveDay } from './archive.js';
import { compactEventFiles, fingerprintEventFiles } from './compaction-sql.js';

/** Steps after which a run may stop; a rerun must always complete the day without loss or duplicates. `originals-deleted` only with SLUICE_COMPACTION_DELETE_GRACE 0. */
export type CompactionStep = 'uploaded' | 'verified' | 'manifest-written' | 'table-committed' | 'originals-deleted';

/** Compacted files without a manifest older than this are leftovers of an abandoned run and are removed. */
export const ORPHAN_AGE_MS = 3_600_000;

export interface CompactionOptions {
  log: Logger;
  nowMs?: number;
  /** Only these days (YYYY-MM-DD), still subject to SLUICE_COMPACT_AFTER. */
  days?: string[];
  /** Called after each step (fault-injection point for tests; a throw stops the run there). */
  onStep?: (step: CompactionStep, info: { dt: string; id: string }) => void | Promise<void>;
  /** Progress lines for long runs. */
  progress?: (msg: string) => void;
}

export interface DayResult {
  dt: string;
  /** Compaction id, or undefined when the day had no live raw files. */
  id?: string;
  inputs: number;
  rows: number;
  bytesIn: number;
  bytesOut: number;
  /** Raw files of earlier, interrupted runs deleted by this run. */
  finishedDeletes: number;
  /** Superseded raw files left in place because their compaction's replace is younger than SLUICE_COMPACTION_DELETE_GRACE (this run's inputs included). */
  pendingDeletes: number;
}

/**
 * When each compaction of `manifests` was committed to the table: its snapshot's time (summary sluice.compaction-id),
 * or the manifest's createdAt when the snapshot has expired (the manifest is written before the commit).
 */
async function committedAt(table: IcebergTable, manifests: readonly CompactionManifest[]): Promise<Map<string, number>> {
  const snapshots = (await table.current())?.metadata.snapshots ?? [];
  const out = new Map<string, number>();
  for (const m of manifests) {
    const times = snapshots.filter((s) => s.summary[SUMMARY.compactionId] === m.id).map((s) => s['timestamp-ms']);
    out.set(m.id, times.length ? Math.max(...times) : Date.parse(m.createdAt));
  }
  return out;
}

/** Days whose event-time day ended at least SLUICE_COMPACT_AFTER before now. */
export function dueDays(days: readonly string[], nowMs: number, compactAfterMs: number): string[] {
  return days.filter((dt) => Date.parse(`${dt}T00:00:00Z`) + DAY_MS <= nowMs - compactAfterMs);
}

async function compactDay(
  cfg: Config,
  s3: S3Client,
  cold: ColdStorage,
  table: IcebergTable,
  dt: string,
  tmp: string,
  o: CompactionOptions,
  nowMs: number,
): Promise<DayResult> {
  const day = await resolveDay(s3, cfg.SLUICE_RAW_BUCKET, cold, dt);
  const result: DayResult = { dt, inputs: 0, rows: 0, bytesIn: 0, bytesOut: 0, finishedDeletes: 0, pendingDeletes: 0 };
  const iceberg = { table, rawBucket: cfg.SLUICE_RAW_BUCKET, log: o.log };
  const grace = cfg.SLUICE_COMPACTION_DELETE_GRACE;

  // 1. Finish what an earlier run verified but did not delete: the table first lets go of those files (a no-op when
  //    done), then the raw files of compactions committed at least the grace ago go; younger ones wait for a later run.
  const justCommitted = new Set<string>();
  for (const m of day.manifests) if ((await commitCompaction(iceberg, m)).committed) justCommitted.add(m.id);
  if (day.supersededRaw.length) {
    const at = grace > 0 ? await committedAt(table, day.manifests) : new Map<string, number>();
    const young = new Set(day.manifests.filter((m) => grace > 0 && (justCommitted.has(m.id) || nowMs - at.get(m.id)! < grace)).flatMap((m) => m.inputs));
    const ripe = day.supersededRaw.filter((r) => !young.has(r.key));
    result.pendingDeletes = day.supersededRaw.length - ripe.length;
    if (ripe.length) {
      await deleteRaw(
        s3,
        cfg.SLUICE_RAW_BUCKET,
        ripe.map((r) => r.key),
      );
      result.finishedDeletes = ripe.length;
      o.log.info({ dt, deleted: ripe.length }, 'deleted raw files an earlier compaction had replaced');
    }
    if (result.pendingDeletes)
      o.log.info({ dt, pending: result.pendingDeletes, graceMs: grace }, 'kept raw files of a compaction younger than SLUICE_COMPACTION_DELETE_GRACE');
  }
  const inputs = day.liveRaw.map((r) => r.key).sort();
  const id = inputs.length ? compactionId(inputs) : undefined;
  // 2. Remove abandoned unverified outputs (never read by anyone); keep a fresh one, it may be a concurrent run's.
  const orphans = day.unverified.filter((u) => !u.key.includes(`compacted-${id}.`) && nowMs - u.lastModified.getTime() > ORPHAN_AGE_MS);
  if (orphans.length) await cold.remove(orphans.map((u) => u.key));
  if (!id) return result;

  // 3. Merge the live raw files.
  const dir = path.join(tmp, dt);
  mkdirSync(dir, { recursive: true });
  const local: string[] = [];
  for (const [i, key] of inputs.entries()) {
    const f = path.join(dir, `in-${i}.parquet`);
    await downloadRaw(s3, cfg.SLUICE_RAW_BUCKET, key, f);
    local.push(f);
    if ((i + 1) % 50 === 0) o.progress?.(`${dt}: downloaded ${i + 1}/${inputs.length} raw files`);
  }
  const merged = path.join(dir, 'compacted.parquet');
  const source = await compactEventFiles(local, merged);
  const dataKey = compactedKey(dt, id);
  const { sha256, bytes } = await sha256File(merged);
  await cold.putFile(dataKey, merged, { 'sluice-compaction': id });
  await o.onStep?.('uploaded', { dt, id });

  // 4. Verify the stored copy, read back from the cold bucket, against the inputs.
  const readBack = path.join(dir, 'read-back.parquet');
  await cold.getToFile(dataKey, readBack);
  const stored = await fingerprintEventFiles([readBack]);
  const storedHash = (await sha256File(readBack)).sha256;
  if (stored.rows !== source.rows || stored.idChecksum !== source.idChecksum || storedHash !== sha256) {
    throw new PermanentError(
      `compacted file s3://${cold.bucket}/${dataKey} does not match its ${inputs.length} inputs (rows ${stored.rows} vs ${source.rows}, ids ${stored.idChecksum} vs ${source.idChecksum}); originals kept, rerun compaction`,
      'compaction_mismatch',
    );
  }
  await o.onStep?.('verified', { dt, id });

  // 5. The manifest makes the compacted file the home of these events; then the originals go (with a grace: later).
  const manifest: CompactionManifest = {
    version: COMPACTION_MANIFEST_VERSION,
    id,
    dt,
    inputBucket: cfg.SLUICE_RAW_BUCKET,
    inputs,
    output: { bucket: cold.bucket, key: dataKey, bytes, sha256 },
    rows: source.rows,
    idChecksum: source.idChecksum,
    createdAt: new Date(nowMs).toISOString(),
  };
  await cold.putText(compactionManifestKey(dt, id), encodeCompactionManifest(manifest));
  await o.onStep?.('manifest-written', { dt, id });
  await commitCompaction(iceberg, manifest);
  await o.onStep?.('table-committed', { dt, id });
  if (grace > 0) {
    result.pendingDeletes += inputs.length;
    o.log.info({ dt, id, pending: inputs.length, graceMs: grace }, 'raw files replaced; a run after SLUICE_COMPACTION_DELETE_GRACE deletes them');
  } else {
    await deleteRaw(s3, cfg.SLUICE_RAW_BUCKET, inputs);
    await o.onStep?.('originals-deleted', { dt, id });
  }
  rmSync(dir, { recursive: true, force: true });
  return { ...result, id, inputs: inputs.length, rows: source.rows, bytesIn: day.liveRaw.reduce((n, r) => n + r.bytes, 0), bytesOut: bytes };
}

/** Compacts every due day (or `days`), one at a time. */
export async function runCompaction(cfg: Config, o: CompactionOptions): Promise<DayResult[]> {
  const nowMs = o.nowMs ?? Date.now();
  const s3 = createS3(cfg);
  const cold = new ColdStorage(cfg);
  const archiveTable = openArchiveTable(cfg, o.log);
  const tmp = path.join(cfg.SLUICE_DATA_DIR, 'compaction-tmp', `${process.pid}-${nowMs}`);
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  try {
    const days = dueDays(o.days ?? (await rawDays(s3, cfg.SLUICE_RAW_BUCKET)), nowMs, cfg.SLUICE_COMPACT_AFTER);
    const out: DayResult[] = [];
    for (const [i, dt] of days.entries()) {
      o.progress?.(`compacting ${dt} (${i + 1}/${days.length})`);
      const r = await compactDay(cfg, s3, cold, archiveTable.deps.table, dt, tmp, o, nowMs);
      o.log.info(r, r.id ? 'compacted day' : 'nothing to compact');
      out.push(r);
    }
    return out;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    s3.destroy();
    archiveTable.close();
  }
}
