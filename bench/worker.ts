// `npm run bench:worker`: prepared batches (1M events, Zipf entities) in S3 processed into InfluxDB by 1, 2 and
// 4 worker processes: events/s (read, checked, aggregated, written), peak RSS per process, CPU seconds per component
// while measured (workers, InfluxDB, Redis, S3/SQS, the benchmark itself), and the rate as a ratio to DuckDB running
// the equivalent GROUP BY minute, entity_id, event_type on the same Parquet files. BENCH_NODE_ARGS (e.g.
// "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the worker processes.
import path from 'node:path';
import { PROJECT_ROOT } from '../shared/config.js';
import { createS3 } from '../shared/clients/aws.js';
import { openEngine, parquetFiles, queryParquet } from '../shared/parquet.js';
import type { Event } from '../shared/contracts/event.js';
import { scrapeMetrics, sumOf } from '../shared/prom-text.js';
import type { BatchManifest } from '../shared/contracts/manifest.js';
import type { WrittenBatch } from '../ingest/parquet-batch-writer.js';
import { downloadRaw } from '../workers/cold/archive.js';
import { batchKeyOf } from '../workers/point-offset.js';
import { BatchLedger } from '../workers/reconcile/ledger.js';
import { createRedis, type RedisClient } from '../shared/clients/redis.js';
import { publishBatches, writeBatches } from './lib/batches.js';
import { startProcess, startProfiledProcess, STOP_GRACE_MS, type BenchProcess } from './lib/processes.js';
import { clockTicksPerSecond, cpuBetween, sampleCpu, type CpuComponent } from './lib/proc-cpu.js';
import { rng, zipf } from '../cli/random-samplers.js';
import { peakRssMiB, progress } from './lib/report.js';
import { benchEnv, finishRun, prepareRun, removeRunState, servicePids } from './lib/stack.js';

const EVENTS = Number(process.env.BENCH_WORKER_EVENTS ?? 1_000_000);
const BATCHES = Number(process.env.BENCH_WORKER_BATCHES ?? 8);
const PROCESSES = (process.env.BENCH_WORKER_PROCESSES ?? '1,2,4').split(',').map(Number);
const ENTITIES = Number(process.env.BENCH_WORKER_ENTITIES ?? 10_000);
/** Event times of the prepared batches spread over this many minutes (ingest flushes every few seconds, so a real batch spans little time). */
const SPREAD_MINUTES = Number(process.env.BENCH_WORKER_SPREAD_MINUTES ?? 10);
/** Extra node flags for the worker processes, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" (profiles each worker). */
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);

/** A counter of a worker's /metrics (0 before its first increment). */
const counter = async (url: string, name: string) => sumOf(await scrapeMetrics(url, 5_000), name) ?? 0;

