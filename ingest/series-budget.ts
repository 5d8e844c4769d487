// Per-producer new-series budget: a producer may create at most SLUICE_MAX_NEW_SERIES_PER_MIN new series
// (entityId × eventType) per minute, counted across all ingest nodes in Redis; events of further new series are
// rejected with a reason, events of known series are always admitted. Redis unavailable → fail open (admit, warn).
//
// Cost: a series confirmed this hour is answered by a bounded in-process cache (no store operation); a request
// with any other series costs ONE Lua call for all of them, however many events it holds. A steady producer
// therefore touches Redis once per series per node per hour, not per event or per request.
//
// Layout (Redis Cluster: every key of one producer shares the hash tag `{s:<producer>}`, so a script's keys sit in
// one slot while producers spread over slots):
//   <prefix>{s:<producer>}:h:<hour>    set of the series the producer sent in that UTC hour; expires at the end of
//                                      the next hour. A series is known when it is in this hour's or the previous
//                                      hour's set (it is then copied into this hour's).
//   <prefix>{s:<producer>}:n:<minute>  new series created in that minute (the budget counter); expires a minute later.
// Memory bound: per producer at most two hour sets live, each holding only series the producer sent in its hour, and a
// series enters them only through the budget: a producer's known series grow by at most 60 × SLUICE_MAX_NEW_SERIES_PER_MIN
// per hour, and fall out two hours after it stops sending them (≈ 70 bytes per member plus the key's length).
import type { RedisClient } from '../shared/clients/redis.js';
import type { Logger } from '../shared/logger.js';
import type { IngestMetrics } from './metrics.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
/** Series remembered by the in-process cache of one node (about 100 bytes each with the key). */
export const SERIES_CACHE_ENTRIES = 200_000;

/** The series of an event. Event types hold no space (EVENT_TYPE_PATTERN), so the key is unambiguous. */
export function seriesKey(entityId: string, eventType: string): string {
  return `${eventType} ${entityId}`;
}

/**
 * KEYS: this hour's set, the previous hour's set, this minute's counter. ARGV: the series joined by "\n" (validated
 * entity ids hold no control characters), the budget, the hour set's expiry and the counter's expiry (epoch ms).
 * Returns { one flag per series ("1" admitted, "0" over budget), new series counted in this minute }.
 */
const ADMIT_SCRIPT = `
local budget = tonumber(ARGV[2])
local created = tonumber(redis.call('GET', KEYS[3]) or '0')
local before = created
local out = {}
local n = 0
local added = false
for s in string.gmatch(ARGV[1], '[^\\n]+') do
  n = n + 1
  if redis.call('SISMEMBER', KEYS[1], s) == 1 then
    out[n] = '1'
  elseif redis.call('SISMEMBER', KEYS[2], s) == 1 then
    redis.call('SADD', KEYS[1], s)
    added = true
    out[n] = '1'
  elseif created < budget then
    created = created + 1
    redis.call('SADD', KEYS[1], s)
    added = true
    out[n] = '1'
  else
    out[n] = '0'
  end
end
if added then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
if created ~= before then
  redis.call('SET', KEYS[3], created)
  redis.call('PEXPIREAT', KEYS[3], ARGV[4])
end
return { table.concat(out), created }
`;

/** ioredis states in which a command would only wait for a reconnect. */
const DOWN = new Set(['reconnecting', 'close', 'end']);

export interface Admission {
  /** One entry per series key given: 1 admitted, 0 rejected (over budget). */
  admitted: Uint8Array;
  rejected: number;
  /** The rejection reason of this request (the same for every rejected event); empty when none was rejected. */
  reason: string;
}

/**
 * A bounded, approximately-LRU map in two generations: lookups promote from the old generation to the young one;
 * when the young one is full it becomes the old one. At most `capacity` entries, no per-hit allocation.
 */
class RecentSeries {
  private young = new Map<string, number>();
  private old = new Map<string, number>();
  constructor(private readonly half: number) {}

  get(key: string): number | undefined {
    const v = this.young.get(key);
    if (v !== undefined) return v;
    const o = this.old.get(key);
    if (o !== undefined) this.set(key, o);
    return o;
  }

  set(key: string, hour: number): void {
    this.young.set(key, hour);
    if (this.young.size >= this.half) {
      this.old = this.young;
      this.young = new Map();
    }
  }
}

