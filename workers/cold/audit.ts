// The audit (`sluice audit`): recomputes count and sum per (entity, event type) over a range from the Parquet
// archive (live raw files + verified compacted files, each event id once) and compares them with what the
// query API answers — a different path through the pipeline. Any difference is reported as a mismatch.
import type { S3Client } from '@aws-sdk/client-s3';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../../shared/config.js';
import { createS3 } from '../../shared/clients/aws.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { createInflux } from '../../shared/clients/influx.js';
import { DAY_MS } from '../../shared/contracts/cold-layout.js';
import { GROUP_BY_SERIES, MEASUREMENT_1M, TAG_ENTITY, TAG_TYPE, influxIdent, tagIs } from '../../shared/contracts/influx-series.js';
import { TransientError, errorMessage } from '../../shared/errors.js';
import { openEngine } from '../../shared/parquet.js';
import { withRetry } from '../../shared/retry.js';
import { downloadRaw, resolveDay } from './archive.js';
import { archiveTotals } from './audit-sql.js';

export interface AuditOptions {
  fromMs: number;
  toMs: number;
  entityId?: string;
  eventType?: string;
  /** Query API base URL (default SLUICE_QUERY_URL). */
  queryUrl?: string;
  progress?: (msg: string) => void;
  /** Parallel API requests. */
  concurrency?: number;
}

export interface AuditRow {
  /** Which answer differs: the whole range at 1h/1d steps (rollups, cold tier) or at 1m steps (minute points). */
  view: 'rollups' | 'minutes';
  entityId: string;
  eventType: string;
  archiveCount: number;
  apiCount: number;
  archiveSum: number;
  apiSum: number;
}

export interface AuditReport {
  fromMs: number;
  toMs: number;
  files: { raw: number; compacted: number };
  checked: number;
  mismatches: AuditRow[];
}

const MINUTE_MS = 60_000;
/** The API snaps ranges to whole minutes (query/params.ts); the audit compares the same range. */
const ceilToMinute = (ms: number) => Math.ceil(ms / MINUTE_MS) * MINUTE_MS;
/** The API's bucket limit: 1h steps up to this range, 1d beyond. */
const HOUR_STEP_MAX_MS = 10_000 * 3_600_000 - 3_600_000;
/** Longest range one 1m-step request may cover (the API's 10,000-bucket limit). */
const MINUTE_STEP_MAX_MS = 9_999 * MINUTE_MS;
/** Minutes this close to the end of their retention may be expiring while the audit runs; not compared. */
const RETENTION_MARGIN_MS = 3_600_000;

export function sameSum(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
}

/** Days (YYYY-MM-DD) that event times in [fromMs, toMs) fall on. */
export function daysOf(fromMs: number, toMs: number): string[] {
  const out: string[] = [];
  for (let d = Math.floor(fromMs / DAY_MS) * DAY_MS; d < toMs; d += DAY_MS) out.push(new Date(d).toISOString().slice(0, 10));
  return out;
}

async function apiTotal(
  base: string,
  q: { entityId: string; eventType: string; fromMs: number; toMs: number },
  fn: 'count' | 'sum',
  fine = false,
): Promise<number> {
  if (fine && q.toMs - q.fromMs > MINUTE_STEP_MAX_MS) {
    let total = 0;
    for (let a = q.fromMs; a < q.toMs; a += MINUTE_STEP_MAX_MS)
      total += await apiTotal(base, { ...q, fromMs: a, toMs: Math.min(q.toMs, a + MINUTE_STEP_MAX_MS) }, fn, true);
    return total;
  }
  const step = fine ? '1m' : q.toMs - q.fromMs <= HOUR_STEP_MAX_MS ? '1h' : '1d';
  const url = `${base}/v1/stats?${new URLSearchParams({ entityId: q.entityId, eventType: q.eventType, fn, from: String(q.fromMs), to: String(q.toMs), step })}`;
  return withRetry(
    async () => {
      let res: Response;
      try {
        res = await fetch(url, { signal: AbortSignal.timeout(30_000), headers: { 'cache-control': 'no-cache' } }); // the stores, not the answer cache
      } catch (err) {
        throw new TransientError(`query API ${base} unreachable: ${errorMessage(err)}`, 'query_unavailable', { cause: err });
      }
      if (res.status >= 500) throw new TransientError(`query API answered ${res.status} for ${url}`, 'query_unavailable');
      if (!res.ok) throw new Error(`query API answered ${res.status} for ${url}: ${await res.text()}`);
      const body = (await res.json()) as { total: number | null };
      return body.total ?? 0;
    },
    { maxAttempts: 5, initialDelayMs: 500 },
  );
}

