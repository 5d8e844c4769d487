// Which periods a rollup run recomputes (pure, unit-tested): complete periods from the checkpoint — or the
// trailing late window, whichever is older — up to now, never older than the minutes InfluxDB still holds.
import { DAY_MS, HOUR_MS, coldFileEnd, coldFileStart, type RollupResolution } from '../../shared/contracts/cold-layout.js';

export const PERIOD_MS: Record<RollupResolution, number> = { '1h': HOUR_MS, '1d': DAY_MS };

const floorTo = (ms: number, p: number) => Math.floor(ms / p) * p;
const ceilTo = (ms: number, p: number) => Math.ceil(ms / p) * p;

export interface PlanInput {
  res: RollupResolution;
  nowMs: number;
  /** End of the last period rolled by a previous run (undefined on the first run). */
  checkpointMs?: number;
  lateWindowMs: number;
  /** Minute retention (0 = forever): minutes older than now − this may be gone, so such periods are never recomputed. */
  minuteRetentionMs: number;
  /** Explicit range (`sluice rollup --from --to`): replaces checkpoint and late window. */
  fromMs?: number;
  toMs?: number;
}

export interface RollupRange {
  fromMs: number;
  toMs: number;
  /** Set when the requested start was moved forward because older minutes may already be expired. */
  clampedFromMs?: number;
}

/** The oldest period start whose minutes are surely all still in InfluxDB (−∞ with infinite retention). */
export function oldestRecomputable(res: RollupResolution, nowMs: number, minuteRetentionMs: number): number {
  return minuteRetentionMs > 0 ? ceilTo(nowMs - minuteRetentionMs, PERIOD_MS[res]) : Number.NEGATIVE_INFINITY;
}

/**
 * The whole periods to (re)compute, [fromMs, toMs), both multiples of the period. Only periods that have
 * ended are rolled; the current one is answered from minutes by the query API.
 */
export function planRollup(p: PlanInput): RollupRange {
  const period = PERIOD_MS[p.res];
  const lastComplete = floorTo(p.nowMs, period);
  const oldest = oldestRecomputable(p.res, p.nowMs, p.minuteRetentionMs);
  const toMs = Math.min(lastComplete, p.toMs !== undefined ? ceilTo(p.toMs, period) : lastComplete);
  let wanted: number;
  if (p.fromMs !== undefined) wanted = floorTo(p.fromMs, period);
  else {
    const late = floorTo(lastComplete - p.lateWindowMs, period);
    wanted = Math.min(p.checkpointMs ?? oldest, late);
  }
  const fromMs = Math.max(wanted, oldest);
  // Without a checkpoint and with infinite minute retention there is no known start: roll the late window only.
  const safeFrom = Number.isFinite(fromMs) ? fromMs : floorTo(lastComplete - p.lateWindowMs, period);
  return { fromMs: Math.min(safeFrom, toMs), toMs, ...(wanted < oldest ? { clampedFromMs: fromMs } : {}) };
}

/** Splits a range into chunks that each lie inside one cold file (a UTC day of hours, a UTC month of days). */
export function chunksOf(res: RollupResolution, r: { fromMs: number; toMs: number }): { fromMs: number; toMs: number }[] {
  const out: { fromMs: number; toMs: number }[] = [];
  for (let a = r.fromMs; a < r.toMs; ) {
    const b = Math.min(r.toMs, coldFileEnd(res, coldFileStart(res, a)));
    out.push({ fromMs: a, toMs: b });
    a = b;
  }
  return out;
}

/** Period starts in [fromMs, toMs). */
export function periodsOf(res: RollupResolution, r: { fromMs: number; toMs: number }): number[] {
  const out: number[] = [];
  for (let t = r.fromMs; t < r.toMs; t += PERIOD_MS[res]) out.push(t);
  return out;
}

/** InfluxDB retention policy duration and shard group duration for a retention in ms (0 = INF). */
export function influxRetention(ms: number): { duration: string; shardDuration: string } {
  if (ms <= 0) return { duration: 'INF', shardDuration: '7d' };
  const hours = Math.ceil(ms / HOUR_MS);
  const shard = ms < 2 * DAY_MS ? '1h' : ms <= 180 * DAY_MS ? '1d' : '7d';
  return { duration: `${hours}h`, shardDuration: shard };
}
