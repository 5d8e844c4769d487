// Poison values on the worker side: one bad row never dead-letters its batch. Hostile but valid entity ids round-trip
// through InfluxDB, InfluxQL and /v1/stats; rows that break the contract are quarantined with their reason and left out
// of InfluxDB, top-K and totals alike; points InfluxDB refuses (a private InfluxDB with max-values-per-tag = 5) are
// narrowed to the refused ones and quarantined; producers have their own event-id space; manifests naming another
// bucket or a key outside the raw layout are dead-lettered before anything is read.
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureInflux, type RunningService } from '../../localstack/services.js';
import { statsQuery } from '../../query/influxql.js';
import { startQuery } from '../../query/main.js';
import { createS3 } from '../../shared/clients/aws.js';
import { createInflux, InfluxLineWriter } from '../../shared/clients/influx.js';
import { createRedis } from '../../shared/clients/redis.js';
import type { Config } from '../../shared/config.js';
import { TransientError } from '../../shared/errors.js';
import { encodeManifest } from '../../shared/contracts/manifest.js';
import { PARQUET_SCHEMA_VERSION, partitionOf, rawEventsKey } from '../../shared/contracts/parquet-schema.js';
import { QUARANTINE_RECORD_VERSION, batchQuarantineKey, decodeQuarantineRecord, type QuarantineRecord } from '../../shared/contracts/quarantine.js';
import { totalKeys } from '../../shared/entity-totals-store.js';
import { createLogger } from '../../shared/logger.js';
import { archiveTotals } from '../../workers/cold/audit-sql.js';
import { openEngine } from '../../shared/parquet.js';
import { writeEventBatches } from '../../ingest/parquet-batch-writer.js';
import type { Service } from '../../shared/service.js';
import { readTopK } from '../../shared/topk-store.js';
import { listDeadLetters } from '../../workers/dead-letters.js';
import { InfluxSink } from '../../workers/influx-sink.js';
import { startWorker } from '../../workers/main.js';
import { FAST_WORKER_ENV, metricValue, metricValueOrZero, pastHour, queueDepth, sendManifests, waitUntil } from '../support/batches.js';
import { testConfig } from '../support/config.js';

const log = createLogger('worker-poison-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const running: (Service | RunningService)[] = [];
afterEach(async () => {
  // Last started first: the worker stops before the private InfluxDB it writes to.
  for (const s of running.splice(0).reverse()) await ('stop' in s ? s.stop() : s.close());
});

/** A staged event line as ingest writes it (contracts/event.ts EventLine), with whatever content a test needs. */
interface Line {
  i: string;
  n: string;
  t: string;
  ts: number;
  v: number;
  p?: string;
}

/** Writes `lines` as one Parquet batch (one event-time hour), uploads it and returns its manifest body and key. */
async function uploadLines(
  cfg: Config,
  lines: readonly Line[],
  opts: { bucket?: string; key?: string } = {},
): Promise<{ body: string; key: string; bucket: string; file: string }> {
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  const dir = path.join(cfg.SLUICE_DATA_DIR, 'poison-batches', randomBytes(4).toString('hex'));
  mkdirSync(dir, { recursive: true });
  const staged = path.join(dir, 'staged.ndjson');
  writeFileSync(staged, lines.map((l) => `${JSON.stringify({ ...l, d: null, it: Date.now(), p: l.p ?? 'test' })}\n`).join(''));
  const [w, ...more] = await writeEventBatches([staged], path.join(dir, 'out'));
  expect(more).toEqual([]);
  const bytes = readFileSync(w!.file);
  const bucket = opts.bucket ?? cfg.SLUICE_RAW_BUCKET;
  const key = opts.key ?? rawEventsKey(partitionOf(w!.minEventTimeMs), cfg.SLUICE_NODE_ID, randomBytes(6).toString('hex'));
  const s3 = createS3(cfg);
  try {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
  } finally {
    s3.destroy();
  }
  const body = encodeManifest({
    bucket,
    key,
    eventCount: w!.eventCount,
    minEventTime: new Date(w!.minEventTimeMs).toISOString(),
    maxEventTime: new Date(w!.maxEventTimeMs).toISOString(),
    byteSize: bytes.length,
    checksum: { algorithm: 'sha256', value: createHash('sha256').update(bytes).digest('hex') },
    schemaVersion: PARQUET_SCHEMA_VERSION,
    producer: 'test',
    createdAt: new Date().toISOString(),
  });
  return { body, key, bucket, file: w!.file };
}

async function quarantineOf(cfg: Config, rawKey: string): Promise<QuarantineRecord[]> {
  const s3 = createS3(cfg);
  try {
    const res = await s3.send(new GetObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: batchQuarantineKey(rawKey) }));
    const text = await res.Body!.transformToString('utf8');
    return text
      .split('\n')
      .filter(Boolean)
      .map((l, i) => decodeQuarantineRecord(l, `line ${i + 1}`));
  } finally {
    s3.destroy();
  }
}