/** Series that have minute points in the range (so a series the archive lacks is still checked). */
async function hotSeries(cfg: Config, o: AuditOptions, fromMs: number, toMs: number): Promise<[string, string][]> {
  const where = [
    `time >= ${fromMs}ms`,
    `time < ${toMs}ms`,
    ...(o.entityId !== undefined ? [tagIs(TAG_ENTITY, o.entityId)] : []),
    ...(o.eventType !== undefined ? [tagIs(TAG_TYPE, o.eventType)] : []),
  ].join(' AND ');
  const rows = await createInflux(cfg).query<Record<string, string>>(
    `SELECT sum("count") FROM ${influxIdent(MEASUREMENT_1M)} WHERE ${where} GROUP BY ${GROUP_BY_SERIES}`,
  );
  return rows.map((r) => [r[TAG_ENTITY]!, r[TAG_TYPE]!]);
}

/** Downloads into `tmp` every file the archive holds for `days`: live raw batch files and verified compacted files. */
async function downloadArchive(
  cfg: Config,
  s3: S3Client,
  cold: ColdStorage,
  tmp: string,
  days: readonly string[],
  progress?: (msg: string) => void,
): Promise<{ files: string[]; raw: number; compacted: number }> {
  const files: string[] = [];
  let raw = 0;
  let compacted = 0;
  for (const [i, dt] of days.entries()) {
    const day = await resolveDay(s3, cfg.SLUICE_RAW_BUCKET, cold, dt);
    for (const r of day.liveRaw) {
      const f = path.join(tmp, `raw-${files.length}.parquet`);
      await downloadRaw(s3, cfg.SLUICE_RAW_BUCKET, r.key, f);
      files.push(f);
      raw++;
    }
    for (const m of day.manifests) {
      const f = path.join(tmp, `compacted-${files.length}.parquet`);
      await cold.getToFile(m.output.key, f);
      files.push(f);
      compacted++;
    }
    progress?.(`archive: ${dt} (${i + 1}/${days.length} days, ${files.length} files)`);
  }
  return { files, raw, compacted };
}

