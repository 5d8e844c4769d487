// The per-producer new-series budget on real ingest nodes and a real Redis: a burst of 100k new entities from one
// producer stores at most the budget in that minute and rejects the rest with the reason; another producer is
// unaffected; known series keep being accepted; two nodes share one budget; Redis down admits everything.
import { afterEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { startIngest } from '../../ingest/main.js';
import { SeriesBudget, seriesKey } from '../../ingest/series-budget.js';
import { createIngestMetrics } from '../../ingest/metrics.js';
import { createRegistry } from '../../shared/metrics.js';
import { createRedis } from '../../shared/clients/redis.js';
import { createLogger } from '../../shared/logger.js';
import { metricValue } from '../support/batches.js';
import { testConfig } from '../support/config.js';

const log = createLogger('test', process.env.SLUICE_LOG_LEVEL ?? 'silent');
type Started = Awaited<ReturnType<typeof startIngest>>;
const running: Started[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

const BUDGET = 1_000;
const KEYS = 'web:key-web,app:key-app';
const REASON = new RegExp(
  `^series budget exceeded: producer web created ${BUDGET} new series this minute \\(SLUICE_MAX_NEW_SERIES_PER_MIN=${BUDGET}\\); retry later or raise the budget$`,
);

interface Answer {
  accepted: number;
  duplicates: number;
  /** The first rejections (the list is capped); rejectedCount and rejectedByReason count all of them. */
  rejected: { index: number; reason: string }[];
  rejectedCount: number;
  rejectedByReason: Record<string, number>;
}

async function post(url: string, key: string, events: unknown[]): Promise<Answer> {
  const res = await fetch(`${url}/v1/events`, {
    method: 'POST',
    body: JSON.stringify(events),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
  });
  expect(res.status).toBe(202);
  return (await res.json()) as Answer;
}

const events = (idPrefix: string, entities: string[]) =>
  entities.map((entityId, i) => ({ eventId: `${idPrefix}-${i}`, entityId, eventType: 'view', timestamp: Date.now() }));
const range = (prefix: string, from: number, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${from + i}`);

/** The budget is per minute: start a test early in a minute so its burst cannot straddle two. */
async function startOfAMinute(): Promise<void> {
  const into = Date.now() % 60_000;
  if (into > 35_000) await new Promise((r) => setTimeout(r, 60_000 - into + 200));
}

describe('new-series budget', () => {
  it('stores at most the budget of a 100k-entity burst, leaves other producers and known series alone', async () => {
    const cfg = await testConfig({ SLUICE_API_KEYS: KEYS, SLUICE_MAX_NEW_SERIES_PER_MIN: String(BUDGET) });
    const ingest = await startIngest(cfg, log);
    running.push(ingest);
    await startOfAMinute();

    // Series known before the budget is spent (they count towards it: created in this minute).
    const known = range('known-', 0, 100);
    expect(await post(ingest.url, 'key-web', events('w', known))).toMatchObject({ accepted: 100, rejectedCount: 0 });

    let accepted = 0;
    let rejected = 0;
    for (let r = 0; r < 20; r++) {
      const a = await post(ingest.url, 'key-web', events(`b${r}`, range('burst-', r * 5_000, 5_000)));
      accepted += a.accepted;
      rejected += a.rejectedCount;
      expect(a.rejectedByReason['series:budget'] ?? 0).toBe(a.rejectedCount);
      for (const x of a.rejected) expect(x.reason).toMatch(REASON);
    }
    expect(accepted).toBe(BUDGET - known.length);
    expect(rejected).toBe(100_000 - accepted);
    expect(await metricValue(ingest.url, 'sluice_ingest_series_budget_rejected_events_total', 'producer="web"')).toBe(rejected);

    // Another producer in the same minute has its own budget, even for entities refused to the first one.
    const other = await post(ingest.url, 'key-app', events('o', range('burst-', 50_000, 800)));
    expect(other).toMatchObject({ accepted: 800, rejectedCount: 0 });

    // Known series keep being accepted after the budget is spent, repeated in one request too; new ones are not.
    const again = events('k', [...known, ...known.slice(0, 10)]);
    const mixed = await post(ingest.url, 'key-web', [...again, ...events('n', ['never-seen-1', 'never-seen-2'])]);
    expect(mixed.accepted).toBe(110);
    expect(mixed.rejected.map((x) => x.index)).toEqual([110, 111]);
  }, 120_000);

  it('is one budget across ingest nodes sharing a Redis prefix', async () => {
    const cfg = await testConfig({ SLUICE_API_KEYS: KEYS, SLUICE_MAX_NEW_SERIES_PER_MIN: String(BUDGET) });
    const a = await startIngest(cfg, log);
    running.push(a);
    const b = await startIngest({ ...cfg, SLUICE_NODE_ID: `${cfg.SLUICE_NODE_ID}-b`, SLUICE_DATA_DIR: path.join(cfg.SLUICE_DATA_DIR, 'b') }, log);
    running.push(b);
    await startOfAMinute();

    const fromA = await post(a.url, 'key-web', events('a', range('e-', 0, 600)));
    const fromB = await post(b.url, 'key-web', events('b', range('e-', 600, 600)));
    expect(fromA.accepted).toBe(600);
    expect(fromB.accepted).toBe(BUDGET - 600);
    expect(fromB.rejectedCount).toBe(1_200 - BUDGET);
    expect(fromB.rejected[0]!.reason).toMatch(REASON);
    // A series node A created is known to node B (from Redis, not B's cache).
    expect(await post(b.url, 'key-web', events('c', range('e-', 0, 600)))).toMatchObject({ accepted: 600, rejectedCount: 0 });
  }, 120_000);

  it('knows a series for the hour after it was last sent, then forgets it (bounded memory)', async () => {
    const cfg = await testConfig();
    const redis = createRedis(cfg);
    await new Promise((r) => redis.once('ready', r));
    const metrics = createIngestMetrics(createRegistry('ingest'));
    try {
      const budget = new SeriesBudget({ redis, prefix: cfg.SLUICE_REDIS_PREFIX, maxNewPerMinute: 5, log, metrics });
      const old = range('old-', 0, 5).map((e) => seriesKey(e, 'view'));
      const fresh = range('new-', 0, 5).map((e) => seriesKey(e, 'view'));
      const t = (Math.floor(Date.now() / 3_600_000) + 10) * 3_600_000 + 1_000; // hours ahead: sets of their own
      expect((await budget.admit('web', old, t)).rejected).toBe(0);
      // Next hour: the budget of that minute is spent on new series, the previous hour's are still known.
      expect((await budget.admit('web', [...fresh, 'view extra'], t + 3_600_000)).rejected).toBe(1);
      expect((await budget.admit('web', old, t + 3_600_000 + 1)).rejected).toBe(0);
      // Two hours after they were last sent they are new again (and over this minute's budget).
      expect((await budget.admit('web', fresh, t + 3 * 3_600_000)).rejected).toBe(0);
      expect((await budget.admit('web', old, t + 3 * 3_600_000 + 1)).rejected).toBe(5);
      // Every key expires: nothing of the producer is kept forever.
      const keys = await redis.keys(`${cfg.SLUICE_REDIS_PREFIX}*`);
      expect(keys.length).toBeGreaterThan(0);
      for (const k of keys) expect(await redis.pttl(k)).toBeGreaterThan(0);
    } finally {
      redis.disconnect();
    }
  });

  it('answers recently confirmed series from its bounded cache, without Redis', async () => {
    const cfg = await testConfig();
    const redis = createRedis(cfg);
    await new Promise((r) => redis.once('ready', r));
    const metrics = createIngestMetrics(createRegistry('ingest'));
    const unchecked = async () => (await metrics.seriesBudgetUnchecked.get()).values[0]?.value ?? 0;
    const budget = new SeriesBudget({ redis, prefix: cfg.SLUICE_REDIS_PREFIX, maxNewPerMinute: 1_000, log, metrics, cacheEntries: 100 });
    const keys = range('c-', 0, 200).map((e) => seriesKey(e, 'view'));
    expect((await budget.admit('web', keys)).rejected).toBe(0);
    redis.disconnect(); // from here on, only what the cache answers is checked
    // The last 50 series are cached: no Redis needed, nothing unchecked.
    expect([...(await budget.admit('web', keys.slice(150))).admitted].every((f) => f === 1)).toBe(true);
    expect(await unchecked()).toBe(0);
    // The cache holds at most 100 series: the first ones were evicted and now go unchecked (fail open).
    await budget.admit('web', keys.slice(0, 10));
    expect(await unchecked()).toBe(10);
  });

  it('admits everything, counted as unchecked, while Redis is unreachable', async () => {
    const cfg = await testConfig({ SLUICE_REDIS_URL: 'redis://127.0.0.1:1' });
    const redis = createRedis(cfg);
    redis.on('error', () => undefined);
    const registry = createRegistry('ingest');
    const metrics = createIngestMetrics(registry);
    try {
      const budget = new SeriesBudget({ redis, prefix: cfg.SLUICE_REDIS_PREFIX, maxNewPerMinute: 1, log, metrics });
      const keys = ['a', 'b', 'c'].map((e) => seriesKey(e, 'view'));
      const got = await budget.admit('web', keys);
      expect([...got.admitted]).toEqual([1, 1, 1]);
      expect(got.rejected).toBe(0);
      expect((await metrics.seriesBudgetUnchecked.get()).values[0]?.value).toBe(3);
    } finally {
      redis.disconnect();
    }
  });
});
