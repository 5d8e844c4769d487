// Query API read keys on a real query API (InfluxDB, Redis, SQS): with SLUICE_QUERY_API_KEYS set every /v1/* route
// and the dashboard answer 401 (WWW-Authenticate: Bearer) without a key and 403 for a wrong one, while /healthz,
// /readyz and /metrics stay open; an entity-scoped key gets 403 outside its prefixes and a /v1/topk filtered to them;
// the dashboard signs in through a form that sets an HttpOnly cookie; requests and refusals are counted per key name;
// no key ever reaches the logs or /metrics; bad key or scope settings stop the start with a message naming the entry.
import { Writable } from 'node:stream';
import type { IPoint } from 'influx';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startQuery } from '../../query/main.js';
import type { OpsSummary } from '../../query/ops-summary.js';
import { createInflux } from '../../shared/clients/influx.js';
import { createRedis } from '../../shared/clients/redis.js';
import { loadConfig } from '../../shared/config.js';
import { MEASUREMENT_1M, TAG_ENTITY, TAG_TYPE } from '../../shared/contracts/influx-series.js';
import { ConfigError } from '../../shared/errors.js';
import { createLogger } from '../../shared/logger.js';
import { parsePromText, sumOf } from '../../shared/prom-text.js';
import type { Service } from '../../shared/service.js';
import { TopKUpdater } from '../../workers/topk.js';
import { testConfig } from '../support/config.js';

const FULL_KEY = 'full-key-5f1c0a9e-analyst';
const ROTATED_KEY = 'full-key-2-rotated-in';
const SCOPED_KEY = 'video-key-77d1b2c4';
const METER_KEY = 'meter-key-0b9e61aa';
const OPERATOR_KEY = 'operator-key-c41f';
const SECRETS = [FULL_KEY, ROTATED_KEY, SCOPED_KEY, METER_KEY, OPERATOR_KEY, 'wrong-key-e2a4'];
/** "chan%7Cnel-" is the prefix chan|nel- (a | inside a prefix is written %7C). */
const KEYS_ENV = `analyst:${FULL_KEY},analyst:${ROTATED_KEY},video:${SCOPED_KEY},meter:${METER_KEY}`;
const SCOPES_ENV = 'video:entity=video-|chan%7Cnel-';

/** A past minute, so the points are settled and all-time totals include them. */
const T0 = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
const point = (entityId: string, count: number): IPoint => ({
  measurement: MEASUREMENT_1M,
  tags: { [TAG_ENTITY]: entityId, [TAG_TYPE]: 'view' },
  fields: { count, sum: count, min: 1, max: 1 },
  timestamp: (BigInt(T0) * 1_000_000n + 7n).toString(),
});

/** Every protected route the dashboard and an API client use, with an entity inside the scoped key's prefixes. */
const ROUTES = [
  `/v1/stats?entityId=video-1&eventType=view&fn=count&from=${T0}&to=${T0 + 60_000}`,
  '/v1/entities/video-1/total?eventType=view',
  '/v1/topk?eventType=view&window=1h&k=5',
  '/v1/ops/summary',
  '/',
  '/dashboard/app.js',
];

/** Log lines of the query service (at debug, so refusals are logged too). */
const logLines: string[] = [];
const log = pino(
  { level: 'debug', base: { service: 'query' } },
  new Writable({
    write(chunk, _enc, done) {
      logLines.push(String(chunk));
      done();
    },
  }),
);

let query: Service;

beforeAll(async () => {
  const cfg = await testConfig({
    SLUICE_QUERY_API_KEYS: KEYS_ENV,
    SLUICE_QUERY_KEY_SCOPES: SCOPES_ENV,
    SLUICE_OPERATOR_KEYS: OPERATOR_KEY,
    // The summary's scrapes fail at once instead of reaching services of other tests.
    SLUICE_INGEST_URL: 'http://127.0.0.1:9',
    SLUICE_FLEET_URL: 'http://127.0.0.1:7',
  });
  await createInflux(cfg).writePoints([point('video-1', 3), point('secret-1', 40)], { precision: 'n' });
  // Top-K written the way workers write it: the biggest entities are outside the scoped key's prefixes.
  const redis = createRedis(cfg);
  const bucketMs = Math.floor(Date.now() / 10_000) * 10_000;
  const counts = { 'secret-a': 500, 'secret-b': 400, 'secret-c': 300, 'video-9': 20, 'chan|nel-2': 10, 'video-3': 5, videos: 99 };
  await new TopKUpdater(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_TOPK_CAPACITY).apply(
    'auth-test-batch',
    Object.entries(counts).map(([entityId, count]) => ({ entityId, eventType: 'view', bucketMs, count })),
  );
  redis.disconnect();
  query = await startQuery(cfg, log);
});

