// The query API against real InfluxDB and Redis: points written the way workers write them (several
// partial points per minute at different nanosecond offsets) must come back as exact per-bucket and
// range values for every function and step; bad parameters answer 400 naming them; cached answers match.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IPoint } from 'influx';
import { createInflux } from '../../shared/clients/influx.js';
import { MEASUREMENT_1M, TAG_ENTITY, TAG_TYPE } from '../../shared/contracts/influx-series.js';
import { createRedis } from '../../shared/clients/redis.js';
import type { Config } from '../../shared/config.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { startQuery } from '../../query/main.js';
import { testConfig } from '../support/config.js';

const MIN = 60_000;
const HOUR = 3_600_000;
/** 10:00 UTC two days ago: old enough for the long cache TTL, recent enough for any retention. */
const T0 = Math.floor(Date.now() / 86_400_000) * 86_400_000 - 2 * 86_400_000 + 10 * HOUR;

interface Partial {
  minute: number;
  offsetNs: bigint;
  count: number;
  sum: number;
  min: number;
  max: number;
}

/** One worker batch's partial aggregate for one minute, stamped minute start + batch offset (ns). */
function point(entityId: string, eventType: string, p: Partial): IPoint {
  return {
    measurement: MEASUREMENT_1M,
    tags: { [TAG_ENTITY]: entityId, [TAG_TYPE]: eventType },
    fields: { count: p.count, sum: p.sum, min: p.min, max: p.max },
    timestamp: (BigInt(p.minute) * 1_000_000n + p.offsetNs).toString(),
  };
}

const E1_CLICK: Partial[] = [
  { minute: T0, offsetNs: 1_000n, count: 2, sum: 5, min: 1, max: 4 },
  { minute: T0, offsetNs: 30_000_000_007n, count: 3, sum: 9, min: 2, max: 5 },
  { minute: T0, offsetNs: 59_999_999_999n, count: 1, sum: -2, min: -2, max: -2 },
  { minute: T0 + MIN, offsetNs: 5n, count: 4, sum: 10, min: 0.5, max: 6 },
  { minute: T0 + MIN, offsetNs: 20_000_000_000n, count: 1, sum: 100, min: 100, max: 100 },
  { minute: T0 + 59 * MIN, offsetNs: 42n, count: 5, sum: 15, min: 3, max: 3 },
  { minute: T0 + 90 * MIN, offsetNs: 10_000_000_000n, count: 2, sum: 4, min: 1, max: 3 },
  { minute: T0 + 90 * MIN, offsetNs: 50_000_000_000n, count: 2, sum: 6, min: 2, max: 4 },
];
/** Same minutes, other series: must never leak into e-1/click answers. */
const NOISE: [string, string, Partial][] = [
  ['e-2', 'click', { minute: T0, offsetNs: 7n, count: 1000, sum: 1000, min: -500, max: 500 }],
  ['e-1', 'view', { minute: T0 + MIN, offsetNs: 9n, count: 77, sum: 77, min: -77, max: 777 }],
  ["o'brien\\x", 'click', { minute: T0, offsetNs: 3n, count: 7, sum: 21, min: 3, max: 3 }],
];

let cfg: Config;
let service: Service;

async function get(path: string): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(service.url + path);
  return { status: res.status, body: await res.json(), headers: res.headers };
}

function statsPath(params: Record<string, string | number>): string {
  return `/v1/stats?${new URLSearchParams(Object.entries({ entityId: 'e-1', eventType: 'click', ...params }).map(([k, v]) => [k, String(v)]))}`;
}

beforeAll(async () => {
  cfg = await testConfig();
  await createInflux(cfg).writePoints([...E1_CLICK.map((p) => point('e-1', 'click', p)), ...NOISE.map(([e, t, p]) => point(e, t, p))], { precision: 'n' });
  service = await startQuery(cfg, createLogger('query-test', 'warn'));
});

afterAll(async () => {
  await service?.close();
});