export async function runAudit(cfg: Config, o: AuditOptions): Promise<AuditReport> {
  const fromMs = ceilToMinute(o.fromMs);
  const toMs = ceilToMinute(o.toMs);
  const base = (o.queryUrl ?? cfg.SLUICE_QUERY_URL).replace(/\/$/, '');
  const s3 = createS3(cfg);
  const cold = new ColdStorage(cfg);
  const tmp = path.join(cfg.SLUICE_DATA_DIR, 'audit-tmp', `${process.pid}-${Date.now()}`);
  mkdirSync(tmp, { recursive: true });
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  try {
    // 1. The archive: where each event lives right now (see workers/cold/archive.ts).
    const { files, raw, compacted } = await downloadArchive(cfg, s3, cold, tmp, daysOf(fromMs, toMs), o.progress);
    const totals = await archiveTotals(files, { fromMs, toMs, entityId: o.entityId, eventType: o.eventType });
    // The part of the range InfluxDB still holds minutes for is also compared at 1m steps, so a wrong minute
    // point is caught even where a (correct) rollup answers the coarse query.
    const fineFrom = cfg.SLUICE_RETENTION_1M > 0 ? Math.max(fromMs, ceilToMinute(Date.now() - cfg.SLUICE_RETENTION_1M + RETENTION_MARGIN_MS)) : fromMs;
    const fineTotals = fineFrom < toMs ? await archiveTotals(files, { fromMs: fineFrom, toMs, entityId: o.entityId, eventType: o.eventType }) : [];
    const fine = new Map(fineTotals.map((t) => [`${t.entityId}\u0000${t.eventType}`, t]));
    o.progress?.(`archive: ${totals.length} series recomputed from ${raw} raw and ${compacted} compacted files`);

    // 2. The API's answer for every series the archive or InfluxDB knows in the range.
    const expected = new Map(totals.map((t) => [`${t.entityId}\u0000${t.eventType}`, t]));
    for (const [entityId, eventType] of await hotSeries(cfg, o, fromMs, toMs)) {
      const k = `${entityId}\u0000${eventType}`;
      if (!expected.has(k)) expected.set(k, { entityId, eventType, count: 0, sum: 0 });
    }
    const series = [...expected.values()];
    const mismatches: AuditRow[] = [];
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < series.length) {
        const s = series[next++]!;
        const q = { entityId: s.entityId, eventType: s.eventType, fromMs, toMs };
        const [apiCount, apiSum] = [await apiTotal(base, q, 'count'), await apiTotal(base, q, 'sum')];
        if (apiCount !== s.count || !sameSum(apiSum, s.sum)) {
          mismatches.push({ view: 'rollups', entityId: s.entityId, eventType: s.eventType, archiveCount: s.count, apiCount, archiveSum: s.sum, apiSum });
        }
        if (fineFrom < toMs) {
          const f = fine.get(`${s.entityId}\u0000${s.eventType}`) ?? { count: 0, sum: 0 };
          const fq = { ...q, fromMs: fineFrom };
          const [fineCount, fineSum] = [await apiTotal(base, fq, 'count', true), await apiTotal(base, fq, 'sum', true)];
          if (fineCount !== f.count || !sameSum(fineSum, f.sum)) {
            mismatches.push({
              view: 'minutes',
              entityId: s.entityId,
              eventType: s.eventType,
              archiveCount: f.count,
              apiCount: fineCount,
              archiveSum: f.sum,
              apiSum: fineSum,
            });
          }
        }
        if (++done % 500 === 0) o.progress?.(`api: ${done}/${series.length} series compared, ${mismatches.length} mismatch(es)`);
      }
    };
    await Promise.all(Array.from({ length: o.concurrency ?? 8 }, worker));
    mismatches.sort((a, b) => (a.entityId < b.entityId ? -1 : a.entityId > b.entityId ? 1 : a.eventType < b.eventType ? -1 : 1));
    return { fromMs, toMs, files: { raw, compacted }, checked: series.length, mismatches };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    s3.destroy();
  }
}

/** The mismatch table `sluice audit` prints. */
export function formatAudit(r: AuditReport): string {
  const head =
    `audit ${new Date(r.fromMs).toISOString()} → ${new Date(r.toMs).toISOString()}: ${r.checked} series checked ` +
    `(${r.files.raw} raw + ${r.files.compacted} compacted files), ${r.mismatches.length} mismatch(es)`;
  if (!r.mismatches.length) return head;
  const rows = r.mismatches.map((m) => [
    m.view,
    m.entityId,
    m.eventType,
    String(m.archiveCount),
    String(m.apiCount),
    String(m.apiCount - m.archiveCount),
    String(m.archiveSum),
    String(m.apiSum),
  ]);
  const header = ['view', 'entity_id', 'event_type', 'archive_count', 'api_count', 'diff', 'archive_sum', 'api_sum'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [head, '', line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
