// The rollup job's part for the attribute series (called by workers/cold/rollup.ts for each chunk of periods, before
// the chunk's checkpoint): every per-minute attribute measurement found in InfluxDB (whatever SLUICE_DIMENSIONS says
// now) is folded like the entity series into one point per (value, event type, period) in events_1h_by_<attribute>
// or events_1d_by_<attribute> (the rollup retention policies), with dim_version the newest table version counted in
// the period, and written as the attribute's cold rollup file (contracts/dimensions.ts), recomputed periods replaced.
// Idempotent like the entity rollups: a rerun recomputes and overwrites.
import path from 'node:path';
import type { InfluxDB } from 'influx';
import type { ColdStorage } from '../../shared/clients/cold-storage.js';
import { InfluxLineWriter, type InfluxRawResponse } from '../../shared/clients/influx.js';
import type { Config } from '../../shared/config.js';
import type { RollupResolution } from '../../shared/contracts/cold-layout.js';
import { ATTRIBUTE_ROLLUP_COLUMNS, ATTRIBUTE_ROLLUP_ORDER, type AttributeRollupRow, attributeRollupKey } from '../../shared/contracts/dimensions.js';
import {
  ATTRIBUTE_1M_REGEX,
  FIELD_DIM_VERSION,
  FOLD_SELECT,
  GROUP_BY_ATTRIBUTE_SERIES,
  TAG_TYPE,
  TAG_VALUE,
  attributeMeasurement,
  attributeOfMeasurement,
  influxIdent,
} from '../../shared/contracts/influx-series.js';
import { PermanentError, TransientError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { appendRows, castColumns, copyToParquet, sqlString, withConnection } from '../../shared/parquet.js';
import { withRetry } from '../../shared/retry.js';
import { escapeTag } from '../batch-scan-lines.js';

export interface AttributeRollupInput {
  influx: InfluxDB;
  cold: ColdStorage;
  cfg: Pick<Config, 'SLUICE_INFLUX_URL' | 'SLUICE_INFLUX_DB' | 'SLUICE_INFLUX_BATCH_POINTS'>;
  res: RollupResolution;
  /** The retention policy of `res` (RP_1H, RP_1D). */
  retentionPolicy: string;
  chunk: { fromMs: number; toMs: number };
  /** Periods starting before this are not written to InfluxDB (beyond its retention); the cold file has them. */
  writableFromMs: number;
  /** Scratch folder of the run. */
  tmp: string;
  log: Logger;
}

async function query(influx: InfluxDB, q: string, what: string): Promise<InfluxRawResponse> {
  const raw = await withRetry(
    async () => {
      try {
        return (await influx.queryRaw(q, { precision: 'ms' })) as InfluxRawResponse;
      } catch (err) {
        throw new TransientError(`InfluxDB query for ${what} failed: ${errorMessage(err)}`, 'influx_unavailable', { cause: err });
      }
    },
    { maxAttempts: 4, initialDelayMs: 500 },
  );
  const error = raw.error ?? raw.results?.find((r) => r.error)?.error;
  if (error) throw new PermanentError(`InfluxDB rejected the query for ${what}: ${error}`, 'influx_query_rejected');
  return raw;
}

/** The attributes that have per-minute series in InfluxDB. */
export async function attributesInInflux(influx: InfluxDB): Promise<string[]> {
  const raw = await query(influx, `SHOW MEASUREMENTS WITH MEASUREMENT =~ ${ATTRIBUTE_1M_REGEX}`, 'the attribute measurements');
  const out: string[] = [];
  for (const v of raw.results?.[0]?.series?.[0]?.values ?? []) {
    const a = attributeOfMeasurement(String(v[0]));
    if (a) out.push(a);
  }
  return out.sort();
}

/** Aggregates of every series of `attribute` per `res` period in [fromMs, toMs), folded from its minute points. */
async function foldAttribute(influx: InfluxDB, attribute: string, res: RollupResolution, fromMs: number, toMs: number): Promise<AttributeRollupRow[]> {
  const raw = await query(
    influx,
    `SELECT ${FOLD_SELECT}, max(${influxIdent(FIELD_DIM_VERSION)}) AS ${influxIdent(FIELD_DIM_VERSION)} FROM ${influxIdent(attributeMeasurement(attribute, '1m'))} ` +
      `WHERE time >= ${Math.trunc(fromMs)}ms AND time < ${Math.trunc(toMs)}ms GROUP BY time(${res}), ${GROUP_BY_ATTRIBUTE_SERIES} fill(none)`,
    `the ${res} rollup of ${attribute}`,
  );
  const rows: AttributeRollupRow[] = [];
  for (const s of raw.results?.[0]?.series ?? []) {
    const col = (c: string) => s.columns.indexOf(c);
    const [t, c, su, mn, mx, dv] = ['time', 'count', 'sum', 'min', 'max', FIELD_DIM_VERSION].map(col) as [number, number, number, number, number, number];
    for (const v of s.values)
      rows.push({
        value: s.tags?.[TAG_VALUE] ?? '',
        eventType: s.tags?.[TAG_TYPE] ?? '',
        periodMs: Number(v[t]),
        count: Number(v[c]),
        sum: Number(v[su]),
        min: Number(v[mn]),
        max: Number(v[mx]),
        dimVersion: Number(v[dv] ?? 0),
      });
  }
  return rows;
}

/** Writes an attribute rollup file of `rows`, keeping the rows of `merge.file` outside the recomputed periods. */
export async function writeAttributeRollupFile(
  rows: readonly AttributeRollupRow[],
  file: string,
  merge?: { file: string; replaceFromMs: number; replaceToMs: number },
): Promise<void> {
  const cols = ATTRIBUTE_ROLLUP_COLUMNS.map((c) => c.name).join(', ');
  await withConnection(async (c) => {
    try {
      await appendRows(
        c,
        'attribute_rollup_rows',
        ATTRIBUTE_ROLLUP_COLUMNS,
        rows.map((r) => ATTRIBUTE_ROLLUP_COLUMNS.map((col) => r[col.field])),
      );
      const kept = merge
        ? `UNION ALL SELECT ${castColumns(ATTRIBUTE_ROLLUP_COLUMNS)} FROM read_parquet(${sqlString(merge.file)})
           WHERE NOT (epoch_ms(period_start) >= ${Math.trunc(merge.replaceFromMs)} AND epoch_ms(period_start) < ${Math.trunc(merge.replaceToMs)})`
        : '';
      await copyToParquet(c, `SELECT * FROM (SELECT ${cols} FROM attribute_rollup_rows ${kept}) ORDER BY ${ATTRIBUTE_ROLLUP_ORDER}`, file);
    } finally {
      await c.run('DROP TABLE IF EXISTS attribute_rollup_rows');
    }
  });
}

/** Rolls up every attribute series over one chunk; returns the rows folded and the cold files written. */
export async function rollUpAttributes(p: AttributeRollupInput): Promise<{ rows: number; points: number; files: string[] }> {
  const out = { rows: 0, points: 0, files: [] as string[] };
  const writer = new InfluxLineWriter({ url: p.cfg.SLUICE_INFLUX_URL, database: p.cfg.SLUICE_INFLUX_DB, retentionPolicy: p.retentionPolicy });
  for (const attribute of await attributesInInflux(p.influx)) {
    const rows = await foldAttribute(p.influx, attribute, p.res, p.chunk.fromMs, p.chunk.toMs);
    const measurement = attributeMeasurement(attribute, p.res);
    const lines = rows
      .filter((r) => r.periodMs >= p.writableFromMs)
      .map(
        (r) =>
          `${measurement},${TAG_VALUE}=${escapeTag(r.value)},${TAG_TYPE}=${escapeTag(r.eventType)} count=${r.count}i,sum=${r.sum},min=${r.min},max=${r.max},${FIELD_DIM_VERSION}=${r.dimVersion}i ${BigInt(r.periodMs) * 1_000_000n}`,
      );
    for (let i = 0; i < lines.length; i += p.cfg.SLUICE_INFLUX_BATCH_POINTS) {
      const body = lines.slice(i, i + p.cfg.SLUICE_INFLUX_BATCH_POINTS).join('\n');
      const refused = await withRetry(() => writer.write(body), { maxAttempts: 4, initialDelayMs: 500 });
      if (refused !== undefined) throw new PermanentError(`InfluxDB refused ${p.res} rollup points of ${attribute}: ${refused}`, 'influx_rejected');
    }
    const key = attributeRollupKey(attribute, p.res, p.chunk.fromMs);
    const existing = (await p.cold.stat(key)) ? path.join(p.tmp, `existing-${attribute}-${p.res}.parquet`) : undefined;
    if (!rows.length && !existing) continue;
    if (existing) await p.cold.getToFile(key, existing);
    const file = path.join(p.tmp, `${attribute}-${p.res}.parquet`);
    await writeAttributeRollupFile(rows, file, existing ? { file: existing, replaceFromMs: p.chunk.fromMs, replaceToMs: p.chunk.toMs } : undefined);
    await p.cold.putFile(key, file, { 'x-amz-meta-sluice-rollup': p.res });
    out.rows += rows.length;
    out.points += lines.length;
    out.files.push(key);
  }
  if (out.files.length)
    p.log.info({ res: p.res, from: new Date(p.chunk.fromMs).toISOString(), rows: out.rows, files: out.files }, 'rolled up attribute series');
  return out;
}
