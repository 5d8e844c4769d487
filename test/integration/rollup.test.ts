// The rollup job against real InfluxDB, Redis and the S3 emulator: every hourly and daily rollup equals the
// fold of its minutes' partial points — after a rerun, after late data (inside the late window by a plain
// run, outside it by --from/--to), and after a run killed midway resumes from its checkpoint; the cold
// Parquet rollups hold the same values.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IPoint } from 'influx';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { MEASUREMENT_1D, MEASUREMENT_1H, MEASUREMENT_1M, RP_1D, RP_1H, TAG_ENTITY, TAG_TYPE } from '../../shared/contracts/influx-series.js';
import { createInflux } from '../../shared/clients/influx.js';
import { createRedis } from '../../shared/clients/redis.js';
import { DAY_MS, HOUR_MS, rollupKey } from '../../shared/contracts/cold-layout.js';
import type { Config } from '../../shared/config.js';
import { createLogger } from '../../shared/logger.js';
import { openEngine, queryParquet } from '../../shared/parquet.js';
import { checkpointKey, runRollup } from '../../workers/cold/rollup.js';
import { testConfig } from '../support/config.js';

const log = createLogger('rollup-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const MIN = 60_000;
const NOW = Date.now();
/** Midnight two days ago: its hours are complete and outside the 2h late window. */
const DAY0 = Math.floor(NOW / DAY_MS) * DAY_MS - 2 * DAY_MS;
/** The last complete hour: inside the late window. */
const RECENT = Math.floor(NOW / HOUR_MS) * HOUR_MS - HOUR_MS;

let cfg: Config;
let seq = 0;

/** A worker-style partial point: minute start + a distinct ns offset. */
function partial(entity: string, type: string, minuteMs: number, count: number, sum: number, min: number, max: number): IPoint {
  return {
    measurement: MEASUREMENT_1M,
    tags: { [TAG_ENTITY]: entity, [TAG_TYPE]: type },
    fields: { count, sum, min, max },
    timestamp: (BigInt(minuteMs) * 1_000_000n + BigInt(1_000 + seq++ * 7_919)).toString(),
  };
}

async function write(points: IPoint[]): Promise<void> {
  await createInflux(cfg).writePoints(points, { database: cfg.SLUICE_INFLUX_DB, precision: 'n' });
}

type Agg = { count: number; sum: number; min: number; max: number };
async function series(source: string, step: string, fromMs: number, toMs: number, exact = false): Promise<Map<string, Agg>> {
  const sel = exact ? '"count", "sum", "min", "max"' : 'sum("count") AS "count", sum("sum") AS "sum", min("min") AS "min", max("max") AS "max"';
  const group = exact ? `GROUP BY "${TAG_ENTITY}", "${TAG_TYPE}"` : `GROUP BY time(${step}), "${TAG_ENTITY}", "${TAG_TYPE}" fill(none)`;
  const rows = await createInflux(cfg).query<{ time: Date } & Agg & Record<string, string>>(
    `SELECT ${sel} FROM ${source} WHERE time >= ${fromMs}ms AND time < ${toMs}ms ${group}`,
  );
  const out = new Map<string, Agg>();
  for (const r of rows) {
    const k = `${r[TAG_ENTITY]}|${r[TAG_TYPE]}|${r.time.getTime()}`;
    if (out.has(k)) throw new Error(`more than one rollup point for ${k}`);
    out.set(k, { count: r.count, sum: r.sum, min: r.min, max: r.max });
  }
  return out;
}

const hours1h = () => `"${cfg.SLUICE_INFLUX_DB}"."${RP_1H}"."${MEASUREMENT_1H}"`;
const days1d = () => `"${cfg.SLUICE_INFLUX_DB}"."${RP_1D}"."${MEASUREMENT_1D}"`;

/** Rollups must equal the fold of the minutes, point for point, with exactly one point per (series, period). */
async function expectRollupsMatchMinutes(): Promise<void> {
  const from = DAY0;
  const to = Math.floor(NOW / HOUR_MS) * HOUR_MS;
  const expectedHours = await series(MEASUREMENT_1M, '1h', from, to);
  expect(expectedHours.size).toBeGreaterThan(0);
  expect(await series(hours1h(), '1h', from, to, true)).toEqual(expectedHours);
  const dayTo = Math.floor(NOW / DAY_MS) * DAY_MS;
  expect(await series(days1d(), '1d', from, dayTo, true)).toEqual(await series(MEASUREMENT_1M, '1d', from, dayTo));
}

beforeAll(async () => {
  cfg = await testConfig();
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  const pts: IPoint[] = [];
  // Two series over three hours of DAY0 and the next day, several partial points per minute, negative values too.
  for (const [h, day] of [
    [1, DAY0],
    [2, DAY0],
    [5, DAY0],
    [3, DAY0 + DAY_MS],
  ] as const) {
    for (let m = 0; m < 60; m += 7) {
      const t = day + h * HOUR_MS + m * MIN;
      pts.push(partial('e-1', 'view', t, 3, 6, 1, 3), partial('e-1', 'view', t, 2, -4, -3, -1), partial("o'brien", 'like', t, 1, 0.5, 0.5, 0.5));
    }
  }
  pts.push(partial('e-1', 'view', RECENT + 5 * MIN, 4, 40, 10, 10));
  await write(pts);
});

afterAll(async () => undefined);

describe('rollup job', () => {
  it('writes one point per series and period equal to the fold of its minutes, and the same rows as cold Parquet', async () => {
    await runRollup(cfg, { log, nowMs: NOW });
    await expectRollupsMatchMinutes();
    const policies = await createInflux(cfg).showRetentionPolicies(cfg.SLUICE_INFLUX_DB);
    expect(policies.find((p) => p.default)?.duration).toBe('168h0m0s');
    expect(policies.find((p) => p.name === RP_1H)?.duration).toBe('2160h0m0s');
    expect(policies.find((p) => p.name === RP_1D)?.duration).toBe('0s');

    // The cold file of DAY0's hours holds exactly the hourly rollups of that day.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rollup-'));
    const cold = new ColdStorage(cfg);
    await cold.getToFile(rollupKey('1h', DAY0), path.join(dir, 'h.parquet'));
    const rows = await queryParquet(
      `SELECT entity_id, event_type, epoch_ms(period_start) AS t, count, sum, min, max FROM read_parquet('${path.join(dir, 'h.parquet')}')`,
    );
    const fromCold = new Map(
      rows.map((r) => [`${r.entity_id}|${r.event_type}|${Number(r.t)}`, { count: Number(r.count), sum: r.sum, min: r.min, max: r.max }]),
    );
    expect(fromCold).toEqual(await series(MEASUREMENT_1M, '1h', DAY0, DAY0 + DAY_MS));
    await cold.getToFile(rollupKey('1d', DAY0), path.join(dir, 'd.parquet'));
    const days = await queryParquet(
      `SELECT sum(count)::BIGINT AS n FROM read_parquet('${path.join(dir, 'd.parquet')}') WHERE epoch_ms(period_start) = ${DAY0}`,
    );
    expect(Number(days[0]!.n)).toBe([...(await series(MEASUREMENT_1M, '1d', DAY0, DAY0 + DAY_MS)).values()].reduce((n, a) => n + a.count, 0));
  });

  it('is idempotent and re-rolls late data: inside the late window by a plain run, older with --from/--to', async () => {
    await runRollup(cfg, { log, nowMs: NOW });
    await expectRollupsMatchMinutes();
    // Late partial points: one in the last complete hour (late window), one on DAY0 (outside it).
    await write([partial('e-1', 'view', RECENT + 30 * MIN, 1, 1000, 1000, 1000), partial('e-1', 'view', DAY0 + HOUR_MS + 3 * MIN, 5, -50, -20, 0)]);
    await runRollup(cfg, { log, nowMs: NOW });
    const recent = await series(hours1h(), '1h', RECENT, RECENT + HOUR_MS, true);
    expect(recent.get(`e-1|view|${RECENT}`)).toEqual({ count: 5, sum: 1040, min: 10, max: 1000 });
    const stale = await series(hours1h(), '1h', DAY0 + HOUR_MS, DAY0 + 2 * HOUR_MS, true);
    expect(stale.get(`e-1|view|${DAY0 + HOUR_MS}`)!.count).toBe(9 * 5); // not re-rolled: outside the window
    await runRollup(cfg, { log, nowMs: NOW, fromMs: DAY0, toMs: DAY0 + DAY_MS });
    await expectRollupsMatchMinutes();
  });

  it('resumes from its checkpoint after a run is killed midway', async () => {
    const redis = createRedis(cfg);
    try {
      await redis.del(checkpointKey(cfg.SLUICE_REDIS_PREFIX, '1h'), checkpointKey(cfg.SLUICE_REDIS_PREFIX, '1d'));
      await createInflux(cfg).query(`DROP MEASUREMENT "${MEASUREMENT_1H}"`); // rollups gone; minutes stay
      await write([partial('fresh', 'view', DAY0 + 5 * HOUR_MS, 2, 2, 1, 1)]);
      let chunks = 0;
      await expect(
        runRollup(cfg, {
          log,
          nowMs: NOW,
          resolutions: ['1h'],
          afterChunk: () => {
            if (++chunks === 2) throw new Error('killed');
          },
        }),
      ).rejects.toThrow('killed');
      const cp = Number(await redis.get(checkpointKey(cfg.SLUICE_REDIS_PREFIX, '1h')));
      expect(cp).toBeGreaterThan(0);
      expect(cp).toBeLessThan(Math.floor(NOW / HOUR_MS) * HOUR_MS);
      await runRollup(cfg, { log, nowMs: NOW });
      expect(Number(await redis.get(checkpointKey(cfg.SLUICE_REDIS_PREFIX, '1h')))).toBe(Math.floor(NOW / HOUR_MS) * HOUR_MS);
      await expectRollupsMatchMinutes();
    } finally {
      redis.disconnect();
    }
  });
});
