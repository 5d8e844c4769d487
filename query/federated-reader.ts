// Answers /v1/stats at 1h and 1d steps and all-time totals from the cheapest complete source: daily and hourly
// rollups in InfluxDB, the cold tier's Parquet rollups for periods older than InfluxDB keeps them, and the
// per-minute points for periods not rolled up yet — all read in one InfluxDB round trip and stitched exactly.
import type { Config } from '../shared/config.js';
import {
  MEASUREMENT_1D,
  MEASUREMENT_1H,
  MEASUREMENT_1M,
  RP_1D,
  RP_1H,
  TOTAL_SELECT,
  qualifiedMeasurement,
  seriesIs,
} from '../shared/contracts/influx-series.js';
import { DAY_MS, HOUR_MS, type RollupResolution, type RollupRow } from '../shared/contracts/cold-layout.js';
import type { Bucket } from './buckets.js';
import type { InfluxReader } from './influx-reader.js';
import type { InfluxQueryKind } from './metrics.js';
import { foldedQueryWhere } from './influxql.js';
import type { StatsRequest } from './params.js';
import { bucketMap, foldInto, stitch } from './resolution-ladder.js';

const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
const numOrNull = (v: unknown): number | null => (typeof v === 'number' ? v : null);
const toBuckets = (rows: Record<string, unknown>[]): Bucket[] => rows.map((r) => [num(r.time), num(r.count), num(r.sum), numOrNull(r.min), numOrNull(r.max)]);
const fromRollups = (rows: Pick<RollupRow, 'periodMs' | 'count' | 'sum' | 'min' | 'max'>[]): Map<number, Bucket> =>
  bucketMap(rows.map((r) => [r.periodMs, r.count, r.sum, r.min, r.max] as Bucket));

/** Events stamped up to this far in the future are accepted by ingest; totals include them. */
const FUTURE_MS = DAY_MS;
const POLICY_RECHECK_MS = 60_000;
/** Recent days stitched from hours and minutes (totals, 1d steps) when minutes are kept forever. */
const RECENT_WINDOW_MS = 7 * DAY_MS;

/** The key of an entity series. */
export type EntityKey = Pick<StatsRequest, 'entityId' | 'eventType'>;

/** Which series a reader folds: their measurement per resolution (1h/1d in RP_1H/RP_1D) and the condition of one. */
export interface FederatedSeries<K> {
  measurements: Readonly<Record<'1m' | '1h' | '1d', string>>;
  where(key: K): string;
}

/** The entity series (contracts/influx-series.ts). */
export const ENTITY_SERIES: FederatedSeries<EntityKey> = {
  measurements: { '1m': MEASUREMENT_1M, '1h': MEASUREMENT_1H, '1d': MEASUREMENT_1D },
  where: (k) => seriesIs(k.entityId, k.eventType),
};

/** Cold rollup rows of one series (query/cold-reader.ts). */
export interface ColdRollups<K> {
  rows(res: RollupResolution, q: K & { fromMs: number; toMs: number }): Promise<Pick<RollupRow, 'periodMs' | 'count' | 'sum' | 'min' | 'max'>[]>;
}

/** Reads the entity series by default; another series layout with the same fields (the attribute series) through `series`. */
export class FederatedReader<K extends { eventType: string } = EntityKey> {
  constructor(
    private readonly influx: InfluxReader,
    private readonly cold: ColdRollups<K> | undefined,
    private readonly cfg: Pick<Config, 'SLUICE_INFLUX_DB' | 'SLUICE_RETENTION_1M' | 'SLUICE_RETENTION_1H' | 'SLUICE_RETENTION_1D'>,
    private readonly now: () => number = Date.now,
    private readonly series: FederatedSeries<K> = ENTITY_SERIES as unknown as FederatedSeries<K>,
  ) {}

  private policies: { at: number; names: Promise<Set<string>> } | undefined;

