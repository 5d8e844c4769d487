// `npm run bench:query`: latency p50/p99 of the query API (a child process) at 100 concurrent clients for an
// entity total, a 24-hour series (1h steps) and a 90-day series (1d steps), each uncached (Cache-Control:
// no-cache: InfluxDB rollups + minutes stitched) and cached (Redis answer cache); /v1/topk?window=1h over 61 full
// minute buckets (Space-Saving summaries at SLUICE_TOPK_CAPACITY), closed loop and open loop at fixed rates, idle and
// while batches are merged; plus rollup duration and compaction throughput in events/s, with DuckDB's own
// read-sort-write of the same files as the reference. BENCH_QUERY_ONLY=topk runs the top-K part alone
// (results: bench/results/query-topk*). /v1/topk?dimension=channel&value=… over the same buckets (a dimension table of
// every entity, BENCH_DIMTOPK_VALUES channels) runs closed loops of BENCH_DIMTOPK_SECONDS each, idle and while batches
// are merged; BENCH_QUERY_ONLY=dimension-topk runs it alone (results: bench/results/query-dimension-topk*).
import http from 'node:http';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { IPoint } from 'influx';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createLogger } from '../shared/logger.js';
import { createS3 } from '../shared/clients/aws.js';
import { MEASUREMENT_1D, MEASUREMENT_1H, MEASUREMENT_1M, RP_1D, RP_1H, TAG_ENTITY, TAG_TYPE } from '../shared/contracts/influx-series.js';
import { createInflux } from '../shared/clients/influx.js';
import { DAY_MS, HOUR_MS } from '../shared/contracts/cold-layout.js';
import { encodeEventLine } from '../shared/contracts/event-line.js';
import { rawEventsKey } from '../shared/contracts/parquet-schema.js';
import { openEngine, parquetFiles, queryParquet } from '../shared/parquet.js';
import { writeEventBatches } from '../ingest/parquet-batch-writer.js';
import { createRedis } from '../shared/clients/redis.js';
import { totalsCompleteKey } from '../shared/entity-totals-store.js';
import { ensureRetentionPolicies, runRollup } from '../workers/cold/rollup.js';
import { EntityTotalsUpdater } from '../workers/entity-totals.js';
import { TOPK_BASE_BUCKET_MS, TopKUpdater } from '../workers/topk.js';
import type { BucketCount } from '../workers/batch-scan-types.js';
import { rng, zipf } from '../cli/random-samplers.js';
import { loadDimensionTable } from '../workers/dimensions/table-load.js';
import { runCompaction } from '../workers/cold/compaction.js';
import { eventFactory } from './lib/workload.js';
import { percentile, progress, writeResults } from './lib/report.js';
import { benchEnv, prepareRun } from './lib/stack.js';
import { startProcess, STOP_GRACE_MS } from './lib/processes.js';

const CLIENTS = 100;
const REQUESTS = Number(process.env.BENCH_QUERY_REQUESTS ?? 2_000);
const ENTITIES = Number(process.env.BENCH_QUERY_ENTITIES ?? 50);
/** Hours of per-minute points (one partial point per minute and series). */
const MINUTE_HOURS = Number(process.env.BENCH_QUERY_MINUTE_HOURS ?? 30);
const COMPACT_FILES = Number(process.env.BENCH_COMPACT_FILES ?? 10);
const COMPACT_EVENTS_PER_FILE = Number(process.env.BENCH_COMPACT_EVENTS_PER_FILE ?? 50_000);
const ONLY_TOPK = process.env.BENCH_QUERY_ONLY === 'topk';
const ONLY_DIMTOPK = process.env.BENCH_QUERY_ONLY === 'dimension-topk';
/** Top-K by attribute value: distinct channels of the dimension table, clients and seconds per closed-loop phase. */
const DIMTOPK_VALUES = Number(process.env.BENCH_DIMTOPK_VALUES ?? 10);
const DIMTOPK_CLIENTS = Number(process.env.BENCH_DIMTOPK_CLIENTS ?? 10);
const DIMTOPK_SECONDS = Number(process.env.BENCH_DIMTOPK_SECONDS ?? 8);
/** Top-K: events per minute batch (Zipf 1.0 over TOPK_ENTITIES: every bucket holds SLUICE_TOPK_CAPACITY entities). */
const TOPK_EVENTS_PER_BATCH = Number(process.env.BENCH_TOPK_EVENTS ?? 20_000);
const TOPK_ENTITIES = Number(process.env.BENCH_TOPK_ENTITIES ?? 200_000);
/** Open-loop request rates (req/s) and how long each runs. */
const TOPK_RATES = (process.env.BENCH_TOPK_RATES ?? '1000,2000,3000').split(',').map(Number);
const TOPK_SECONDS = Number(process.env.BENCH_TOPK_SECONDS ?? 5);
/** Batches merged per second into the current minute during the "while merging" phases. */
const TOPK_MERGES_PER_SECOND = Number(process.env.BENCH_TOPK_MERGES_PER_SECOND ?? 10);