export interface SeriesBudgetOptions {
  /** A single Redis or a Redis Cluster (every script's keys share one hash tag). */
  redis: RedisClient;
  prefix: string;
  /** New series per producer per minute; 0 = unlimited (no check at all). */
  maxNewPerMinute: number;
  log: Logger;
  metrics: Pick<IngestMetrics, 'seriesBudgetRejected' | 'seriesBudgetUnchecked'>;
  cacheEntries?: number;
}

export class SeriesBudget {
  private readonly cache: RecentSeries;
  private warnedAt = 0;
  constructor(private readonly o: SeriesBudgetOptions) {
    this.cache = new RecentSeries(Math.max(1, Math.floor((o.cacheEntries ?? SERIES_CACHE_ENTRIES) / 2)));
  }

  /** False when SLUICE_MAX_NEW_SERIES_PER_MIN is 0: admit() then admits everything, so callers may skip it. */
  get enabled(): boolean {
    return this.o.maxNewPerMinute > 0;
  }

  /** Decides which of `keys` (seriesKey of each event, repeats allowed) `producer` may store now. */
  async admit(producer: string, keys: readonly string[], nowMs = Date.now()): Promise<Admission> {
    const admitted = new Uint8Array(keys.length);
    const budget = this.o.maxNewPerMinute;
    if (budget <= 0 || keys.length === 0) return { admitted: admitted.fill(1), rejected: 0, reason: '' };
    const hour = Math.floor(nowMs / HOUR_MS);
    const scope = `${producer}\n`;
    // The series not confirmed this hour, once each; slot[i] is event i's position among them (-1: cached).
    const misses: string[] = [];
    const slot = new Int32Array(keys.length).fill(-1);
    let slotOf: Map<string, number> | undefined;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      if (this.cache.get(scope + key) === hour) {
        admitted[i] = 1;
        continue;
      }
      slotOf ??= new Map();
      let s = slotOf.get(key);
      if (s === undefined) {
        s = misses.length;
        misses.push(key);
        slotOf.set(key, s);
      }
      slot[i] = s;
    }
    if (misses.length === 0) return { admitted, rejected: 0, reason: '' };

    let flags: string;
    let created: number;
    try {
      // Known down: answer at once. Still connecting (a node just started): the call waits for the connection,
      // so a burst right after start-up is not let through unchecked.
      if (DOWN.has(this.o.redis.status)) throw new Error(`Redis connection is ${this.o.redis.status}`);
      const minute = Math.floor(nowMs / MINUTE_MS);
      const tag = `${this.o.prefix}{s:${producer}}`;
      const res = (await this.o.redis.eval(
        ADMIT_SCRIPT,
        3,
        `${tag}:h:${hour}`,
        `${tag}:h:${hour - 1}`,
        `${tag}:n:${minute}`,
        misses.join('\n'),
        budget,
        (hour + 2) * HOUR_MS,
        (minute + 2) * MINUTE_MS,
      )) as [string, number];
      [flags, created] = res;
    } catch (err) {
      // Fail open, like producer dedup: a budget that cannot be checked never stops a producer.
      let unchecked = 0;
      for (let i = 0; i < keys.length; i++) {
        if (slot[i]! >= 0) {
          admitted[i] = 1;
          unchecked++;
        }
      }
      this.o.metrics.seriesBudgetUnchecked.inc(unchecked);
      this.warn(err);
      return { admitted, rejected: 0, reason: '' };
    }
    for (let s = 0; s < misses.length; s++) if (flags.charCodeAt(s) === 49) this.cache.set(scope + misses[s]!, hour);
    let rejected = 0;
    for (let i = 0; i < keys.length; i++) {
      const s = slot[i]!;
      if (s < 0) continue;
      if (flags.charCodeAt(s) === 49) admitted[i] = 1;
      else rejected++;
    }
    if (rejected === 0) return { admitted, rejected, reason: '' };
    this.o.metrics.seriesBudgetRejected.inc({ producer }, rejected);
    const reason =
      `series budget exceeded: producer ${producer} created ${created} new series this minute ` +
      `(SLUICE_MAX_NEW_SERIES_PER_MIN=${budget}); retry later or raise the budget`;
    return { admitted, rejected, reason };
  }

  private warn(err: unknown): void {
    if (Date.now() - this.warnedAt > 10_000) {
      this.warnedAt = Date.now();
      this.o.log.warn(
        { err: String(err) },
        'Redis unavailable: new-series budget not checked, events admitted (sluice_ingest_series_budget_unchecked_events_total)',
      );
    }
  }
}