  /** Which rollup policies exist (a statement on a missing one would fail the whole request); rechecked every minute. */
  private async hasPolicy(name: string): Promise<boolean> {
    if (!this.policies || this.now() - this.policies.at > POLICY_RECHECK_MS) {
      const names = this.influx.retentionPolicies();
      names.catch(() => {
        this.policies = undefined;
      });
      this.policies = { at: this.now(), names };
    }
    return (await this.policies.names).has(name);
  }

  /** Periods starting before this may be gone from InfluxDB (−∞ with infinite retention); one period of overlap. */
  private hotFrom(retentionMs: number, periodMs: number): number {
    return retentionMs > 0 ? Math.floor((this.now() - retentionMs) / periodMs) * periodMs + periodMs : Number.NEGATIVE_INFINITY;
  }

  private async coldBuckets(res: RollupResolution, req: K, fromMs: number, toMs: number, retentionMs: number): Promise<Map<number, Bucket>> {
    const hotFrom = this.hotFrom(retentionMs, res === '1h' ? HOUR_MS : DAY_MS);
    if (!this.cold || fromMs >= hotFrom) return new Map();
    return fromRollups(await this.cold.rows(res, { ...req, fromMs, toMs: Math.min(toMs, hotFrom) }));
  }

  /**
   * One InfluxDB request: for each hour range, minutes folded per hour and hourly rollups; daily rollups over
   * [fromMs, toMs) when `withDays`; then any `extra` statements. Statements on rollup policies that do not
   * exist yet are left out (InfluxDB would fail the whole request).
   */
  private async hotRows(
    kind: InfluxQueryKind,
    req: K,
    hourRanges: readonly [number, number][],
    days: [number, number] | undefined,
    extra: string[] = [],
  ): Promise<{
    hours: { minutes: Record<string, unknown>[]; rollups: Record<string, unknown>[] }[];
    days: Record<string, unknown>[];
    extra: Record<string, unknown>[][];
  }> {
    const db = this.cfg.SLUICE_INFLUX_DB;
    const [h, d] = await Promise.all([this.hasPolicy(RP_1H), days ? this.hasPolicy(RP_1D) : Promise.resolve(false)]);
    const statements: string[] = [];
    const m = this.series.measurements;
    const where = this.series.where(req);
    for (const [a, b] of hourRanges) {
      statements.push(foldedQueryWhere({ measurement: m['1m'] }, where, a, b, '1h'));
      if (h) statements.push(foldedQueryWhere({ database: db, retentionPolicy: RP_1H, measurement: m['1h'] }, where, a, b, '1h'));
    }
    if (d && days) statements.push(foldedQueryWhere({ database: db, retentionPolicy: RP_1D, measurement: m['1d'] }, where, days[0], days[1], '1d'), ...extra);
    const rows = await this.influx.runMany(kind, statements);
    const per = h ? 2 : 1;
    const dayIndex = hourRanges.length * per;
    return {
      hours: hourRanges.map((_, i) => ({ minutes: rows[i * per] ?? [], rollups: h ? (rows[i * per + 1] ?? []) : [] })),
      days: d && days ? (rows[dayIndex] ?? []) : [],
      extra: d && days ? rows.slice(dayIndex + 1) : [],
    };
  }

  /** Buckets of a 1h or 1d request (1m requests stay on InfluxReader.stats). */
  async stats(req: K & Pick<StatsRequest, 'fromMs' | 'toMs' | 'step'>): Promise<Bucket[]> {
    if (req.step === '1m')
      return toBuckets(
        (
          await this.influx.runMany('stats', [
            foldedQueryWhere({ measurement: this.series.measurements['1m'] }, this.series.where(req), req.fromMs, req.toMs, '1m'),
          ])
        )[0] ?? [],
      );
    return (await this.buckets(req, req.fromMs, req.toMs, req.step)).buckets;
  }

  /** Start of the days whose daily rollup may still be missing or late: hours and minutes are read only from here. */
  private recentDaysFrom(): number {
    const windowMs = this.cfg.SLUICE_RETENTION_1M > 0 ? this.cfg.SLUICE_RETENTION_1M : RECENT_WINDOW_MS;
    return Math.floor((this.now() - windowMs) / DAY_MS) * DAY_MS;
  }