/** One batch's counts per base bucket: `events` Zipf events at [startMs, startMs + spanMs). */
function topKBatch(events: number, startMs: number, spanMs: number, next: () => number, r: () => number): BucketCount[] {
  const m = new Map<string, BucketCount>();
  for (let i = 0; i < events; i++) {
    const entityId = `video-${next()}`;
    const bucketMs = Math.floor((startMs + Math.floor(r() * spanMs)) / TOPK_BASE_BUCKET_MS) * TOPK_BASE_BUCKET_MS;
    const key = `${entityId} ${bucketMs}`;
    const c = m.get(key);
    if (c) c.count++;
    else m.set(key, { entityId, eventType: 'view', bucketMs, count: 1 });
  }
  return [...m.values()];
}

type Phase = { requests: number; errors: number; rps: number; p50Ms: number; p99Ms: number };

/** Seeds the first minute data and rollups into InfluxDB and the all-time totals into Redis; runs the rollup job. */
async function seedInflux(cfg: Awaited<ReturnType<typeof prepareRun>>['cfg'], now: number, log: ReturnType<typeof createLogger>) {
  const influx = createInflux(cfg);
  await ensureRetentionPolicies(influx, cfg);
  // ---- data: minutes for the last MINUTE_HOURS, hourly and daily rollups for 90 days before that -------
  progress(`writing ${ENTITIES} series: ${MINUTE_HOURS} h of minutes, 90 days of rollups`);
  const minuteStart = Math.floor((now - MINUTE_HOURS * HOUR_MS) / 60_000) * 60_000;
  const write = async (pts: IPoint[], rp?: string) => {
    for (let i = 0; i < pts.length; i += 10_000)
      await influx.writePoints(pts.slice(i, i + 10_000), { database: cfg.SLUICE_INFLUX_DB, precision: 'ms', retentionPolicy: rp });
  };
  for (let e = 0; e < ENTITIES; e++) {
    const tags = { [TAG_ENTITY]: entity(e), [TAG_TYPE]: 'view' };
    const mins: IPoint[] = [];
    for (let t = minuteStart; t < now - 60_000; t += 60_000)
      mins.push({ measurement: MEASUREMENT_1M, tags, fields: { count: 10 + (e % 7), sum: 20, min: 1, max: 3 }, timestamp: t + 17 });
    await write(mins);
    const firstHour = Math.floor((now - 90 * DAY_MS) / HOUR_MS) * HOUR_MS;
    const hours: IPoint[] = [];
    for (let t = firstHour; t < minuteStart - HOUR_MS; t += HOUR_MS)
      hours.push({ measurement: MEASUREMENT_1H, tags, fields: { count: 600, sum: 1200, min: 1, max: 3 }, timestamp: t });
    await write(hours, RP_1H);
    const days: IPoint[] = [];
    for (let t = Math.floor(firstHour / DAY_MS) * DAY_MS; t < minuteStart - 2 * DAY_MS; t += DAY_MS)
      days.push({ measurement: MEASUREMENT_1D, tags, fields: { count: 14_400, sum: 28_800, min: 1, max: 3 }, timestamp: t });
    await write(days, RP_1D);
  }
  // Workers keep all-time totals in Redis as they process batches; the benchmark adds the same totals.
  const redis = createRedis(cfg);
  const totals = new EntityTotalsUpdater(redis, cfg.SLUICE_REDIS_PREFIX);
  await totals.apply(
    'bench/seed',
    Array.from({ length: ENTITIES }, (_, e) => ({ entityId: entity(e), eventType: 'view', count: 1_000_000 + e, sum: 2_000_000 + e })),
  );
  await redis.set(totalsCompleteKey(cfg.SLUICE_REDIS_PREFIX), new Date().toISOString()); // as the first worker of a new pipeline does
  redis.disconnect();
  progress('rollup job over the minutes');
  const t0 = performance.now();
  const rolled = await runRollup(cfg, { log });
  return { rolled, rollupSeconds: (performance.now() - t0) / 1000 };
}