async function main() {
  const id = `w${Date.now().toString(36)}`;
  // Every run (1, 2, 4 processes) reads the same prepared objects with its own queue, database and Redis prefix.
  const envFor = (run: string) =>
    benchEnv(run, {
      SLUICE_RELEASE_BACKOFF: '1s',
      SLUICE_WORKER_SHUTDOWN_GRACE: '2s',
      SLUICE_RAW_BUCKET: `raw-${id}`,
      // One node name for every run, so each run announces the same objects (uploaded once, while preparing).
      SLUICE_NODE_ID: `bench-${id}`,
      SLUICE_VISIBILITY_TIMEOUT: '60s',
      SLUICE_DATA_DIR: path.join(PROJECT_ROOT, '.data', 'bench', id),
    });
  const dataDir = path.join(PROJECT_ROOT, '.data', 'bench', id);
  progress('starting services');
  const { cfg: base, services } = await prepareRun(envFor(`${id}prep`));
  const bucket = base.SLUICE_RAW_BUCKET;

  progress(
    `preparing ${BATCHES} batches holding ${EVENTS.toLocaleString()} events (Zipf over ${ENTITIES.toLocaleString()} entities, ${SPREAD_MINUTES} minutes)`,
  );
  const r = rng(11);
  const pick = zipf(ENTITIES, 1.1, r);
  const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 2 * 3_600_000;
  const types = ['view', 'view', 'view', 'view', 'like', 'share'];
  /** One set of Parquet files per prepared batch (one file per event-time hour), published under its own key. */
  const written: WrittenBatch[][] = [];
  const per = Math.ceil(EVENTS / BATCHES);
  for (let b = 0; b < BATCHES; b++) {
    const events: Event[] = [];
    for (let i = 0; i < per && b * per + i < EVENTS; i++) {
      events.push({
        eventId: `bw-${b}-${i}`,
        entityId: `video-${pick()}`,
        eventType: types[Math.floor(r() * types.length)]!,
        timestamp: hour + Math.floor(r() * SPREAD_MINUTES * 60_000),
        value: 1 + Math.floor(r() * 100),
        dims: null,
      });
    }
    written.push(await writeBatches(base, events));
  }
  const publishAll = async (cfg: typeof base) => {
    const out: BatchManifest[] = [];
    for (const [i, w] of written.entries()) out.push(...(await publishBatches(cfg, w, `b${i}`)));
    return out;
  };
  // Uploads the objects once (the prepared run's own queue gets the manifests, which nobody reads).
  const batches = await publishAll(base);
  const bytes = batches.reduce((n, b) => n + b.byteSize, 0);

  const ticksPerSecond = clockTicksPerSecond();
  let redis: RedisClient | undefined;
  const runs = [];
  for (const processes of PROCESSES) {
    const run = `${id}p${processes}`;
    const env = envFor(run);
    const { cfg } = await prepareRun(env);
    const workers: BenchProcess[] = await Promise.all(
      Array.from({ length: processes }, (_, i) =>
        NODE_ARGS.length ? startProfiledProcess('worker', env, NODE_ARGS) : startProcess('worker', env, `worker-${run}-${i}`),
      ),
    );
    // Where the CPU goes while the batches are processed: the workers, each service, and this process (which announces
    // the batches and scrapes the workers' metrics).
    const svc = servicePids(cfg, services);
    const components: Record<string, CpuComponent> = {
      workers: { pids: workers.map((w) => w.proc.pid!) },
      influxdb: { pids: svc.influxdb },
      redis: { pids: svc.redis },
      s3sqs: { pids: svc.s3sqs },
      bench: { pids: [process.pid], children: false },
    };
    const cpu0 = sampleCpu(components);
    const t0 = performance.now();
    // Announces the prepared objects on this run's queue (they are in S3 already: a HEAD each, then the manifests).
    const announced = await publishAll(cfg);
    // The end is seen in the ledger of delivered batches (a Redis EXISTS per batch every 25 ms: nothing the workers
    // do), then confirmed by the workers' event counters; scraping /metrics that often would cost the workers ~4 %.
    redis ??= createRedis(cfg);
    const ledger = new BatchLedger(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_LEDGER_RETENTION);
    const keys = announced.map(batchKeyOf);
    const countedEvents = async () => (await Promise.all(workers.map((w) => counter(w.url, 'sluice_worker_events_total')))).reduce((a, b) => a + b, 0);
    for (let polls = 1; ; polls++) {
      await new Promise((res) => setTimeout(res, 25));
      if ((await ledger.delivered(keys)).size < keys.length && polls % 40 !== 0) continue;
      if ((await countedEvents()) >= EVENTS) break;
    }
    const secs = (performance.now() - t0) / 1000;
    const cpu = cpuBetween(cpu0, sampleCpu(components), components, ticksPerSecond);
    const cpuSeconds: Record<string, number> = Object.fromEntries(Object.entries(cpu).map(([name, c]) => [name, c.cpuSeconds]));
    // The workers' JavaScript threads alone (the rest of their CPU is the engine's threads and Node's own).
    cpuSeconds.workersMainThread = cpu.workers?.mainThreadCpuSeconds ?? Number.NaN;
    const rss = workers.map((w) => peakRssMiB(w.proc.pid!));
    const points = (await Promise.all(workers.map((w) => counter(w.url, 'sluice_worker_influx_points_total')))).reduce((a, b) => a + b, 0);
    await Promise.all(workers.map((w) => w.stop(STOP_GRACE_MS)));
    await removeRunState(cfg); // the next configuration starts from an empty Redis and no database of this one
    const res = {
      processes,
      influxPoints: points,
      seconds: +secs.toFixed(2),
      eventsPerSec: Math.round(EVENTS / secs),
      eventsPerSecPerProcess: Math.round(EVENTS / secs / processes),
      peakRssMiB: rss,
      cpuSeconds,
    };
    progress(
      `${processes} process(es): ${res.eventsPerSec.toLocaleString()} events/s (${res.eventsPerSecPerProcess.toLocaleString()} per process), peak RSS ${rss.join(', ')} MiB; CPU s: ${Object.entries(
        cpuSeconds,
      )
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
    runs.push(res);
  }

  redis?.disconnect();
  progress('DuckDB reference: the same GROUP BY straight from the Parquet files');
  const s3 = createS3(base);
  const files: string[] = [];
  for (const b of batches) {
    const f = path.join(dataDir, `${files.length}.parquet`);
    await downloadRaw(s3, bucket, b.key, f);
    files.push(f);
  }
  await openEngine({ tempDir: path.join(dataDir, 'duck'), memoryLimit: '1GB' });
  const t = performance.now();
  await queryParquet(`CREATE TEMP TABLE ref AS SELECT entity_id, event_type, time_bucket(INTERVAL 1 minute, event_time) AS minute, count(*) AS n, sum(value) AS s, min(value) AS lo, max(value) AS hi
    FROM read_parquet(${parquetFiles(files)}) GROUP BY ALL`);
  const duckSec = (performance.now() - t) / 1000;
  const duckRate = Math.round(EVENTS / duckSec);
  const one = runs.find((x) => x.processes === 1);
  const result = {
    events: EVENTS,
    batches: batches.length,
    parquetBytes: bytes,
    runs,
    duckdbGroupByEventsPerSec: duckRate,
    ratioOneProcessToDuckDB: one ? +(one.eventsPerSec / duckRate).toFixed(3) : null,
  };
  const md = [
    `${EVENTS.toLocaleString()} events in ${batches.length} Parquet batches (${(bytes / 2 ** 20).toFixed(1)} MiB), Zipf (s = 1.1) over ${ENTITIES.toLocaleString()} entities, 3 event types, event times over ${SPREAD_MINUTES} minutes; ${runs[0]?.influxPoints.toLocaleString()} InfluxDB points per run. Each worker process runs SLUICE_WORKER_CONCURRENCY=4 batches at once; every process shares the 2 cores with InfluxDB, Redis and the S3/SQS emulator.`,
    '',
    '| worker processes | events/s (all) | events/s per process | peak RSS per process | CPU s while measured: workers (their JavaScript threads), InfluxDB, Redis, S3/SQS, this benchmark |',
    '|---|---|---|---|---|',
    ...runs.map(
      (x) =>
        `| ${x.processes} | ${x.eventsPerSec.toLocaleString()} | ${x.eventsPerSecPerProcess.toLocaleString()} | ${x.peakRssMiB.join(', ')} MiB | ${[
          'workers',
          'influxdb',
          'redis',
          's3sqs',
          'bench',
        ]
          .map((k) => (k === 'workers' ? `${x.cpuSeconds[k]} (${x.cpuSeconds.workersMainThread})` : (x.cpuSeconds[k] ?? 'n/a')))
          .join(', ')} |`,
    ),
    '',
    `DuckDB \`GROUP BY minute, entity_id, event_type\` on the same files: ${duckRate.toLocaleString()} events/s. One worker process / DuckDB: ${result.ratioOneProcessToDuckDB}.`,
    'A worker does more than the GROUP BY: download + sha256 verification, the contract rules and the id check per row, line protocol, InfluxDB writes, top-K and all-time totals. The CPU seconds say where the 2 cores went while the run was measured (the machine may have run other work besides).',
  ].join('\n');
  await finishRun('worker', result, md, dataDir, services, { state: base });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