/** Count of one series in InfluxDB, asked with the query API's own InfluxQL (query/influxql.ts). */
async function influxCount(cfg: Config, entityId: string, fromMs: number): Promise<number> {
  const rows = await createInflux(cfg).query<{ count: number }>(statsQuery({ entityId, eventType: 'view', fromMs, toMs: fromMs + 3_600_000, step: '1h' }));
  return rows.reduce((n, r) => n + r.count, 0);
}

async function redisTotals(cfg: Config): Promise<Record<string, number>> {
  const redis = createRedis(cfg);
  try {
    const counts = await redis.hgetall(totalKeys(cfg.SLUICE_REDIS_PREFIX, 'view').count);
    return Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, Number(v)]));
  } finally {
    redis.disconnect();
  }
}

async function topK(cfg: Config): Promise<Record<string, number>> {
  const redis = createRedis(cfg);
  try {
    return Object.fromEntries((await readTopK(redis, cfg.SLUICE_REDIS_PREFIX, 'view', '1d', 100)).map((e) => [e.entityId, e.count]));
  } finally {
    redis.disconnect();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Valid entity ids that are hostile to line protocol, InfluxQL quoting or URLs; each must round-trip exactly. */
const HOSTILE = ['a\\\\b', 'a\\b', 'a,b', 'a=b', 'a b', '"q"', "it's", 'a\\,b', 'x\\ y', 'ünïcödé', '🚀 launch', 'q=1&r=2'];

describe('worker poison values', () => {
  it('round-trips hostile entity ids and quarantines rows that break the contract, counting neither anywhere', async () => {
    const cfg = await testConfig(FAST_WORKER_ENV);
    const start = pastHour();
    const lines: Line[] = [];
    let id = 0;
    const add = (n: string, count: number, extra: Partial<Line> = {}) => {
      for (let k = 0; k < count; k++) lines.push({ i: `id-${id++}`, n, t: 'view', ts: start + 60_000 * (k % 3) + k, v: 2, ...extra });
    };
    for (const [i, n] of HOSTILE.entries()) add(n, i + 1);
    const poison: [string, number, Partial<Line>][] = [
      ['ends-with\\', 2, {}], // InfluxDB 1.x cannot store a tag value ending in a backslash
      ['new\nline', 1, {}],
      ['tab\there', 1, {}],
      ['', 1, {}],
      ['bad-type', 1, { t: 'View!' }],
      ['huge', 2, { v: 1e308 }], // two finite values whose sum overflows
      ['huge-neg', 1, { v: -1e16 }],
    ];
    for (const [n, count, extra] of poison) add(n, count, extra);
    lines.push({ i: 'id-with\u0007bell', n: 'bell', t: 'view', ts: start, v: 1 }, { i: 'id-p', n: 'nul', t: 'view', ts: start, v: 1, p: 'pro\u0000ducer' });
    add('ok', 5, { v: 1e15 }); // the bound itself is storable
    const batch = await uploadLines(cfg, lines);
    await sendManifests(cfg, [batch.body]);

    const w = await startWorker(cfg, log, { workerId: 'poison-worker' });
    running.push(w);
    await waitUntil('batch delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1);
    expect(await queueDepth(cfg, cfg.SLUICE_DLQ_NAME)).toBe(0);
    expect(await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="rejected"')).toBe(0);

    // InfluxDB, asked with the query API's InfluxQL: each hostile id has exactly its own count.
    for (const [i, n] of HOSTILE.entries()) expect([n, await influxCount(cfg, n, start)]).toEqual([n, i + 1]);
    expect(await influxCount(cfg, 'ok', start)).toBe(5);
    const allTags = await createInflux(cfg).query<{ value: string }>('SHOW TAG VALUES FROM "events_1m" WITH KEY = "entity_id"');
    expect(allTags.map((r) => r.value).sort()).toEqual([...HOSTILE, 'ok'].sort());

    // The query API answers the same counts (and sums) for each of them.
    const q = await startQuery(cfg, log);
    running.push(q);
    for (const [i, n] of [...HOSTILE.entries(), [HOSTILE.length, 'ok'] as const]) {
      const params = new URLSearchParams({ entityId: n, eventType: 'view', fn: 'count', step: '1h', from: String(start), to: String(start + 3_600_000) });
      const res = await fetch(`${q.url}/v1/stats?${params}`);
      expect([n, res.status]).toEqual([n, 200]);
      expect([n, ((await res.json()) as { total: number }).total]).toEqual([n, n === 'ok' ? 5 : i + 1]);
    }

    // Top-K and totals hold exactly the stored ones.
    const expected = Object.fromEntries([...HOSTILE.map((n, i) => [n, i + 1]), ['ok', 5]]);
    expect(await redisTotals(cfg)).toEqual(expected);
    expect(await topK(cfg)).toEqual(expected);

    // Every poison row is in the quarantine with its reason, the field it broke, and its line as ingest staged it.
    const records = await quarantineOf(cfg, batch.key);
    const byEntity = (n: string) => records.filter((r) => (JSON.parse(r.line) as { n: string }).n === n).map((r) => r.reason);
    expect(byEntity('ends-with\\')).toEqual(['unstorable_tag', 'unstorable_tag']);
    expect(byEntity('new\nline')).toEqual(['control_character']);
    expect(byEntity('tab\there')).toEqual(['control_character']);
    expect(byEntity('')).toEqual(['not_an_event_line']);
    expect(byEntity('bad-type')).toEqual(['invalid_event_type']);
    expect(byEntity('huge')).toEqual(['value_out_of_range', 'value_out_of_range']);
    expect(byEntity('huge-neg')).toEqual(['value_out_of_range']);
    expect(byEntity('bell')).toEqual(['control_character']);
    expect(byEntity('nul')).toEqual(['control_character']);
    expect(records).toHaveLength(11);
    for (const r of records) {
      expect(r).toMatchObject({ kind: 'batch', batch: batch.key, node: cfg.SLUICE_NODE_ID });
      expect(r.detail).toMatch(/^(event_id|producer|entity_id|event_type|value): /);
    }
    expect(JSON.parse(records.find((r) => r.reason === 'value_out_of_range')!.line)).toMatchObject({ n: 'huge', v: 1e308, t: 'view', p: 'test' });
    expect(await metricValue(w.url, 'sluice_worker_quarantined_events_total', 'reason="value_out_of_range"')).toBe(3);
    expect(await metricValue(w.url, 'sluice_worker_quarantined_events_total', 'reason="control_character"')).toBe(4);
    expect(
      records
        .filter((r) => r.reason === 'control_character')
        .map((r) => r.detail.split(':')[0])
        .sort(),
    ).toEqual(['entity_id', 'entity_id', 'event_id', 'producer']);
    expect(await metricValue(w.url, 'sluice_worker_events_total')).toBe(HOSTILE.reduce((a, _n, i) => a + i + 1, 0) + 5);
  });

  it('keeps the refusals recorded in a batch quarantine on redelivery, in InfluxDB, top-K and totals alike', async () => {
    const cfg = await testConfig(FAST_WORKER_ENV);
    const start = pastHour();
    const lines: Line[] = ['p', 'q', 'r'].flatMap((n) => [0, 1].map((k) => ({ i: `${n}${k}`, n, t: 'view', ts: start + k * 60_000, v: 3 })));
    const batch = await uploadLines(cfg, lines);
    // An earlier delivery recorded InfluxDB refusing q's second minute (e.g. a series limit since raised).
    const earlier: QuarantineRecord = {
      v: QUARANTINE_RECORD_VERSION,
      kind: 'batch',
      line: JSON.stringify({ ...lines[3]!, d: null, it: start, p: 'test' }),
      reason: 'series_limit',
      detail: 'partial write: max-values-per-tag limit exceeded (5/5) dropped=1',
      node: cfg.SLUICE_NODE_ID,
      batch: batch.key,
      lineNo: 4,
      quarantinedAt: new Date().toISOString(),
    };
    const s3 = createS3(cfg);
    await s3.send(new PutObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: batchQuarantineKey(batch.key), Body: `${JSON.stringify(earlier)}\n` }));
    s3.destroy();
    await sendManifests(cfg, [batch.body]);
    const w = await startWorker(cfg, log, { workerId: 'redelivery-worker' });
    running.push(w);
    await waitUntil('batch delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1);
    expect(await influxCount(cfg, 'q', start)).toBe(1);
    expect(await redisTotals(cfg)).toEqual({ p: 2, q: 1, r: 2 });
    expect(await topK(cfg)).toEqual({ p: 2, q: 1, r: 2 });
    const records = await quarantineOf(cfg, batch.key);
    expect(records.map((r) => [r.reason, (JSON.parse(r.line) as { i: string }).i])).toEqual([['series_limit', 'q1']]);

    // q1 released in a new batch (same producer, same id; a release writes only the released lines) is counted, once:
    // the quarantined event was never counted, and workers hold no claim that could keep it out.
    const released = await uploadLines(cfg, [lines[3]!]);
    await sendManifests(cfg, [released.body]);
    await waitUntil('release delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 2);
    expect(await influxCount(cfg, 'q', start)).toBe(2);
    expect(await influxCount(cfg, 'p', start)).toBe(2);
    expect(await redisTotals(cfg)).toEqual({ p: 2, q: 2, r: 2 });
  });

  describe('against an InfluxDB with max-values-per-tag = 5', () => {
    let influx: RunningService;
    let influxUrl: string;
    beforeAll(async () => {
      const port = await freePort();
      influxUrl = `http://127.0.0.1:${port}`;
      const dataDir = path.join(process.cwd(), '.data', 'tests', `influx-limit-${randomBytes(3).toString('hex')}`);
      influx = await ensureInflux(influxUrl, dataDir, log, { maxValuesPerTag: 5 });
      expect(influx.started).toBe(true);
    }, 60_000);
    afterAll(async () => {
      await influx?.stop();
    });

    // Each test has its own database, so its own five tag values.
    it.each([undefined, 'written', 'quarantined', 'topk_updated'] as const)(
      'narrows a batch refused by the series limit to the refused points (crash after %s): 5 counted, 15 quarantined, never dead-lettered',
      async (crashAt) => {
        const cfg = await testConfig({ ...FAST_WORKER_ENV, SLUICE_INFLUX_URL: influxUrl, SLUICE_INFLUX_BATCH_POINTS: '100', SLUICE_MAX_TRANSIENT_RETRY: '0s' });
        const start = pastHour();
        const entity = (e: number) => `e${String(e).padStart(2, '0')}`;
        // InfluxDB checks a write against the tag values that existed before it, so the first batch brings entity_id
        // to its limit of 5 values; the second, with 20 entities, then has 5 storable series and 15 refused ones.
        const seed = await uploadLines(
          cfg,
          Array.from({ length: 5 }, (_, e) => ({ i: `seed-${e}`, n: entity(e), t: 'view', ts: start, v: 1 })),
        );
        const lines: Line[] = [];
        for (let e = 0; e < 20; e++) for (let k = 0; k <= e % 3; k++) lines.push({ i: `e${e}-${k}`, n: entity(e), t: 'view', ts: start + k * 60_000, v: 1 });
        const batch = await uploadLines(cfg, lines);
        let crashed = false;
        const w = await startWorker(cfg, log, {
          workerId: 'limit-worker',
          onStep: (step, ctx) => {
            if (step === crashAt && ctx.batchKey?.endsWith(batch.key) && !crashed) {
              crashed = true;
              throw new TransientError(`injected failure after ${step}`, 'injected');
            }
          },
        });
        running.push(w);
        await sendManifests(cfg, [seed.body]);
        await waitUntil('seed delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1);
        await sendManifests(cfg, [batch.body]);
        await waitUntil('batch delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 2);
        expect(crashed).toBe(crashAt !== undefined);
        expect(await queueDepth(cfg, cfg.SLUICE_DLQ_NAME)).toBe(0);
        expect(await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="rejected"')).toBe(0);

        const stored = await createInflux(cfg).query<{ value: string }>('SHOW TAG VALUES FROM "events_1m" WITH KEY = "entity_id"');
        const kept = [0, 1, 2, 3, 4].map(entity);
        expect(stored.map((r) => r.value).sort()).toEqual(kept);
        const eventsOf = (n: string) => lines.filter((l) => l.n === n).length + 1; // + the seed event
        const expected = Object.fromEntries(kept.map((n) => [n, eventsOf(n)]));
        for (const n of kept) expect(await influxCount(cfg, n, start)).toBe(eventsOf(n));
        expect(await redisTotals(cfg)).toEqual(expected);
        expect(await topK(cfg)).toEqual(expected);

        const records = await quarantineOf(cfg, batch.key);
        const refused = lines.filter((l) => !kept.includes(l.n));
        expect(new Set(refused.map((l) => l.n)).size).toBe(15);
        expect(records.map((r) => (JSON.parse(r.line) as { i: string }).i).sort()).toEqual(refused.map((l) => l.i).sort());
        for (const r of records) {
          expect(r.reason).toBe('series_limit');
          expect(r.detail).toMatch(/max-values-per-tag limit exceeded/);
        }
        if (crashAt === undefined) {
          const refusedPoints = new Set(refused.map((l) => `${l.n}|${l.ts}`)).size;
          expect(await metricValue(w.url, 'sluice_worker_influx_rejected_points_total', 'reason="series_limit"')).toBe(refusedPoints);
          expect(await metricValue(w.url, 'sluice_worker_quarantined_events_total', 'reason="series_limit"')).toBe(refused.length);
        }
      },
    );
  });

  it('counts two producers that use the same event ids, within one batch and across batches', async () => {
    const cfg = await testConfig(FAST_WORKER_ENV);
    const start = pastHour();
    const ids = Array.from({ length: 30 }, (_, i) => `shared-${i}`);
    const mk = (p: string, n: string) => ids.map((i, k) => ({ i, n, t: 'view', ts: start + k * 1_000, v: 1, p }));
    // Same ids, same entity, one file; alice's ids twice there (real duplicates, counted once). Across batches ids are
    // ingest's to keep unique (docs/dedup.md): workers count each batch's own rows.
    const one = await uploadLines(cfg, [...mk('alice', 'ent'), ...mk('bob', 'ent'), ...mk('alice', 'ent')]);
    const two = await uploadLines(cfg, mk('carol', 'ent')); // and a third producer in another batch
    await sendManifests(cfg, [one.body]);
    const w = await startWorker(cfg, log, { workerId: 'producers-worker' });
    running.push(w);
    await waitUntil('first delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1);
    await sendManifests(cfg, [two.body]);
    await waitUntil('all delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 2);
    expect(await influxCount(cfg, 'ent', start)).toBe(90);
    expect(await redisTotals(cfg)).toEqual({ ent: 90 });
    expect(await metricValue(w.url, 'sluice_worker_duplicates_dropped_total')).toBe(30);
    // The archive audit counts the same way.
    expect(await archiveTotals([one.file, two.file], { fromMs: start, toMs: start + 3_600_000 })).toEqual([
      { entityId: 'ent', eventType: 'view', count: 90, sum: 90 },
    ]);
  });

  it('dead-letters manifests that name another bucket or a key outside the raw layout, before reading them', async () => {
    const cfg = await testConfig(FAST_WORKER_ENV);
    const start = pastHour();
    const lines = (p: string) => Array.from({ length: 10 }, (_, k) => ({ i: `${p}-${k}`, n: 'x', t: 'view', ts: start + k, v: 1 }));
    // Valid batches with correct checksums: only where they are makes them untrusted.
    const otherBucket = await uploadLines(cfg, lines('b'), { bucket: cfg.SLUICE_COLD_BUCKET });
    const otherKey = await uploadLines(cfg, lines('k'), { key: 'secrets/dt=2026-01-01/hour=00/x-1.parquet' });
    const traversal = await uploadLines(cfg, lines('t'), { key: `events/dt=${partitionOf(start).dt}/hour=00/../x-1.parquet` });
    const good = await uploadLines(cfg, lines('g'));
    const sent = await sendManifests(cfg, [otherBucket.body, otherKey.body, traversal.body, good.body]);
    const w = await startWorker(cfg, log, { workerId: 'trust-worker' });
    running.push(w);
    await waitUntil('three dead letters', async () => (await queueDepth(cfg, cfg.SLUICE_DLQ_NAME)) === 3);
    await waitUntil('good batch delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1);
    expect(await metricValue(w.url, 'sluice_worker_dead_letters_total', 'reason="manifest_untrusted"')).toBe(3);
    expect(await influxCount(cfg, 'x', start)).toBe(10);
    const letters = await listDeadLetters(cfg, { max: 10 });
    const byId = new Map(letters.map((d) => [d.originalMessageId, d]));
    expect(byId.get(sent[0]!)).toMatchObject({ reason: 'manifest_untrusted' });
    expect(byId.get(sent[0]!)!.detail).toContain(cfg.SLUICE_COLD_BUCKET);
    expect(byId.get(sent[0]!)!.detail).toContain('SLUICE_RAW_BUCKET');
    expect(byId.get(sent[1]!)!.detail).toContain('secrets/dt=2026-01-01');
    expect(byId.get(sent[2]!)!.detail).toContain('../x-1.parquet');
    for (const id of sent.slice(0, 3)) expect(byId.get(id)!.reason).toBe('manifest_untrusted');
  });

  it('InfluxSink isolates the refused lines of several chunks and stores every other line', async () => {
    const cfg = await testConfig();
    const sink = new InfluxSink({ writer: new InfluxLineWriter({ url: cfg.SLUICE_INFLUX_URL, database: cfg.SLUICE_INFLUX_DB }) });
    const t = BigInt(pastHour()) * 1_000_000n;
    const line = (k: number) => (k % 7 === 3 ? `m,e=bad v=inf ${t + BigInt(k)}` : `m,e=good v=${k} ${t + BigInt(k)}`);
    const chunks = [0, 1, 2].map((c) => Array.from({ length: 20 }, (_, j) => line(c * 20 + j)).join('\n'));
    const refused = await sink.writeLines(chunks);
    const expectedBad = Array.from({ length: 60 }, (_, k) => k).filter((k) => k % 7 === 3);
    expect(refused.map((r) => r.chunk * 20 + r.line)).toEqual(expectedBad);
    for (const r of refused) expect(r.reason).toBe('unparseable');
    const [row] = await createInflux(cfg).query<{ n: number }>('SELECT count(v) AS n FROM m');
    expect(row!.n).toBe(60 - expectedBad.length);
  });
});