afterAll(async () => {
  await query?.close();
});

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
async function get(path: string, headers: Record<string, string> = {}) {
  const res = await fetch(query.url + path, { headers, redirect: 'manual' });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as any };
}
async function signIn(key: string, headers: Record<string, string> = {}) {
  return fetch(`${query.url}/dashboard/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ key }).toString(),
    redirect: 'manual',
  });
}
async function metrics() {
  return parsePromText(await (await fetch(`${query.url}/metrics`)).text());
}

describe('query API read keys', () => {
  it('answers 401 with WWW-Authenticate: Bearer on every protected route without a key', async () => {
    for (const path of [...ROUTES, '/v1/no-such-route']) {
      const r = await get(path);
      expect({ path, status: r.status }).toEqual({ path, status: 401 });
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
    }
    expect((await get(ROUTES[0]!)).json().error).toMatch(/Authorization: Bearer <key>.*SLUICE_QUERY_API_KEYS/);
  });

  it('answers 403 for a wrong key, a key with extra characters, a non-bearer header and a wrong cookie', async () => {
    const callers: Record<string, string>[] = [
      bearer('wrong-key-e2a4'),
      bearer(`${FULL_KEY}x`),
      bearer(FULL_KEY.slice(0, -1)),
      { authorization: FULL_KEY },
      { authorization: `Basic ${Buffer.from(`analyst:${FULL_KEY}`).toString('base64')}` },
      bearer(OPERATOR_KEY), // an operator key opens /v1/ops/summary only (tested below)
      { cookie: 'sluice_query_key=wrong-key-e2a4' },
    ];
    for (const path of ROUTES.filter((p) => p !== '/v1/ops/summary')) {
      for (const headers of callers) {
        const r = await get(path, headers);
        expect({ path, headers, status: r.status }).toEqual({ path, headers, status: 403 });
        expect(r.headers.get('www-authenticate')).toBeNull();
      }
    }
    expect((await get(ROUTES[2]!, bearer('wrong-key-e2a4'))).json()).toEqual({ error: 'API key not recognised' });
  });

  it('answers every protected route for a valid key, including a second key of the same name (rotation)', async () => {
    for (const path of ROUTES) {
      for (const key of [FULL_KEY, ROTATED_KEY, SCOPED_KEY]) {
        const r = await get(path, bearer(key));
        expect({ path, key, status: r.status }).toEqual({ path, key, status: 200 });
      }
    }
    const stats = (await get(ROUTES[0]!, bearer(FULL_KEY))).json();
    expect(stats.total).toBe(3);
    expect((await get('/v1/no-such-route', bearer(FULL_KEY))).status).toBe(404);
    expect((await get('/v1/entities/video-1/total?eventType=view', { authorization: `bearer  ${FULL_KEY} ` })).status).toBe(200);
  });

  it('keeps /healthz, /readyz and /metrics open for probes and scrapers', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const r = await get(path);
      expect({ path, status: r.status }).toEqual({ path, status: 200 });
    }
  });

  it('lets an operator key open /v1/ops/summary with the detailed view, and nothing else', async () => {
    const s = (await get('/v1/ops/summary', bearer(OPERATOR_KEY))).json() as OpsSummary;
    expect(s.detailed).toBe(true);
    expect((await get('/v1/ops/summary', bearer(FULL_KEY))).json().detailed).toBe(false);
    expect((await get('/v1/topk?eventType=view&window=1h', bearer(OPERATOR_KEY))).status).toBe(403);
  });
});

describe('entity-scoped keys', () => {
  it('reads the entities of its prefixes (a prefix holding | included) and gets 403 for others', async () => {
    const ok = await get(ROUTES[0]!, bearer(SCOPED_KEY));
    expect(ok.json().total).toBe(3);
    expect((await get(`/v1/entities/${encodeURIComponent('chan|nel-2')}/total?eventType=view`, bearer(SCOPED_KEY))).status).toBe(200);
    for (const path of [
      `/v1/stats?entityId=secret-1&eventType=view&fn=count&from=${T0}`,
      '/v1/entities/secret-1/total?eventType=view',
      '/v1/entities/videos/total?eventType=view', // "videos" does not start with "video-"
      '/v1/entities/Video-1/total?eventType=view', // prefixes are case-sensitive
      '/v1/stats?entityId=video-1&entityId=secret-1&eventType=view&fn=count', // a repeated parameter is checked too
      '/v1/entities/video-1/total?eventType=view&entityId=secret-1',
    ]) {
      const r = await get(path, bearer(SCOPED_KEY));
      expect({ path, status: r.status }).toEqual({ path, status: 403 });
      expect(r.json().error).toMatch(/key "video" may read only entities whose id starts with video-, chan\|nel-/);
    }
    // The unscoped key reads the same entity.
    expect((await get('/v1/entities/secret-1/total?eventType=view', bearer(FULL_KEY))).json().count).toBe(40);
  });

  it('gets /v1/topk filtered to its prefixes, ranked among them, and told so', async () => {
    const scoped = (await get('/v1/topk?eventType=view&window=1h&k=2', bearer(SCOPED_KEY))).json();
    expect(scoped.items.map((i: { entityId: string; count: number }) => [i.entityId, i.count])).toEqual([
      ['video-9', 20],
      ['chan|nel-2', 10],
    ]);
    expect(scoped.filtered).toEqual({ key: 'video', entityPrefixes: ['video-', 'chan|nel-'] });
    expect(scoped.guaranteed).toBe(true);
    expect(scoped).not.toHaveProperty('events'); // the event type's total over every entity is not the scope's to see
    const all = (await get('/v1/topk?eventType=view&window=1h&k=2', bearer(FULL_KEY))).json();
    expect(all.items.map((i: { entityId: string }) => i.entityId)).toEqual(['secret-a', 'secret-b']);
    expect(all.filtered).toBeUndefined();
    expect(all.events).toBe(1334);
    const three = (await get('/v1/topk?eventType=view&window=1h&k=10', bearer(SCOPED_KEY))).json();
    expect(three.items.map((i: { entityId: string }) => i.entityId)).toEqual(['video-9', 'chan|nel-2', 'video-3']);
  });
});

describe('dashboard sign-in', () => {
  it('shows the sign-in form instead of the dashboard without a key', async () => {
    const page = await get('/');
    expect(page.status).toBe(401);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.text).toContain('<form method="post" action="/dashboard/login">');
    expect(page.text).not.toContain('/dashboard/app.js');
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    // Under no-referrer a browser posts the form with Origin: null, which the cross-site check would refuse.
    expect(page.headers.get('referrer-policy')).toBe('same-origin');
    expect((await get('/dashboard/login')).status).toBe(200);
  });

  it('refuses a wrong key without setting a cookie, and a form posted from another site', async () => {
    const wrong = await signIn('wrong-key-e2a4');
    expect(wrong.status).toBe(403);
    expect(wrong.headers.getSetCookie()).toEqual([]);
    expect(await wrong.text()).toContain('That key is not recognised.');
    expect((await signIn('')).status).toBe(401);
    const before = await metrics();
    const csrf = await signIn(FULL_KEY, { origin: 'https://elsewhere.example' });
    expect(csrf.status).toBe(403);
    expect(csrf.headers.getSetCookie()).toEqual([]);
    expect(await csrf.text()).toContain('Sign-in from another site refused');
    const refusals = (m: typeof before) => sumOf(m, 'sluice_query_key_refusals_total', { reason: 'cross_site_sign_in' }) ?? 0;
    expect(refusals(await metrics()) - refusals(before)).toBe(1);
  });

  it('signs in with a key: an HttpOnly cookie opens the page and its data calls; signing out closes them', async () => {
    const res = await signIn(SCOPED_KEY, { origin: query.url });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/');
    const [setCookie] = res.headers.getSetCookie();
    expect(setCookie).toMatch(/^sluice_query_key=[^;]+; Path=\/; Max-Age=43200; HttpOnly; SameSite=Lax$/);
    const cookie = { cookie: setCookie!.split(';')[0]! };

    const page = await get('/', cookie);
    expect(page.status).toBe(200);
    expect(page.text).toContain('/dashboard/app.js');
    expect((await get('/dashboard/app.js', cookie)).status).toBe(200);
    expect((await get(ROUTES[0]!, cookie)).json().total).toBe(3);
    expect((await get('/v1/topk?eventType=view&window=1h&k=1', cookie)).json().items).toMatchObject([{ entityId: 'video-9', count: 20 }]);
    expect((await get('/v1/entities/secret-1/total?eventType=view', cookie)).status).toBe(403);
    expect((await get('/dashboard/session', cookie)).json()).toEqual({ key: 'video', entityPrefixes: ['video-', 'chan|nel-'] });
    // The dashboard sends the operator key as its bearer beside the cookie: the summary is then detailed.
    expect((await get('/v1/ops/summary', { ...cookie, ...bearer(OPERATOR_KEY) })).json().detailed).toBe(true);

    const out = await fetch(`${query.url}/dashboard/logout`, { method: 'POST', headers: cookie, redirect: 'manual' });
    expect(out.status).toBe(303);
    expect(out.headers.getSetCookie()[0]).toMatch(/^sluice_query_key=; Path=\/; Max-Age=0; HttpOnly/);
  });

  it('clears a cookie whose key is no longer recognised, and marks the cookie Secure behind TLS', async () => {
    const stale = await get('/v1/topk?eventType=view&window=1h', { cookie: 'theme=dark; sluice_query_key=revoked-key' });
    expect(stale.status).toBe(403);
    expect(stale.headers.get('set-cookie')).toMatch(/^sluice_query_key=; Path=\/; Max-Age=0/);
    const tls = await signIn(FULL_KEY, { 'x-forwarded-proto': 'https' });
    expect(tls.headers.getSetCookie()[0]).toMatch(/; Secure$/);
  });
});

describe('per-key metrics and logs', () => {
  it('counts requests and refusals per key name', async () => {
    const before = await metrics();
    for (let i = 0; i < 3; i++) await get('/v1/topk?eventType=view&window=1h', bearer(METER_KEY));
    await get('/v1/entities/secret-1/total?eventType=view', bearer(SCOPED_KEY));
    await get('/v1/topk?eventType=view&window=1h');
    await get('/v1/topk?eventType=view&window=1h', bearer('wrong-key-e2a4'));
    const after = await metrics();
    const delta = (name: string, labels: Record<string, string>) => (sumOf(after, name, labels) ?? 0) - (sumOf(before, name, labels) ?? 0);
    expect(delta('sluice_query_key_requests_total', { key: 'meter' })).toBe(3);
    expect(delta('sluice_query_key_refusals_total', { key: 'meter' })).toBe(0);
    expect(delta('sluice_query_key_requests_total', { key: 'video' })).toBe(1);
    expect(delta('sluice_query_key_refusals_total', { key: 'video', reason: 'outside_scope' })).toBe(1);
    expect(delta('sluice_query_key_refusals_total', { key: '(none)', reason: 'missing_key' })).toBe(1);
    expect(delta('sluice_query_key_refusals_total', { key: '(unrecognised)', reason: 'unknown_key' })).toBe(1);
  });

  it('never shows a key in /metrics or the logs', async () => {
    const text = await (await fetch(`${query.url}/metrics`)).text();
    expect(logLines.some((l) => l.includes('query request refused'))).toBe(true);
    expect(logLines.some((l) => l.includes('"keyNames"'))).toBe(true);
    for (const secret of SECRETS) {
      expect(text).not.toContain(secret);
      for (const line of logLines) expect(line).not.toContain(secret);
    }
  });
});

describe('configuration', () => {
  const problem = (env: Record<string, string>): string => {
    try {
      loadConfig(env);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as Error).message;
    }
    throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
  };

  it('refuses producer scopes: the series carry no producer', () => {
    const m = problem({ SLUICE_QUERY_API_KEYS: 'partner:k1', SLUICE_QUERY_KEY_SCOPES: 'partner:producer=web' });
    expect(m).toContain('SLUICE_QUERY_KEY_SCOPES must be');
    expect(m).toContain('entry 1 "partner:producer=web": producer scopes are not supported by the current series layout');
    expect(m).toContain('tagged entity_id and event_type only');
  });

  it.each([
    ['a:entity=x;b:team=y', 'entry 2 "b:team=y" must scope the key as entity=prefix|prefix, got "team=y"'],
    ['a:entity=x|', 'entry 1 "a:entity=x|" has an empty prefix, which would match every entity'],
    ['a:entity=100%', 'entry 1 "a:entity=100%": prefix "100%" is not valid percent-encoding'],
    ['entity=x', 'entry 1 "entity=x" must start with a key name of SLUICE_QUERY_API_KEYS'],
    ['a:entity=x;a:entity=y', 'entry 2 "a:entity=y" scopes "a" again (entry 1)'],
    ['a:entity=x;ghost:entity=y', 'SLUICE_QUERY_KEY_SCOPES scopes key name "ghost", which SLUICE_QUERY_API_KEYS does not define (its names: a)'],
  ])('names the wrong entry of SLUICE_QUERY_KEY_SCOPES=%s', (scopes, message) => {
    expect(problem({ SLUICE_QUERY_API_KEYS: 'a:k1', SLUICE_QUERY_KEY_SCOPES: scopes })).toContain(message);
  });

  it('refuses scopes without keys', () => {
    expect(problem({ SLUICE_QUERY_KEY_SCOPES: 'a:entity=x' })).toContain('SLUICE_QUERY_API_KEYS does not define (it is empty');
  });

  it.each([
    ['a:s3cr3t-one,s3cr3t-two', 'entry 2 of 2 has no ":" between its name and its key'],
    ['a:s3cr3t-one,b:', 'entry 2 of 2 has an empty key'],
    ['a:s3cr3t-one,b:s3cr3t-one', 'entry 2 of 2 repeats the key of entry 1: each key belongs to one name'],
    ['a b:s3cr3t-one', 'entry 1 of 1: the name before ":" must be letters'],
  ])('names the wrong entry of SLUICE_QUERY_API_KEYS=%s without showing a key', (keys, message) => {
    const m = problem({ SLUICE_QUERY_API_KEYS: keys });
    expect(m).toContain('SLUICE_QUERY_API_KEYS must be comma-separated name:key pairs');
    expect(m).toContain(message);
    expect(m).not.toContain('s3cr3t');
  });

  it('lets the query API listen beyond loopback with keys, and names SLUICE_QUERY_API_KEYS when it has none', async () => {
    const quiet = createLogger('query-test', 'silent');
    const err = await startQuery(await testConfig({ SLUICE_QUERY_HOST: '0.0.0.0' }), quiet).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/set SLUICE_QUERY_API_KEYS \(name:key pairs\) so callers must authenticate, or set SLUICE_ALLOW_ANONYMOUS=true/);
    const open = await startQuery(await testConfig({ SLUICE_QUERY_HOST: '0.0.0.0', SLUICE_QUERY_API_KEYS: `a:${FULL_KEY}` }), quiet);
    try {
      const url = open.url.replace('0.0.0.0', '127.0.0.1');
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect((await fetch(`${url}/v1/topk?eventType=view&window=1h`)).status).toBe(401);
    } finally {
      await open.close();
    }
  });

  it('requires nothing when SLUICE_QUERY_API_KEYS is empty (the default)', async () => {
    const off = await startQuery(await testConfig(), createLogger('query-test', 'silent'));
    try {
      expect((await fetch(`${off.url}/v1/topk?eventType=view&window=1h`)).status).toBe(200);
      expect((await fetch(`${off.url}/`)).status).toBe(200);
      expect((await fetch(`${off.url}/dashboard/login`)).status).toBe(404);
      expect((await fetch(`${off.url}/dashboard/session`)).status).toBe(404);
    } finally {
      await off.close();
    }
  });
});