describe('GET /v1/stats', () => {
  const range = { from: new Date(T0).toISOString(), to: T0 + 2 * HOUR };
  const minuteStarts = [T0, T0 + MIN, T0 + 59 * MIN, T0 + 90 * MIN].map((t) => new Date(t).toISOString());

  it.each([
    ['count', [6, 5, 5, 4], 20],
    ['sum', [12, 110, 15, 10], 147],
    ['avg', [2, 22, 3, 2.5], 147 / 20],
    ['min', [-2, 0.5, 3, 1], -2],
    ['max', [5, 100, 3, 4], 100],
  ] as const)('step 1m, fn %s: one exact point per minute with data and the range total', async (fn, values, total) => {
    const { status, body } = await get(statsPath({ ...range, fn, step: '1m' }));
    expect(status).toBe(200);
    expect(body).toEqual({
      entityId: 'e-1',
      eventType: 'click',
      fn,
      step: '1m',
      from: new Date(T0).toISOString(),
      to: new Date(T0 + 2 * HOUR).toISOString(),
      points: minuteStarts.map((t, i) => ({ t, value: values[i] })),
      total,
    });
  });

  it.each([
    ['count', [16, 4], 20],
    ['sum', [137, 10], 147],
    ['avg', [137 / 16, 2.5], 147 / 20],
    ['min', [-2, 1], -2],
    ['max', [100, 4], 100],
  ] as const)('step 1h, fn %s: partial points folded per hour', async (fn, values, total) => {
    const { status, body } = await get(statsPath({ ...range, fn, step: '1h' }));
    expect(status).toBe(200);
    expect(body.points).toEqual([
      { t: new Date(T0).toISOString(), value: values[0] },
      { t: new Date(T0 + HOUR).toISOString(), value: values[1] },
    ]);
    expect(body.total).toBe(total);
  });

  it('treats the range as half-open whole minutes: [10:01, 10:59) holds only 10:01', async () => {
    const { body } = await get(statsPath({ fn: 'count', step: '1m', from: T0 + MIN, to: T0 + 59 * MIN }));
    expect(body.points).toEqual([{ t: new Date(T0 + MIN).toISOString(), value: 5 }]);
    expect(body.total).toBe(5);
  });

  it('counts a whole minute when the range starts inside it only if the minute starts in the range', async () => {
    // from 10:00:30 → 10:00 is excluded whatever the offsets of its partial points.
    const { body } = await get(statsPath({ fn: 'count', step: '1m', from: T0 + 30_000, to: T0 + 2 * MIN }));
    expect(body.from).toBe(new Date(T0 + MIN).toISOString());
    expect(body.total).toBe(5);
  });

  it('answers an empty range with no points and zero/null totals', async () => {
    const empty = { from: T0 - 3 * HOUR, to: T0 - 2 * HOUR };
    expect((await get(statsPath({ ...empty, fn: 'count' }))).body).toMatchObject({ points: [], total: 0 });
    expect((await get(statsPath({ ...empty, fn: 'avg' }))).body).toMatchObject({ points: [], total: null });
  });

  it('keeps tag values with quotes and backslashes literal', async () => {
    const { status, body } = await get(
      `/v1/stats?${new URLSearchParams({ entityId: "o'brien\\x", eventType: 'click', fn: 'sum', from: String(T0), to: String(T0 + HOUR), step: '1h' })}`,
    );
    expect(status).toBe(200);
    expect(body.total).toBe(21);
  });

  it('picks step 1h for a two-day range when step is absent', async () => {
    const { body } = await get(statsPath({ fn: 'count', from: T0 - 24 * HOUR, to: T0 + 24 * HOUR }));
    expect(body.step).toBe('1h');
    expect(body.total).toBe(20);
  });

  it('serves a repeated settled query from the cache with the same answer, for every fn', async () => {
    const params = { fn: 'sum', step: '1m', from: T0 + 90 * MIN, to: T0 + 91 * MIN };
    const first = await get(statsPath(params));
    expect(first.headers.get('x-sluice-cache')).toBe('miss');
    expect(first.body.total).toBe(10);

    // New data in the range after the answer was cached: a settled range keeps its cached answer for 1 h.
    await createInflux(cfg).writePoints([point('e-1', 'click', { minute: T0 + 90 * MIN, offsetNs: 1n, count: 1, sum: 1000, min: 1000, max: 1000 })], {
      precision: 'n',
    });
    const second = await get(statsPath(params));
    expect(second.headers.get('x-sluice-cache')).toBe('hit');
    expect(second.body).toEqual(first.body);
    const avg = await get(statsPath({ ...params, fn: 'avg' }));
    expect(avg.headers.get('x-sluice-cache')).toBe('hit');
    expect(avg.body.total).toBe(2.5);

    const redis = createRedis(cfg);
    try {
      const keys = await redis.keys(`${cfg.SLUICE_REDIS_PREFIX}qcache:*`);
      expect(keys.length).toBeGreaterThan(0);
      const ttls = await Promise.all(keys.map((k) => redis.pttl(k)));
      expect(Math.max(...ttls)).toBeGreaterThan(3_500_000);
    } finally {
      redis.disconnect();
    }
    // A different range is a different key and sees the new point.
    const fresh = await get(statsPath({ ...params, from: T0 + 89 * MIN }));
    expect(fresh.headers.get('x-sluice-cache')).toBe('miss');
    expect(fresh.body.total).toBe(1010);
  });

  it('caches ranges that end within the last hour only briefly', async () => {
    const now = Date.now();
    await get(statsPath({ fn: 'count', from: now - HOUR, to: now }));
    const redis = createRedis(cfg);
    try {
      const keys = await redis.keys(`${cfg.SLUICE_REDIS_PREFIX}qcache:*`);
      const ttls = await Promise.all(keys.map((k) => redis.pttl(k)));
      expect(ttls.filter((t) => t > 0 && t <= 2_000).length).toBeGreaterThan(0);
    } finally {
      redis.disconnect();
    }
  });
});

