// Whether the all-time entity totals in Redis cover every event counted so far: a pipeline whose InfluxDB holds no
// point yet is marked complete before its first batch (workers/entity-totals.ts), so the query API may answer totals
// from Redis; otherwise it computes them from InfluxDB. Checked before consuming; when Redis or InfluxDB is down the
// check is retried in the background instead, so a worker starts (and reports not ready) without them.
import type { InfluxDB } from 'influx';
import type { Config } from '../shared/config.js';
import { MEASUREMENT_1D, MEASUREMENT_1M, qualifiedMeasurement, RP_1D } from '../shared/contracts/influx-series.js';
import { classify, errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { RETRY, withRetry } from '../shared/retry.js';
import type { EntityTotalsUpdater } from './entity-totals.js';

/** Points counted so far in `from`; a missing (rollup) retention policy means none. */
async function countPoints(influx: InfluxDB, from: string, where: string): Promise<number> {
  try {
    return (await influx.query<{ n: number }>(`SELECT count("count") AS "n" FROM ${from}`))[0]?.n ?? 0;
  } catch (err) {
    if (/retention policy not found/i.test(errorMessage(err))) return 0;
    throw classify(err, where);
  }
}

/** Runs the check once now (awaited) and, if a dependency failed, again in the background; logs an incomplete verdict. */
export async function checkTotalsComplete(
  totals: EntityTotalsUpdater,
  influx: InfluxDB,
  cfg: Pick<Config, 'SLUICE_INFLUX_URL' | 'SLUICE_INFLUX_DB'>,
  log: Logger,
): Promise<void> {
  const where = `InfluxDB ${cfg.SLUICE_INFLUX_URL}`;
  // Minutes and daily rollups both count: minutes may have aged out of the hot retention.
  const check = () =>
    totals.markCompleteIfEmpty(
      async () =>
        (await countPoints(influx, MEASUREMENT_1M, where)) +
        (await countPoints(influx, qualifiedMeasurement(cfg.SLUICE_INFLUX_DB, RP_1D, MEASUREMENT_1D), where)),
    );
  const incomplete = () => log.warn('all-time totals in Redis do not cover every counted event: the query API computes totals from InfluxDB');
  const complete = await check().catch(() => undefined);
  if (complete === false) incomplete();
  if (complete !== undefined) return;
  void withRetry(check, RETRY.slowCheck).then(
    (ok) => (ok ? undefined : incomplete()),
    (err: unknown) => log.warn({ err: errorMessage(err) }, 'could not check whether the all-time totals are complete; totals are computed from InfluxDB'),
  );
}