const entity = (i: number) => `video-${i}`;

async function main() {
  const run = `q${Date.now().toString(36)}`;
  // The dimension table names SLUICE_DIMENSIONS' attribute; the query API polls its pointer every second.
  const env = benchEnv(run, ONLY_TOPK ? {} : { SLUICE_DIMENSIONS: 'channel', SLUICE_DIMENSIONS_POLL: '1s' });
  const dataDir = env.SLUICE_DATA_DIR!;
  const log = createLogger('bench', 'warn');
  progress('starting services');
  const { cfg, services } = await prepareRun(env);
  const now = Date.now();
  const seeded = ONLY_TOPK || ONLY_DIMTOPK ? undefined : await seedInflux(cfg, now, log);

  // ---- top-K: one batch per minute of the last 61 minutes, as workers merge them ---------------------------
  progress(`top-K: 61 minute batches of ${TOPK_EVENTS_PER_BATCH} events over ${TOPK_ENTITIES} entities, capacity ${cfg.SLUICE_TOPK_CAPACITY}`);
  const topkRedis = createRedis(cfg);
  const updater = new TopKUpdater(topkRedis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_TOPK_CAPACITY);
  const r = rng(17);
  const nextEntity = zipf(TOPK_ENTITIES, 1.0, r);
  const thisMinute = Math.floor(now / 60_000) * 60_000;
  for (let m = 60; m >= 0; m--) await updater.apply(`bench/topk-${m}`, topKBatch(TOPK_EVENTS_PER_BATCH, thisMinute - m * 60_000, 60_000, nextEntity, r), now);
  if (!ONLY_TOPK) {
    // Every entity of the workload in the dimension table: channel-<i mod DIMTOPK_VALUES>.
    progress(`dimension table: ${TOPK_ENTITIES} entities, ${DIMTOPK_VALUES} channels`);
    mkdirSync(dataDir, { recursive: true });
    await openEngine({ tempDir: path.join(dataDir, 'duckdb-tmp') });
    const csv = path.join(dataDir, 'dimension.csv');
    writeFileSync(csv, `entity_id,channel\n${Array.from({ length: TOPK_ENTITIES }, (_, i) => `${entity(i)},channel-${i % DIMTOPK_VALUES}\n`).join('')}`);
    const s3 = createS3(cfg);
    await loadDimensionTable(s3, cfg.SLUICE_RAW_BUCKET, { input: csv, table: cfg.SLUICE_DIMENSIONS_TABLE, tempDir: path.join(dataDir, 'dims-tmp') });
    s3.destroy();
  }

  // ---- the query API under load ------------------------------------------------------------------------
  progress('starting the query API');
  const query = await startProcess('query', env);
  const url = query.url;

  const to = Math.floor(now / 60_000) * 60_000;
  const paths: Record<string, (i: number) => string> = {
    total: (i) => `/v1/entities/${entity(i % ENTITIES)}/total?eventType=view`,
    series24h: (i) => `/v1/stats?entityId=${entity(i % ENTITIES)}&eventType=view&fn=count&step=1h&from=${to - DAY_MS}&to=${to}`,
    series90d: (i) => `/v1/stats?entityId=${entity(i % ENTITIES)}&eventType=view&fn=count&step=1d&from=${to - 90 * DAY_MS}&to=${to}`,
  };
  // A keep-alive HTTP client with one connection per simulated client (Node's fetch costs more CPU per request
  // than the server it measures, on a machine this small).
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const get = (pathAndQuery: string, headers: Record<string, string>, via = agent) =>
    new Promise<number>((resolve, reject) => {
      const req = http.get(url + pathAndQuery, { agent: via, headers, timeout: 30_000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
    });
  const summarize = (lat: number[], requests: number, errors: number, seconds: number): Phase => {
    lat.sort((a, b) => a - b);
    return { requests, errors, rps: Math.round(requests / seconds), p50Ms: +percentile(lat, 50).toFixed(1), p99Ms: +percentile(lat, 99).toFixed(1) };
  };
  async function phase(make: (i: number) => string, cached: boolean, clients = CLIENTS, requests = REQUESTS): Promise<Phase> {
    const lat: number[] = [];
    let next = 0;
    let errors = 0;
    const headers: Record<string, string> = cached ? {} : { 'cache-control': 'no-cache' };
    if (cached) for (let i = 0; i < ENTITIES; i++) await get(make(i), {}); // warm the answer cache
    const t = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (next < requests) {
          const i = next++;
          const s = performance.now();
          try {
            if ((await get(make(i), headers)) !== 200) errors++;
          } catch {
            errors++;
          }
          lat.push(performance.now() - s);
        }
      }),
    );
    return summarize(lat, requests, errors, (performance.now() - t) / 1000);
  }
  /**
   * Open loop: requests leave at `rate` per second whatever the answers, each timed from when it was due (a slow
   * answer delays none of the others, and queueing counts in the latency). rps is what was answered per second.
   */
  const openAgent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  async function openLoop(pathAndQuery: string, rate: number, seconds: number): Promise<Phase> {
    const lat: number[] = [];
    let errors = 0;
    let sent = 0;
    const total = Math.round(rate * seconds);
    const pending: Promise<void>[] = [];
    const t = performance.now();
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - t) / 1000) * rate) + 1);
      for (; sent < due; sent++) {
        const dueAt = t + (sent / rate) * 1000;
        pending.push(
          get(pathAndQuery, {}, openAgent).then(
            (status) => {
              if (status !== 200) errors++;
              lat.push(performance.now() - dueAt);
            },
            () => {
              errors++;
              lat.push(performance.now() - dueAt);
            },
          ),
        );
      }
      await new Promise((res) => setTimeout(res, 1));
    }
    await Promise.all(pending);
    return summarize(lat, total, errors, (performance.now() - t) / 1000);
  }

  const latency: Record<string, { uncached: Phase; cached: Phase; oneClient: Phase }> = {};
  if (!ONLY_DIMTOPK) await phase(ONLY_TOPK ? () => '/v1/topk?eventType=view&window=1h&k=10' : paths.total!, true, CLIENTS, 1_000); // warm-up: connections, JIT
  if (!ONLY_TOPK && !ONLY_DIMTOPK) {
    for (const [name, make] of Object.entries(paths)) {
      progress(`${name}: ${REQUESTS} requests, ${CLIENTS} clients, uncached then cached`);
      latency[name] = { uncached: await phase(make, false), cached: await phase(make, true), oneClient: await phase(make, true, 1, 300) };
    }
  }

  // ---- /v1/topk?window=1h: closed loop (uncached = revalidated: every bucket's N checked), then open loop ------
  // CPU per request of the query API (its process) and of Redis (INFO cpu): on a shared machine, what a request
  // costs says more than the req/s the phase reached.
  const queryCpuS = () => {
    const f = readFileSync(`/proc/${query.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 10 ms
  };
  const redisCpuS = async () => {
    const info = await topkRedis.info('cpu');
    return Number(/used_cpu_user:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]);
  };
  const costed = async (run: () => Promise<Phase>): Promise<Phase & { queryCpuUsPerRequest: number; redisCpuUsPerRequest: number }> => {
    const [q0, r0] = [queryCpuS(), await redisCpuS()];
    const p = await run();
    const [q1, r1] = [queryCpuS(), await redisCpuS()];
    return { ...p, queryCpuUsPerRequest: Math.round(((q1 - q0) * 1e6) / p.requests), redisCpuUsPerRequest: Math.round(((r1 - r0) * 1e6) / p.requests) };
  };
  /** Batches merged into the current minute every 1/TOPK_MERGES_PER_SECOND s until the returned stop() is called. */
  let merges = 0;
  const mergeMeanwhile = () => {
    let stop = false;
    const writer = (async () => {
      while (!stop) {
        const t0 = performance.now();
        const at = Date.now();
        await updater.apply(`bench/topk-live-${merges++}`, topKBatch(2_000, at - 5_000, 5_000, nextEntity, r), at);
        await new Promise((res) => setTimeout(res, Math.max(0, 1000 / TOPK_MERGES_PER_SECOND - (performance.now() - t0))));
      }
    })();
    return async () => {
      stop = true;
      await writer;
    };
  };
  const topkPath = (i: number) => `/v1/topk?eventType=view&window=1h&k=${10 + (i % 3) * 5}`;
  const skipTopK = ONLY_DIMTOPK;
  if (!skipTopK) progress(`top-K 1h: ${REQUESTS} requests, ${CLIENTS} clients, uncached then cached`);
  const topkClosed = skipTopK
    ? undefined
    : {
        uncached: await costed(() => phase(topkPath, false)),
        cached: await costed(() => phase(topkPath, true)),
        oneClient: await costed(() => phase(topkPath, true, 1, 300)),
      };
  const topkOpen: { rate: number; merging: boolean; result: Awaited<ReturnType<typeof costed>> }[] = [];
  for (const merging of skipTopK ? [] : [false, true]) {
    // while merging: a batch every 1/TOPK_MERGES_PER_SECOND s into the current minute, as a worker fleet does
    const stopMerging = merging ? mergeMeanwhile() : async () => undefined;
    for (const rate of TOPK_RATES) {
      progress(`top-K 1h open loop: ${rate} req/s for ${TOPK_SECONDS} s${merging ? `, ${TOPK_MERGES_PER_SECOND} batches/s merged` : ''}`);
      topkOpen.push({ rate, merging, result: await costed(() => openLoop('/v1/topk?eventType=view&window=1h&k=10', rate, TOPK_SECONDS)) });
    }
    await stopMerging();
  }

  // ---- /v1/topk?window=1h&dimension=channel&value=…: closed loops of DIMTOPK_SECONDS each -----------------------
  /** Closed loop for `seconds`: `clients` clients, each sending its next request when the previous one is answered. */
  async function closedFor(make: (i: number) => string, headers: Record<string, string>, clients: number, seconds: number): Promise<Phase> {
    const lat: number[] = [];
    let next = 0;
    let errors = 0;
    const t = performance.now();
    const end = t + seconds * 1000;
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (performance.now() < end) {
          const i = next++;
          const s = performance.now();
          try {
            if ((await get(make(i), headers)) !== 200) errors++;
          } catch {
            errors++;
          }
          lat.push(performance.now() - s);
        }
      }),
    );
    const elapsed = (performance.now() - t) / 1000;
    return { ...summarize(lat, next, errors, elapsed), rps: +(next / elapsed).toFixed(1) };
  }
  let dimTopK: { name: string; result: Awaited<ReturnType<typeof costed>> }[] | undefined;
  let dimTopKMd = '';
  if (!ONLY_TOPK) {
    const dimPath = (i: number) => `/v1/topk?eventType=view&window=1h&k=10&dimension=channel&value=channel-${i % DIMTOPK_VALUES}`;
    progress('waiting for the query API to load the dimension table');
    for (let tries = 0; ; tries++) {
      const body = await new Promise<string>((resolve, reject) =>
        http
          .get(url + dimPath(0), { agent }, (res) => {
            let b = '';
            res.on('data', (c) => (b += c));
            res.on('end', () => resolve(b));
          })
          .on('error', reject),
      );
      if ((JSON.parse(body) as { dimVersion?: number }).dimVersion === 1) break;
      if (tries > 600) throw new Error(`the query API did not load the dimension table: ${body.slice(0, 200)}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    await closedFor(dimPath, {}, DIMTOPK_CLIENTS, 2); // warm-up: connections, JIT
    dimTopK = [];
    for (const [name, headers, merging] of [
      ['cached', {}, false],
      ['revalidated', { 'cache-control': 'no-cache' }, false],
      ['cached, while merging', {}, true],
    ] as const) {
      progress(`top-K by channel 1h, ${name}: ${DIMTOPK_CLIENTS} clients for ${DIMTOPK_SECONDS} s`);
      const stopMerging = merging ? mergeMeanwhile() : async () => undefined;
      dimTopK.push({ name, result: await costed(() => closedFor(dimPath, headers, DIMTOPK_CLIENTS, DIMTOPK_SECONDS)) });
      await stopMerging();
    }
    dimTopKMd = [
      `/v1/topk?window=1h&k=10&dimension=channel&value=channel-<i mod ${DIMTOPK_VALUES}> over the same 61 minute buckets (${cfg.SLUICE_TOPK_CAPACITY} entities each); the query API's copy of the dimension table holds all ${TOPK_ENTITIES} entities. ` +
        `Closed loop: ${DIMTOPK_CLIENTS} clients for ${DIMTOPK_SECONDS} s per phase; revalidated = \`Cache-Control: no-cache\`; "while merging" = ${TOPK_MERGES_PER_SECOND} batches/s merged into the current minute meanwhile.`,
      '',
      '| top-K 1h by channel | p50 ms | p99 ms | req/s | errors | query API CPU µs/request | Redis CPU µs/request |',
      '|---|---|---|---|---|---|---|',
      ...dimTopK.map(
        (d) =>
          `| ${d.name}, ${DIMTOPK_CLIENTS} clients | ${d.result.p50Ms} | ${d.result.p99Ms} | ${d.result.rps} | ${d.result.errors} | ${d.result.queryCpuUsPerRequest} | ${d.result.redisCpuUsPerRequest} |`,
      ),
    ].join('\n');
  }
  topkRedis.disconnect();
  await query.stop(STOP_GRACE_MS);
  const topk = { capacity: cfg.SLUICE_TOPK_CAPACITY, eventsPerMinute: TOPK_EVENTS_PER_BATCH, entities: TOPK_ENTITIES, closed: topkClosed, open: topkOpen };
  const dimensionTopK = dimTopK && { values: DIMTOPK_VALUES, clients: DIMTOPK_CLIENTS, secondsPerPhase: DIMTOPK_SECONDS, phases: dimTopK };
  if (ONLY_DIMTOPK) {
    const file = writeResults(
      'query-dimension-topk',
      { topk: { capacity: topk.capacity, eventsPerMinute: topk.eventsPerMinute, entities: topk.entities }, dimensionTopK },
      dimTopKMd,
    );
    progress(`results in ${file}`);
    process.stdout.write(dimTopKMd + '\n');
    await Promise.all(services.map((s) => s.stop()));
    process.exit(0);
  }
  const topkMd = [
    `/v1/topk?window=1h over 61 minute buckets of ${cfg.SLUICE_TOPK_CAPACITY} entities each (${TOPK_EVENTS_PER_BATCH} Zipf events per minute over ${TOPK_ENTITIES} entities: every bucket approximate). ` +
      "revalidated = `Cache-Control: no-cache` (every request checks the N of all 61 buckets, 61 HGETs in one pipeline); cached = the query API's window cache (one GET of the tag's version per request; after a batch, only the buckets it changed are read again). " +
      `Open loop: requests sent at a fixed rate for ${TOPK_SECONDS} s whatever the answers, latency from when each was due; "while merging" = ${TOPK_MERGES_PER_SECOND} batches/s merged into the current minute meanwhile.`,
    '',
    '| top-K 1h | p50 ms | p99 ms | req/s | errors | query API CPU µs/request | Redis CPU µs/request |',
    '|---|---|---|---|---|---|---|',
    ...(['uncached', 'cached', 'oneClient'] as const).map((k) => {
      const p = topkClosed![k];
      const name = k === 'oneClient' ? 'cached, 1 client' : `${k === 'uncached' ? 'revalidated' : k}, ${CLIENTS} clients`;
      return `| ${name} | ${p.p50Ms} | ${p.p99Ms} | ${p.rps} | ${p.errors} | ${p.queryCpuUsPerRequest} | ${p.redisCpuUsPerRequest} |`;
    }),
    ...topkOpen.map(
      (o) =>
        `| open loop ${o.rate} req/s${o.merging ? ', while merging' : ''} | ${o.result.p50Ms} | ${o.result.p99Ms} | ${o.result.rps} | ${o.result.errors} | ${o.result.queryCpuUsPerRequest} | ${o.result.redisCpuUsPerRequest} |`,
    ),
    '',
    'Redis CPU while merging includes the merges themselves.',
  ].join('\n');
  if (ONLY_TOPK) {
    const file = writeResults('query-topk', { setup: { clients: CLIENTS, requestsPerPhase: REQUESTS }, topk }, topkMd);
    progress(`results in ${file}`);
    process.stdout.write(topkMd + '\n');
    await Promise.all(services.map((s) => s.stop()));
    process.exit(0);
  }

  // ---- compaction throughput ---------------------------------------------------------------------------
  progress(`compaction: ${COMPACT_FILES} raw files × ${COMPACT_EVENTS_PER_FILE} events`);
  mkdirSync(dataDir, { recursive: true });
  await openEngine({ tempDir: path.join(dataDir, 'duckdb-tmp') });
  const day = Math.floor(now / DAY_MS) * DAY_MS - 3 * DAY_MS;
  const make = eventFactory({ entities: 100_000, skew: 1.1, seed: 7, spreadMs: HOUR_MS - 1, baseMs: day });
  const s3 = createS3(cfg);
  const local: string[] = [];
  for (let f = 0; f < COMPACT_FILES; f++) {
    const lines = path.join(dataDir, `lines-${f}.ndjson`);
    const chunk: string[] = [];
    for (let i = 0; i < COMPACT_EVENTS_PER_FILE; i++) {
      const e = make(`f${f}`);
      chunk.push(encodeEventLine({ ...e, timestamp: e.timestamp + (f % 24) * HOUR_MS, dims: null }, now, 'bench'));
    }
    writeFileSync(lines, chunk.join(''));
    const [w] = await writeEventBatches([lines], path.join(dataDir, `batch-${f}`));
    local.push(w!.file);
    await s3.send(new PutObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: rawEventsKey(w!.partition, 'bench', `f${f}`), Body: readFileSync(w!.file) }));
  }
  s3.destroy();
  let t0 = performance.now();
  const [compacted] = await runCompaction(cfg, { log });
  const compactSeconds = (performance.now() - t0) / 1000;
  t0 = performance.now();
  await queryParquet(
    `COPY (SELECT * FROM read_parquet(${parquetFiles(local)}, union_by_name = true) ORDER BY entity_id, event_time, event_id) TO '${path.join(dataDir, 'native.parquet')}' (FORMAT parquet, COMPRESSION zstd)`,
  );
  const nativeSeconds = (performance.now() - t0) / 1000;
  const events = compacted?.rows ?? 0;
  const compaction = {
    files: COMPACT_FILES,
    events,
    seconds: +compactSeconds.toFixed(2),
    eventsPerSecond: Math.round(events / compactSeconds),
    bytesIn: compacted?.bytesIn,
    bytesOut: compacted?.bytesOut,
    nativeDuckdbMergeSeconds: +nativeSeconds.toFixed(2),
    ratioToNativeMerge: +(compactSeconds / nativeSeconds).toFixed(2),
  };

  const { rolled, rollupSeconds } = seeded!;
  const result = {
    setup: { clients: CLIENTS, requestsPerPhase: REQUESTS, entities: ENTITIES, minuteHours: MINUTE_HOURS, rollupDays: 90 },
    rollup: { seconds: +rollupSeconds.toFixed(2), resolutions: rolled.map((r) => ({ res: r.res, rows: r.rows, points: r.points, files: r.files.length })) },
    latency,
    topk,
    dimensionTopK,
    compaction,
  };
  const row = (n: string, k: 'uncached' | 'cached' | 'oneClient') => {
    const p = latency[n]![k];
    return `| ${n} | ${k === 'oneClient' ? 'cached, 1 client' : k} | ${p.p50Ms} | ${p.p99Ms} | ${p.rps} | ${p.errors} |`;
  };
  const md = [
    `${CLIENTS} concurrent clients, ${REQUESTS} requests per phase, ${ENTITIES} series; uncached = \`Cache-Control: no-cache\` (InfluxDB rollups + minutes stitched), cached = Redis answer cache. Totals are answered from the all-time totals the workers keep in Redis in both phases.`,
    '',
    '| query | cache | p50 ms | p99 ms | req/s | errors |',
    '|---|---|---|---|---|---|',
    ...Object.keys(latency).flatMap((n) => [row(n, 'uncached'), row(n, 'cached'), row(n, 'oneClient')]),
    '',
    topkMd,
    '',
    dimTopKMd,
    '',
    `Rollup job (minutes of ${MINUTE_HOURS} h × ${ENTITIES} series → hours and days, InfluxDB + cold Parquet): ${rollupSeconds.toFixed(1)} s.`,
    '',
    `Compaction: ${events} events in ${COMPACT_FILES} raw files → one verified cold file in ${compactSeconds.toFixed(1)} s = **${compaction.eventsPerSecond} events/s** ` +
      `(download, merge-sort, upload, read-back verification, manifest, delete). DuckDB's own merge-sort of the same local files: ${nativeSeconds.toFixed(1)} s (ratio ${compaction.ratioToNativeMerge}×).`,
  ].join('\n');
  const file = writeResults('query', result, md);
  progress(`results in ${file}`);
  process.stdout.write(md + '\n');
  await Promise.all(services.map((s) => s.stop()));
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:query failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
