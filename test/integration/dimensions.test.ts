// Dimension tables and enrichment against real InfluxDB, Redis and the S3/SQS emulator: a table loaded with
// `sluice dimensions load` enriches the batches a real worker processes — the attribute series in InfluxDB and
// /v1/stats?dimension=… equal the ground truth computed from the events and the table (unknown entities count for no
// value); a new version is picked up without a restart, batches counted before keep their attributes, and a
// recount after the change (a replay) deletes the batch's earlier attribute points instead of counting twice; the
// rollup job rolls the attribute series hot and cold, and the query API reads them from the cold tier; /v1/topk by
// attribute value ranks exactly the entities having it.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3 } from '../../shared/clients/aws.js';
import { createInflux } from '../../shared/clients/influx.js';
import type { Config } from '../../shared/config.js';
import type { Event } from '../../shared/contracts/event.js';
import { attributeMeasurement, MEASUREMENT_1M, RP_1H } from '../../shared/contracts/influx-series.js';
import { attributeRollupKey } from '../../shared/contracts/dimensions.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { createLogger } from '../../shared/logger.js';
import { openEngine } from '../../shared/parquet.js';
import { PROJECT_ROOT } from '../../shared/config.js';
import type { Service } from '../../shared/service.js';
import { startQuery } from '../../query/main.js';
import { runRollup } from '../../workers/cold/rollup.js';
import { loadDimensionTable } from '../../workers/dimensions/table-load.js';
import { startWorker } from '../../workers/main.js';
import { nodeEntry } from '../../localstack/services.js';
import { testConfig } from '../support/config.js';
import {
  type Agg,
  FAST_WORKER_ENV,
  diffAggregates,
  groundTruth,
  influxAggregates,
  metricValueOrZero,
  pastHour,
  randomEvents,
  sendManifests,
  uploadBatches,
  waitUntil,
} from '../support/batches.js';