describe('GET /v1/stats validation', () => {
  it.each([
    ['entityId', { entityId: '' }, 'characters'],
    ['eventType', { eventType: 'Bad Type' }, 'a-z0-9'],
    ['fn', { fn: 'median' }, 'count, sum, avg, min, max'],
    ['step', { fn: 'count', step: '5m' }, '1m, 1h, 1d'],
    ['from', { fn: 'count', from: 'last tuesday' }, 'ISO-8601'],
    ['to', { fn: 'count', to: 'soon' }, 'epoch milliseconds'],
    ['from', { fn: 'count', from: T0 + HOUR, to: T0 }, 'after to'],
    ['step', { fn: 'count', step: '1m', from: T0 - 8 * 86_400_000, to: T0 }, 'larger step'],
    ['stpe', { fn: 'count', stpe: '1h' }, 'not a parameter'],
  ])('a bad %s answers 400 naming it', async (param, params, accepted) => {
    const { status, body } = await get(statsPath({ fn: 'count', ...params } as Record<string, string | number>));
    expect(status).toBe(400);
    expect(body.error).toBeTypeOf('string');
    expect(body.details).toHaveLength(1);
    expect(body.details[0].param).toBe(param);
    expect(body.details[0].message).toContain(accepted);
  });

  it('lists every missing required parameter', async () => {
    const { status, body } = await get('/v1/stats');
    expect(status).toBe(400);
    expect(body.details.map((d: { param: string }) => d.param).sort()).toEqual(['entityId', 'eventType', 'fn']);
  });
});