  private async buckets(
    req: K,
    fromMs: number,
    toMs: number,
    step: '1h' | '1d',
    kind: InfluxQueryKind = 'stats',
    extra: string[] = [],
  ): Promise<{ buckets: Bucket[]; extra: Record<string, unknown>[][] }> {
    const days = step === '1d';
    // At 1d steps, whole days older than the recent window come from daily rollups alone; only a partial first
    // day and the recent days are built from hours (rollups, else minutes).
    let hourRanges: [number, number][] = [[fromMs, toMs]];
    if (days) {
      const firstDayEnd = Math.min(toMs, Math.ceil(fromMs / DAY_MS) * DAY_MS);
      const recent = Math.max(fromMs, this.recentDaysFrom());
      hourRanges =
        recent <= firstDayEnd ? [[fromMs, toMs]] : [[fromMs, firstDayEnd] as [number, number], [recent, toMs] as [number, number]].filter(([a, b]) => a < b);
    }
    const [hot, coldHours, coldDays] = await Promise.all([
      this.hotRows(kind, req, hourRanges, days ? [fromMs, toMs] : undefined, extra),
      days ? Promise.resolve(new Map<number, Bucket>()) : this.coldBuckets('1h', req, fromMs, toMs, this.cfg.SLUICE_RETENTION_1H),
      days ? this.coldBuckets('1d', req, fromMs, toMs, this.cfg.SLUICE_RETENTION_1D) : Promise.resolve(new Map<number, Bucket>()),
    ]);
    const hours = hourRanges.flatMap(([a, b], i) =>
      stitch(HOUR_MS, a, b, { rollup: bucketMap(toBuckets(hot.hours[i]!.rollups)), cold: coldHours, finer: bucketMap(toBuckets(hot.hours[i]!.minutes)) }),
    );
    if (!days) return { buckets: hours, extra: hot.extra };
    return {
      buckets: stitch(DAY_MS, fromMs, toMs, { rollup: bucketMap(toBuckets(hot.days)), cold: coldDays, finer: foldInto(DAY_MS, hours) }),
      extra: hot.extra,
    };
  }

  /**
   * All-time count and sum in one InfluxDB request: daily rollups summed before a recent window (the days the
   * rollup job may not have finished: minute retention, else one week), and the window stitched day by day
   * from daily rollups, hourly rollups and minutes. Days before the window lacking a daily rollup (the rollup
   * job stopped for longer than the window) are missing from totals until it runs again; audits show them.
   */
  async total(req: K): Promise<{ count: number; sum: number }> {
    const nowMs = this.now();
    const toMs = Math.floor((nowMs + FUTURE_MS) / DAY_MS) * DAY_MS + DAY_MS;
    const windowFrom = this.recentDaysFrom();
    // Days before this come from the cold tier only (InfluxDB may have dropped them), after it from InfluxDB only.
    const coldUntil = Math.min(this.hotFrom(this.cfg.SLUICE_RETENTION_1D, DAY_MS), windowFrom);
    const before =
      `SELECT ${TOTAL_SELECT} FROM ${qualifiedMeasurement(this.cfg.SLUICE_INFLUX_DB, RP_1D, this.series.measurements['1d'])} ` +
      `WHERE ${this.series.where(req)}${Number.isFinite(coldUntil) ? ` AND time >= ${coldUntil}ms` : ''} AND time < ${windowFrom}ms`;
    const [recent, cold] = await Promise.all([
      this.buckets(req, windowFrom, toMs, '1d', 'total', [before]),
      this.coldBuckets('1d', req, 0, windowFrom, this.cfg.SLUICE_RETENTION_1D),
    ]);
    let count = 0;
    let sum = 0;
    const older = recent.extra[0]?.[0];
    if (older) {
      count += num(older.count);
      sum += num(older.sum);
    }
    // Cold days only where InfluxDB no longer keeps daily rollups (coldBuckets reads only before that point).
    for (const [, c, s] of cold.values()) {
      count += c;
      sum += s;
    }
    for (const [, c, s] of recent.buckets) {
      count += c;
      sum += s;
    }
    return { count, sum };
  }
}
