// The rollup job (`sluice rollup`): folds per-minute partial points into one point per (series, hour) in
// events_1h and per (series, day) in events_1d, and writes the same aggregates as Parquet to the cold bucket.
// Rerunning recomputes and overwrites (idempotent); a Redis checkpoint per resolution lets a killed run resume.
import type { InfluxDB, IPoint } from 'influx';
import path from 'node:path';
import { mkdirSync, rmSync } from 'node:fs';
import type { Config } from '../../shared/config.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { createInflux, ensureDatabase, type InfluxRawResponse as RawResponse } from '../../shared/clients/influx.js';
import { createRedis } from '../../shared/clients/redis.js';
import { rollupKey, type RollupResolution, type RollupRow } from '../../shared/contracts/cold-layout.js';
import {
  FOLD_SELECT,
  GROUP_BY_SERIES,
  MEASUREMENT_1D,
  MEASUREMENT_1H,
  MEASUREMENT_1M,
  RP_1D,
  RP_1H,
  TAG_ENTITY,
  TAG_TYPE,
  influxIdent,
} from '../../shared/contracts/influx-series.js';
import { PermanentError, TransientError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { openEngine } from '../../shared/parquet.js';
import { withRetry } from '../../shared/retry.js';
import { openRollupRegistrar } from '../iceberg/rollup-commits.js';
import { chunksOf, influxRetention, PERIOD_MS, periodsOf, planRollup } from './rollup-plan.js';
import { writeRollupFile } from './rollup-sql.js';
import { rollUpAttributes } from '../dimensions/attribute-rollup.js';

export const ROLLUP_TARGETS: Record<
  RollupResolution,
  { measurement: string; rp: string; retention: (cfg: Config) => number; lateWindow: (cfg: Config) => number }
> = {
  '1h': { measurement: MEASUREMENT_1H, rp: RP_1H, retention: (c) => c.SLUICE_RETENTION_1H, lateWindow: (c) => c.SLUICE_ROLLUP_LATE_WINDOW_1H },
  '1d': { measurement: MEASUREMENT_1D, rp: RP_1D, retention: (c) => c.SLUICE_RETENTION_1D, lateWindow: (c) => c.SLUICE_ROLLUP_LATE_WINDOW_1D },
};

/** Redis key holding the end (epoch ms) of the last period a run finished for a resolution. */
export const checkpointKey = (prefix: string, res: RollupResolution) => `${prefix}rollup:done:${res}`;

/** Points this close to the end of their retention are not written to InfluxDB (it would drop them); the cold file has them. */
const RETENTION_MARGIN_MS = 10 * 60_000;

/**
 * Creates or updates the retention policies: the database's default policy (where workers write events_1m)
 * gets SLUICE_RETENTION_1M; sluice_1h and sluice_1d hold the rollups. Idempotent.
 */
export async function ensureRetentionPolicies(influx: InfluxDB, cfg: Config): Promise<void> {
  const db = cfg.SLUICE_INFLUX_DB;
  await ensureDatabase(influx, db);
  const existing = await influx.showRetentionPolicies(db);
  const defaultRp = existing.find((r) => r.default)?.name ?? 'autogen';
  const wanted: [string, number][] = [
    [defaultRp, cfg.SLUICE_RETENTION_1M],
    [RP_1H, cfg.SLUICE_RETENTION_1H],
    [RP_1D, cfg.SLUICE_RETENTION_1D],
  ];
  for (const [name, ms] of wanted) {
    const { duration, shardDuration } = influxRetention(ms);
    const verb = existing.some((r) => r.name === name) ? 'ALTER' : 'CREATE';
    await influx.query(
      `${verb} RETENTION POLICY ${influxIdent(name)} ON ${influxIdent(db)} DURATION ${duration} REPLICATION 1 SHARD DURATION ${shardDuration}`,
    );
  }
}

/** Aggregates of every series over each `res` period in [fromMs, toMs), folded from minute points. */
async function foldMinutes(influx: InfluxDB, res: RollupResolution, fromMs: number, toMs: number): Promise<RollupRow[]> {
  const stmt =
    `SELECT ${FOLD_SELECT} FROM ${influxIdent(MEASUREMENT_1M)} ` +
    `WHERE time >= ${fromMs}ms AND time < ${toMs}ms GROUP BY time(${res}), ${GROUP_BY_SERIES} fill(none)`;
  const raw = await withRetry(
    async () => {
      try {
        return (await influx.queryRaw(stmt, { precision: 'ms' })) as RawResponse;
      } catch (err) {
        throw new TransientError(`InfluxDB query for the ${res} rollup failed: ${errorMessage(err)}`, 'influx_unavailable', { cause: err });
      }
    },
    { maxAttempts: 4, initialDelayMs: 500 },
  );
  const error = raw.error ?? raw.results?.[0]?.error;
  if (error) throw new PermanentError(`InfluxDB rejected the ${res} rollup query: ${error}`, 'influx_query_rejected');
  const rows: RollupRow[] = [];
  for (const s of raw.results?.[0]?.series ?? []) {
    const col = (c: string) => s.columns.indexOf(c);
    const [t, c, su, mn, mx] = ['time', 'count', 'sum', 'min', 'max'].map(col) as [number, number, number, number, number];
    for (const v of s.values) {
      rows.push({
        entityId: s.tags?.[TAG_ENTITY] ?? '',
        eventType: s.tags?.[TAG_TYPE] ?? '',
        periodMs: Number(v[t]),
        count: Number(v[c]),
        sum: Number(v[su]),
        min: Number(v[mn]),
        max: Number(v[mx]),
      });
    }
  }
  return rows;
}

export interface RollupOptions {
  log: Logger;
  /** Explicit range to re-roll (ISO or epoch ms parsed by the caller); otherwise checkpoint + late window. */
  fromMs?: number;
  toMs?: number;
  nowMs?: number;
  resolutions?: RollupResolution[];
  /** Called after each chunk is durable (tests use it to stop a run midway). */
  afterChunk?: (res: RollupResolution, chunk: { fromMs: number; toMs: number }) => void | Promise<void>;
}

export interface RollupSummary {
  res: RollupResolution;
  fromMs: number;
  toMs: number;
  rows: number;
  points: number;
  files: string[];
}

export async function runRollup(cfg: Config, opts: RollupOptions): Promise<RollupSummary[]> {
  const nowMs = opts.nowMs ?? Date.now();
  const influx = createInflux(cfg);
  const redis = createRedis(cfg);
  const cold = new ColdStorage(cfg);
  // Each cold file is committed to the Iceberg table sluice.rollups as soon as it is written.
  const iceberg = openRollupRegistrar(cfg, opts.log, { redis, cold });
  const tmp = path.join(cfg.SLUICE_DATA_DIR, 'rollup-tmp', `${process.pid}-${nowMs}`);
  mkdirSync(tmp, { recursive: true });
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  const out: RollupSummary[] = [];
  try {
    await ensureRetentionPolicies(influx, cfg);
    for (const res of opts.resolutions ?? (['1h', '1d'] as const)) {
      const target = ROLLUP_TARGETS[res];
      const cpKey = checkpointKey(cfg.SLUICE_REDIS_PREFIX, res);
      const stored = await redis.get(cpKey);
      const range = planRollup({
        res,
        nowMs,
        checkpointMs: stored === null ? undefined : Number(stored),
        lateWindowMs: target.lateWindow(cfg),
        minuteRetentionMs: cfg.SLUICE_RETENTION_1M,
        fromMs: opts.fromMs,
        toMs: opts.toMs,
      });
      if (range.clampedFromMs !== undefined) {
        opts.log.warn(
          { res, from: new Date(range.clampedFromMs).toISOString() },
          'older periods are not recomputed: their minutes may be past SLUICE_RETENTION_1M; their rollups stay as they are',
        );
      }
      const summary: RollupSummary = { res, fromMs: range.fromMs, toMs: range.toMs, rows: 0, points: 0, files: [] };
      const retention = target.retention(cfg);
      const writableFrom = retention > 0 ? nowMs - retention + RETENTION_MARGIN_MS : Number.NEGATIVE_INFINITY;
      for (const chunk of chunksOf(res, range)) {
        // One query per period keeps each answer to the series active in that period.
        const rows: RollupRow[] = [];
        for (const p of periodsOf(res, chunk)) rows.push(...(await foldMinutes(influx, res, p, p + PERIOD_MS[res])));
        const points: IPoint[] = rows
          .filter((r) => r.periodMs >= writableFrom)
          .map((r) => ({
            measurement: target.measurement,
            tags: { [TAG_ENTITY]: r.entityId, [TAG_TYPE]: r.eventType },
            fields: { count: r.count, sum: r.sum, min: r.min, max: r.max },
            timestamp: r.periodMs,
          }));
        for (let i = 0; i < points.length; i += cfg.SLUICE_INFLUX_BATCH_POINTS) {
          const slice = points.slice(i, i + cfg.SLUICE_INFLUX_BATCH_POINTS);
          await withRetry(() => influx.writePoints(slice, { database: cfg.SLUICE_INFLUX_DB, retentionPolicy: target.rp, precision: 'ms' }), {
            maxAttempts: 4,
            initialDelayMs: 500,
          });
        }
        // The cold file of this day (hours) or month (days): recomputed periods replaced, the others kept.
        const key = rollupKey(res, chunk.fromMs);
        const existing = (await cold.stat(key)) ? path.join(tmp, `existing-${res}.parquet`) : undefined;
        if (existing) await cold.getToFile(key, existing);
        const file = path.join(tmp, `${res}.parquet`);
        await writeRollupFile(rows, file, existing ? { file: existing, replaceFromMs: chunk.fromMs, replaceToMs: chunk.toMs } : undefined);
        await cold.putFile(key, file, { 'x-amz-meta-sluice-rollup': res });
        await iceberg.register(key);
        // The attribute series (SLUICE_DIMENSIONS) of the same periods, before the checkpoint moves past them.
        await rollUpAttributes({ influx, cold, cfg, res, retentionPolicy: target.rp, chunk, writableFromMs: writableFrom, tmp, log: opts.log });
        const cp = await redis.get(cpKey);
        if (cp === null || (Number(cp) >= chunk.fromMs && Number(cp) < chunk.toMs)) await redis.set(cpKey, String(chunk.toMs));
        summary.rows += rows.length;
        summary.points += points.length;
        summary.files.push(key);
        opts.log.info({ res, from: new Date(chunk.fromMs).toISOString(), to: new Date(chunk.toMs).toISOString(), rows: rows.length, key }, 'rolled up');
        await opts.afterChunk?.(res, chunk);
      }
      out.push(summary);
    }
    return out;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    iceberg.close();
    redis.disconnect();
  }
}