const log = createLogger('dimensions-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const ATTRS = ['channel', 'category'] as const;
type Row = { channel?: string; category?: string };
type Table = Map<string, Row>;
const running: Service[] = [];
beforeAll(async () => {
  await openEngine({ tempDir: path.join(PROJECT_ROOT, '.data', 'tests', 'dimensions-duckdb-tmp') });
});
afterAll(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

const env = (extra: Record<string, string> = {}) => ({ ...FAST_WORKER_ENV, SLUICE_DIMENSIONS: 'channel,category', SLUICE_DIMENSIONS_POLL: '1s', ...extra });

/** Writes `table` as CSV and loads it as the next version of the configured table. */
async function load(cfg: Config, table: Table): Promise<number> {
  const file = path.join(cfg.SLUICE_DATA_DIR, `table-${Date.now()}-${Math.random().toString(36).slice(2)}.csv`);
  const lines = ['entity_id,channel,category', ...[...table].map(([id, r]) => `${id},${r.channel ?? ''},${r.category ?? ''}`)];
  writeFileSync(file, `${lines.join('\n')}\n`);
  const s3 = createS3(cfg);
  try {
    const m = await loadDimensionTable(s3, cfg.SLUICE_RAW_BUCKET, {
      input: file,
      table: cfg.SLUICE_DIMENSIONS_TABLE,
      tempDir: path.join(cfg.SLUICE_DATA_DIR, 'dims-tmp'),
    });
    return m.version;
  } finally {
    s3.destroy();
  }
}

/** e0…e14 known (e15…e19 unknown): channel <prefix><(i + shift) % 3>, category K<(i + shift) % 2>, none for multiples of 5. */
function tableOf(shift: number, prefix = 'C'): Table {
  const t: Table = new Map();
  for (let i = 0; i < 15; i++) t.set(`e${i}`, { channel: `${prefix}${(i + shift) % 3}`, ...(i % 5 === 0 ? {} : { category: `K${(i + shift) % 2}` }) });
  return t;
}

/** Expected per-(attribute|value|type|minute) aggregates: each event id once, entities of `table` only. */
function attributeTruth(events: readonly Event[], table: Table): Map<string, Agg> {
  const out = new Map<string, Agg>();
  for (const [k, a] of groundTruth(events)) {
    const [entity, type, minute] = k.split('|') as [string, string, string];
    const row = table.get(entity);
    for (const attr of ATTRS) {
      const v = row?.[attr];
      if (!v) continue;
      const key = `${attr}|${v}|${type}|${minute}`;
      const b = out.get(key);
      if (!b) out.set(key, { ...a });
      else {
        b.count += a.count;
        b.sum += a.sum;
        b.min = Math.min(b.min, a.min);
        b.max = Math.max(b.max, a.max);
      }
    }
  }
  return out;
}

function merge(...maps: Map<string, Agg>[]): Map<string, Agg> {
  const out = new Map<string, Agg>();
  for (const m of maps)
    for (const [k, a] of m) {
      if (out.has(k)) throw new Error(`overlapping key ${k}`);
      out.set(k, a);
    }
  return out;
}

/** The attribute series as a reader folds them, and the dim_version values their points carry. */
async function attributeAggregates(cfg: Config, fromMs: number, toMs: number): Promise<{ aggs: Map<string, Agg>; versions: Set<number> }> {
  const influx = createInflux(cfg);
  const aggs = new Map<string, Agg>();
  const versions = new Set<number>();
  for (const attr of ATTRS) {
    const m = attributeMeasurement(attr, '1m');
    const rows = await influx.query<{ time: Date; value: string; event_type: string; c: number; s: number; mn: number; mx: number }>(
      `SELECT sum("count") AS c, sum("sum") AS s, min("min") AS mn, max("max") AS mx FROM "${m}" WHERE time >= ${fromMs}ms AND time < ${toMs}ms GROUP BY time(1m), "value", "event_type" fill(none)`,
    );
    for (const r of rows) aggs.set(`${attr}|${r.value}|${r.event_type}|${r.time.getTime()}`, { count: r.c, sum: r.s, min: r.mn, max: r.mx });
    const vs = await influx.query<{ v: number }>(`SELECT "dim_version" AS v FROM "${m}" WHERE time >= ${fromMs}ms AND time < ${toMs}ms`);
    for (const r of vs) versions.add(r.v);
  }
  return { aggs, versions };
}

async function delivered(w: Service, n: number): Promise<void> {
  await waitUntil(`${n} batch(es) delivered`, async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) >= n, 60_000);
}

/** Waits until the worker's store uses `version` (its file is built and the previous one dropped). */
async function workerUses(cfg: Config, version: number): Promise<void> {
  const dir = path.join(cfg.SLUICE_DATA_DIR, 'worker-dimensions', cfg.SLUICE_DIMENSIONS_TABLE);
  await waitUntil(
    `the worker to use dimension version ${version}`,
    () => existsSync(path.join(dir, `v${version}.duckdb`)) && (version === 1 || !existsSync(path.join(dir, `v${version - 1}.duckdb`))),
    60_000,
  );
}

async function get(service: Service, p: string): Promise<{ status: number; body: any }> {
  const res = await fetch(service.url + p);
  return { status: res.status, body: await res.json() };
}

function sluice(cfg: Config & { env: Record<string, string> }, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const [cmd, ...pre] = nodeEntry('cli/sluice.ts');
  const r = spawnSync(cmd!, [...pre, ...args], { env: { ...process.env, ...cfg.env }, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('dimension enrichment', () => {
  it('counts per attribute value exactly (unknown entities count for none), answers /v1/stats and /v1/topk by attribute, and validates dimension', async () => {
    const cfg = await testConfig(env());
    const table = tableOf(0);
    expect(await load(cfg, table)).toBe(1);
    const start = pastHour();
    const events = randomEvents(4_000, { start, minutes: 7, entities: 20 });
    const [batch] = await uploadBatches(cfg, events);
    await sendManifests(cfg, [batch!.body]);
    const w = await startWorker(cfg, log);
    running.push(w);
    await delivered(w, 1);

    const truth = attributeTruth(events, table);
    const { aggs, versions } = await attributeAggregates(cfg, start, start + 3_600_000);
    expect(aggs.size).toBeGreaterThan(0);
    expect(diffAggregates(aggs, truth)).toEqual([]);
    expect([...versions]).toEqual([1]);
    // The entity series are untouched by the enrichment.
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(events))).toEqual([]);

    const q = await startQuery(cfg, log);
    running.push(q);
    const from = new Date(start).toISOString();
    const to = new Date(start + 3_600_000).toISOString();
    const minuteSums = [...truth].filter(([k]) => k.startsWith('channel|C1|view|')).sort(([a], [b]) => a.localeCompare(b));
    const r = await get(q, `/v1/stats?dimension=channel&value=C1&eventType=view&fn=sum&from=${from}&to=${to}&step=1m`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ dimension: 'channel', value: 'C1', eventType: 'view', fn: 'sum', step: '1m' });
    expect(r.body.points.map((p: { t: string; value: number }) => [Date.parse(p.t), p.value])).toEqual(
      minuteSums.map(([k, a]) => [Number(k.split('|')[3]), expect.closeTo(a.sum, 9)]),
    );
    const hourly = await get(q, `/v1/stats?dimension=category&value=K1&eventType=like&fn=count&from=${from}&to=${to}&step=1h`);
    const k1 = [...truth].filter(([k]) => k.startsWith('category|K1|like|')).reduce((n, [, a]) => n + a.count, 0);
    expect(k1).toBeGreaterThan(0);
    expect(hourly.body.total).toBe(k1);
    // An entity's own series still answers as before.
    const e1 = (await get(q, `/v1/stats?entityId=e1&eventType=view&fn=count&from=${from}&to=${to}&step=1h`)).body.total;
    expect(e1).toBe([...groundTruth(events)].filter(([k]) => k.startsWith('e1|view|')).reduce((n, [, a]) => n + a.count, 0));

    const bad = await get(q, `/v1/stats?dimension=advertiser&value=A&eventType=view&fn=count`);
    expect(bad.status).toBe(400);
    expect(bad.body.details).toEqual([{ param: 'dimension', message: 'must be one of channel, category (SLUICE_DIMENSIONS), got "advertiser"' }]);
    const noValue = await get(q, `/v1/stats?dimension=channel&eventType=view&fn=count&entityId=e1`);
    expect(noValue.status).toBe(400);
    expect(noValue.body.details.map((d: { param: string }) => d.param).sort()).toEqual(['entityId', 'value']);

    // Top entities within channel C1 (the query API's copy of version 1): exactly the C1 entities, by count.
    const c1 = new Map<string, number>();
    for (const [k, a] of groundTruth(events)) {
      const [entity, type] = k.split('|');
      if (type === 'view' && table.get(entity!)?.channel === 'C1') c1.set(entity!, (c1.get(entity!) ?? 0) + a.count);
    }
    const expectedTop = [...c1].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    await waitUntil(
      'the query API to load the dimension table',
      async () => (await get(q, '/v1/topk?eventType=view&window=1d&k=10&dimension=channel&value=C1')).body.dimVersion === 1,
    );
    const top = await get(q, '/v1/topk?eventType=view&window=1d&k=10&dimension=channel&value=C1');
    expect(top.status).toBe(200);
    expect(top.body.items.map((i: { entityId: string; count: number }) => [i.entityId, i.count])).toEqual(expectedTop);
    expect(top.body.guaranteed).toBe(true);
    // Asked again with no batch in between: from the window cache the plain top-K route shares, the same answer.
    const again = await fetch(`${q.url}/v1/topk?eventType=view&window=1d&k=10&dimension=channel&value=C1`);
    expect(again.headers.get('x-sluice-cache')).toBe('hit');
    expect(await again.json()).toEqual(top.body);
    const topBad = await get(q, '/v1/topk?eventType=view&window=1d&dimension=region&value=x');
    expect(topBad.status).toBe(400);
    expect(topBad.body.details[0]).toEqual({ param: 'dimension', message: 'must be one of channel, category (SLUICE_DIMENSIONS), got "region"' });
    // Without dimension the top-K route answers as before.
    expect((await get(q, '/v1/topk?eventType=view&window=1d&k=3')).status).toBe(200);

    // The rollup job rolls the attribute series: hourly points equal the fold of their minutes.
    await runRollup(cfg, { log });
    const hours = await createInflux(cfg).query<{ time: Date; value: string; count: number; dim_version: number }>(
      `SELECT "count", "dim_version", "value" FROM "${cfg.SLUICE_INFLUX_DB}"."${RP_1H}"."${attributeMeasurement('channel', '1h')}" WHERE "event_type" = 'view'`,
    );
    const byValue = new Map<string, number>();
    for (const [k, a] of truth)
      if (k.startsWith('channel|') && k.includes('|view|')) byValue.set(k.split('|')[1]!, (byValue.get(k.split('|')[1]!) ?? 0) + a.count);
    expect(new Map(hours.map((h) => [h.value, h.count]))).toEqual(byValue);
    expect(new Set(hours.map((h) => h.dim_version))).toEqual(new Set([1]));
  });

  it('picks up a new version without a restart: batches before keep their attributes, a recount after the change replaces them', async () => {
    const cfg = await testConfig(env());
    const v1 = tableOf(0);
    // Version 2 renames the channels (so version-1 points of a recounted batch would stay beside the new ones) and
    // moves entities between categories.
    const v2 = tableOf(1, 'D');
    v2.delete('e2');
    v2.set('e17', { channel: 'C9', category: 'K9' }); // unknown in v1
    await load(cfg, v1);
    const start = pastHour();
    const before = randomEvents(2_000, { start, minutes: 5, entities: 20, idPrefix: 'before' });
    const after = randomEvents(2_000, { start: start + 20 * 60_000, minutes: 5, entities: 20, idPrefix: 'after' });
    const w = await startWorker(cfg, log);
    running.push(w);
    const [a] = await uploadBatches(cfg, before);
    await sendManifests(cfg, [a!.body]);
    await delivered(w, 1);

    expect(await load(cfg, v2)).toBe(2);
    await workerUses(cfg, 2);
    const [b] = await uploadBatches(cfg, after);
    await sendManifests(cfg, [b!.body]);
    await delivered(w, 2);
    const range: [number, number] = [start, start + 3_600_000];
    let got = await attributeAggregates(cfg, ...range);
    expect(diffAggregates(got.aggs, merge(attributeTruth(before, v1), attributeTruth(after, v2)))).toEqual([]);
    expect([...got.versions].sort()).toEqual([1, 2]);

    // The first batch announced again (what `sluice replay` does) is recounted with version 2: its version-1 points
    // of values it no longer has are deleted, not left beside the new ones.
    await sendManifests(cfg, [a!.body]);
    await delivered(w, 3);
    got = await attributeAggregates(cfg, ...range);
    expect(diffAggregates(got.aggs, merge(attributeTruth(before, v2), attributeTruth(after, v2)))).toEqual([]);
    expect([...got.versions]).toEqual([2]);
    // Delivered again with the same version: overwritten in place, nothing deleted or added.
    await sendManifests(cfg, [b!.body]);
    await delivered(w, 4);
    expect(diffAggregates((await attributeAggregates(cfg, ...range)).aggs, merge(attributeTruth(before, v2), attributeTruth(after, v2)))).toEqual([]);
    // The entity series never changed.
    expect(diffAggregates(await influxAggregates(cfg, ...range), groundTruth([...before, ...after]))).toEqual([]);
  });

  it('writes no attribute points before any table is loaded, and counts by attribute once one is', async () => {
    const cfg = await testConfig(env());
    const start = pastHour();
    const early = randomEvents(500, { start, minutes: 2, idPrefix: 'early' });
    const w = await startWorker(cfg, log);
    running.push(w);
    const [a] = await uploadBatches(cfg, early);
    await sendManifests(cfg, [a!.body]);
    await delivered(w, 1);
    expect((await attributeAggregates(cfg, start, start + 3_600_000)).aggs.size).toBe(0);
    const table = tableOf(2);
    await load(cfg, table);
    await workerUses(cfg, 1);
    await sendManifests(cfg, [a!.body]);
    await delivered(w, 2);
    expect(diffAggregates((await attributeAggregates(cfg, start, start + 3_600_000)).aggs, attributeTruth(early, table))).toEqual([]);
  });

  it('answers attribute stats from the cold rollups once InfluxDB no longer holds them', async () => {
    const cfg = await testConfig(env({ SLUICE_RETENTION_1H: '1h' }));
    const table = tableOf(0);
    await load(cfg, table);
    const start = pastHour();
    const events = randomEvents(1_500, { start, minutes: 30, entities: 20 });
    const [batch] = await uploadBatches(cfg, events);
    await sendManifests(cfg, [batch!.body]);
    const w = await startWorker(cfg, log);
    running.push(w);
    await delivered(w, 1);
    await runRollup(cfg, { log, resolutions: ['1h'] });
    const cold = new ColdStorage(cfg);
    expect(await cold.stat(attributeRollupKey('channel', '1h', start))).toBeDefined();
    // Minutes gone: only the cold file can answer the hour (1h retention puts it beyond InfluxDB's rollups).
    await createInflux(cfg).query(`DROP MEASUREMENT "${attributeMeasurement('channel', '1m')}"`);
    const q = await startQuery(cfg, log);
    running.push(q);
    const truth = attributeTruth(events, table);
    for (const value of ['C0', 'C1', 'C2']) {
      const want = [...truth].filter(([k]) => k.startsWith(`channel|${value}|view|`)).reduce((n, [, a]) => n + a.count, 0);
      const r = await get(q, `/v1/stats?dimension=channel&value=${value}&eventType=view&fn=count&from=${start}&to=${start + 3_600_000}&step=1h`);
      expect(r.body.points).toEqual([{ t: new Date(start).toISOString(), value: want }]);
    }
    // The entity minutes were never touched.
    const n = await createInflux(cfg).query<{ n: number }>(`SELECT sum("count") AS n FROM "${MEASUREMENT_1M}"`);
    expect(n[0]!.n).toBe(events.length);
  });

  it('refuses attribute stats to a key limited to some entities, and ranks only its entities in top-K by attribute', async () => {
    const cfg = await testConfig(env({ SLUICE_QUERY_API_KEYS: 'analyst:k-all,partner:k-part', SLUICE_QUERY_KEY_SCOPES: 'partner:entity=e1' }));
    const table = tableOf(0);
    await load(cfg, table);
    const start = pastHour();
    const events = randomEvents(1_000, { start, minutes: 3, entities: 20 });
    const [batch] = await uploadBatches(cfg, events);
    await sendManifests(cfg, [batch!.body]);
    const w = await startWorker(cfg, log);
    running.push(w);
    await delivered(w, 1);
    const q = await startQuery(cfg, log);
    running.push(q);
    const as = async (key: string, p: string) => {
      const res = await fetch(q.url + p, { headers: { authorization: `Bearer ${key}` } });
      return { status: res.status, body: (await res.json()) as any };
    };
    const stats = `/v1/stats?dimension=channel&value=C1&eventType=view&fn=count&from=${start}&to=${start + 3_600_000}`;
    expect((await as('k-all', stats)).status).toBe(200);
    const refused = await as('k-part', stats);
    expect(refused.status).toBe(403);
    expect(refused.body.error).toContain('key "partner" is limited to entities starting with e1, and /v1/stats with dimension counts every entity');
    // e1 and e10…e14 are in the scope; of those, channel C1 holds e1, e10 and e13.
    const topk = '/v1/topk?eventType=view&window=1d&k=10&dimension=channel&value=C1';
    await waitUntil('the query API to load the dimension table', async () => (await as('k-all', topk)).body.dimVersion === 1);
    const scoped = await as('k-part', topk);
    expect(scoped.status).toBe(200);
    expect(scoped.body.filtered).toEqual({ key: 'partner', entityPrefixes: ['e1'] });
    expect(scoped.body.items.map((i: { entityId: string }) => i.entityId).sort()).toEqual(['e1', 'e10', 'e13']);
  });

  it('sluice dimensions: load refuses a bad file naming line and column, list and show report the versions', async () => {
    const cfg = await testConfig(env());
    const bad = path.join(cfg.SLUICE_DATA_DIR, 'bad.csv');
    writeFileSync(bad, 'entity_id,channel\ne1,a\ne1,b\n');
    const refused = sluice(cfg, ['dimensions', 'load', bad, '--name', 'ads']);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain(`${bad}:3, column entity_id: entity id "e1" repeats line 2`);
    const good = path.join(cfg.SLUICE_DATA_DIR, 'good.csv');
    writeFileSync(good, 'entity_id,advertiser\ne1,acme\ne2,globex\n');
    const loaded = sluice(cfg, ['dimensions', 'load', good, '--name', 'ads']);
    expect(loaded.status).toBe(0);
    expect(loaded.stdout).toContain('loaded dimension table "ads" version 1: 2 rows, attributes advertiser');
    expect(sluice(cfg, ['dimensions', 'load', good, '--name', 'ads']).status).toBe(0);
    const list = sluice(cfg, ['dimensions', 'list']);
    expect(list.stdout).toMatch(/^ads: version 2 of 2, 2 rows, attributes advertiser, loaded \d{4}-/m);
    const show = sluice(cfg, ['dimensions', 'show', 'ads']);
    expect(show.stdout).toMatch(
      /ads: current version 2\n {2}v1: 2 rows, attributes advertiser; loaded .* from good\.csv \(csv\)[^\n]*\n {2}v2 \(current\): 2 rows/,
    );
    const missing = sluice(cfg, ['dimensions', 'show', 'ads', '--version', '7']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('dimension table "ads" has no version 7 (versions: 1, 2)');
  });
});