describe('GET /v1/entities/:entityId/total', () => {
  it('answers the all-time count and sum of the series, only that series', async () => {
    const { status, body } = await get('/v1/entities/e-2/total?eventType=click');
    expect(status).toBe(200);
    expect(body).toEqual({ entityId: 'e-2', eventType: 'click', count: 1000, sum: 1000 });
    expect((await get('/v1/entities/e-1/total?eventType=view')).body).toEqual({ entityId: 'e-1', eventType: 'view', count: 77, sum: 77 });
  });

  it('decodes the path and answers zeros for an unknown series', async () => {
    expect((await get(`/v1/entities/${encodeURIComponent("o'brien\\x")}/total?eventType=click`)).body).toMatchObject({ count: 7, sum: 21 });
    expect((await get('/v1/entities/nobody/total?eventType=click')).body).toEqual({ entityId: 'nobody', eventType: 'click', count: 0, sum: 0 });
  });

  it('serves repeats from the cache for a short TTL, then sees new data', async () => {
    const first = await get('/v1/entities/e-3/total?eventType=buy');
    expect(first.body).toMatchObject({ count: 0, sum: 0 });
    await createInflux(cfg).writePoints([point('e-3', 'buy', { minute: T0, offsetNs: 11n, count: 3, sum: 30, min: 10, max: 10 })], { precision: 'n' });
    const cached = await get('/v1/entities/e-3/total?eventType=buy');
    expect(cached.headers.get('x-sluice-cache')).toBe('hit');
    expect(cached.body).toEqual(first.body);
    await new Promise((r) => setTimeout(r, 2_100));
    expect((await get('/v1/entities/e-3/total?eventType=buy')).body).toMatchObject({ count: 3, sum: 30 });
  });

  it('accepts entity ids of up to 256 characters, slashes included, and rejects longer ones naming entityId', async () => {
    const longest = `a/${'é'.repeat(254)}`;
    const ok = await get(`/v1/entities/${encodeURIComponent(longest)}/total?eventType=click`);
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ entityId: longest, eventType: 'click', count: 0, sum: 0 });
    const tooLong = await get(`/v1/entities/${'x'.repeat(257)}/total?eventType=click`);
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.details[0]).toMatchObject({ param: 'entityId' });
  });

  it('answers a burst of identical requests with a single InfluxDB query', async () => {
    const influxTotals = async () =>
      Number(
        /sluice_query_influx_duration_seconds_count\{[^}]*query="total"[^}]*\} (\d+)/.exec(await (await fetch(`${service.url}/metrics`)).text())?.[1] ?? 0,
      );
    const before = await influxTotals();
    const answers = await Promise.all(Array.from({ length: 25 }, () => get('/v1/entities/e-1/total?eventType=click')));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    expect(new Set(answers.map((a) => JSON.stringify(a.body))).size).toBe(1);
    expect(answers[0]?.body.count).toBeGreaterThanOrEqual(20);
    expect(await influxTotals()).toBe(before + 1);
  });

  it('rejects a missing or bad eventType', async () => {
    const missing = await get('/v1/entities/e-1/total');
    expect(missing.status).toBe(400);
    expect(missing.body.details[0].param).toBe('eventType');
    expect((await get('/v1/entities/e-1/total?eventType=NOPE')).status).toBe(400);
  });
});

describe('operations', () => {
  it('is ready while InfluxDB answers, and exposes request, cache and InfluxDB metrics', async () => {
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/readyz')).body).toEqual({ status: 'ready' });
    const text = await (await fetch(`${service.url}/metrics`)).text();
    expect(text).toMatch(/sluice_query_http_request_duration_seconds_count\{[^}]*route="\/v1\/stats"[^}]*status="200"[^}]*\} [1-9]/);
    expect(text).toMatch(/sluice_query_http_request_duration_seconds_count\{[^}]*status="400"[^}]*\} [1-9]/);
    expect(text).toMatch(/sluice_query_cache_requests_total\{[^}]*kind="stats"[^}]*result="hit"[^}]*\} [1-9]/);
    expect(text).toMatch(/sluice_query_cache_requests_total\{[^}]*result="miss"[^}]*\} [1-9]/);
    expect(text).toMatch(/sluice_query_influx_duration_seconds_count\{[^}]*query="stats"[^}]*outcome="ok"[^}]*\} [1-9]/);
  });

  it('answers unknown routes with 404 JSON', async () => {
    const { status, body } = await get('/v1/nope');
    expect(status).toBe(404);
    expect(body.error).toContain('/v1/stats');
  });
});
