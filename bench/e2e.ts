// `npm run bench:e2e` (part of `npm run bench`): the whole local stack under `sluice load` — sustained events/s
// end to end (accepted and counted), freshness p50/p99 (accepted → visible in the query API), query latency
// p50/p99, peak RSS of every process, exactness against the ground truth, DuckDB computing the same aggregates from
// the same archived Parquet files as the native reference, and the cost model: CPU seconds of every process of the
// run (ingest, workers, query API, Redis, InfluxDB, the S3+SQS emulator, this load generator) per million events
// counted, over the measured window only (load start → all counted), and the ceiling of one instance it implies.
import path from 'node:path';
import { createInflux } from '../shared/clients/influx.js';
import { MEASUREMENT_1M } from '../shared/contracts/influx-series.js';
import { createS3 } from '../shared/clients/aws.js';
import { RAW_EVENTS_PREFIX } from '../shared/contracts/parquet-schema.js';
import { openEngine, parquetFiles, queryParquet } from '../shared/parquet.js';
import { BENCH_REDIS_CLUSTER, benchEnv, finishRun, prepareRun, redisMode, servicePids } from './lib/stack.js';
import { downloadRaw, listRaw } from '../workers/cold/archive.js';
import { startProcess, STOP_GRACE_MS, type BenchProcess } from './lib/processes.js';
import { runLoad } from '../cli/load-generator.js';
import { type CostRow, costTable, cpuPerMillion, eventsPerCore, peakRssMiB, percentile, progress } from './lib/report.js';
import { type ComponentCpu, type CpuComponent, clockTicksPerSecond, cpuBetween, sampleCpu } from './lib/proc-cpu.js';
import os from 'node:os';

const RATE = Number(process.env.BENCH_RATE ?? 50_000);
const DURATION_MS = Number(process.env.BENCH_DURATION_S ?? 60) * 1000;
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const ENTITIES = Number(process.env.BENCH_ENTITIES ?? 10_000);
const FLUSH_AGE = process.env.BENCH_FLUSH_AGE ?? '5s';
/** Smaller batches spread one flush over every worker slot: lower freshness, more (smaller) raw files until compaction. */
const FLUSH_EVENTS = process.env.BENCH_FLUSH_EVENTS ?? '100000';

async function main() {
  const id = `e${Date.now().toString(36)}`;
  const env = benchEnv(id, { SLUICE_FLUSH_MAX_AGE: FLUSH_AGE, SLUICE_FLUSH_MAX_EVENTS: FLUSH_EVENTS });
  const dataDir = env.SLUICE_DATA_DIR!;
  progress('starting services');
  const { cfg, services } = await prepareRun(env);
  const influx = createInflux(cfg);
  const ingest = await startProcess('ingest', env);
  const workers: BenchProcess[] = await Promise.all(Array.from({ length: WORKERS }, (_, i) => startProcess('worker', env, `worker-${i}`)));
  const query = await startProcess('query', env);

  // Every process of the run, by pid: the services this run started, or the ones listening on the run's ports.
  const svc = servicePids(cfg, services);
  const cpuComponents: Record<CostComponent, CpuComponent> = {
    ingest: { pids: [ingest.proc.pid!] },
    workers: { pids: workers.map((w) => w.proc.pid!) },
    redis: { pids: svc.redis },
    influxdb: { pids: svc.influxdb },
    s3sqs: { pids: svc.s3sqs },
    query: { pids: [query.proc.pid!] },
    // This process: `sluice load` runs in it, with the freshness probes and the count polling; its children are the
    // other components, so they are not added here.
    loadGenerator: { pids: [process.pid], children: false },
  };
  for (const [name, c] of Object.entries(cpuComponents))
    if (!c.pids.length) progress(`warning: no process found for ${name} on this machine; its CPU is not measured`);
  const ticksPerSecond = clockTicksPerSecond();

  // Freshness probes: one unique event every second, timed from its 202 to its first appearance in the query API.
  const freshness: number[] = [];
  const queryLatency: number[] = [];
  let probing = true;
  const probes = (async () => {
    for (let n = 0; probing; n++) {
      const entity = `probe-${id}-${n}`;
      const r = await fetch(`${ingest.url}/v1/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify([{ eventId: entity, entityId: entity, eventType: 'probe', timestamp: Date.now() }]),
      });
      const acked = performance.now();
      if (r.status === 202) {
        void (async () => {
          const deadline = Date.now() + 120_000;
          while (Date.now() < deadline) {
            const q0 = performance.now();
            const res = await fetch(`${query.url}/v1/entities/${entity}/total?eventType=probe`, { headers: { 'cache-control': 'no-cache' } })
              .then((x) => x.json() as Promise<{ count?: number }>)
              .catch(() => ({ count: 0 }));
            queryLatency.push(performance.now() - q0);
            if (res.count === 1) {
              freshness.push(performance.now() - acked);
              return;
            }
            await new Promise((res2) => setTimeout(res2, 250));
          }
        })();
      }
      await new Promise((res) => setTimeout(res, 1_000));
    }
  })();

  progress(
    `load: ${RATE.toLocaleString()} events/s for ${DURATION_MS / 1000}s over ${ENTITIES.toLocaleString()} entities (Zipf 1.1), 1% re-sent duplicates, 1% late, 5× bursts`,
  );
  const cpuStart = sampleCpu(cpuComponents);
  const t0 = performance.now();
  const load = await runLoad({
    url: ingest.url,
    rate: RATE,
    durationMs: DURATION_MS,
    entities: ENTITIES,
    skew: 1.1,
    types: { view: 0.85, like: 0.12, share: 0.03 },
    duplicateRatio: 0.01,
    lateRatio: 0.01,
    burstEveryMs: 30_000,
    burstForMs: 3_000,
    burstFactor: 5,
    seed: 3,
    idPrefix: id,
    onProgress: (p) => {
      if (Math.round(p.elapsedMs / 1000) % 10 === 0)
        progress(
          `sent ${p.sent.toLocaleString()} (${Math.round(p.sent / (p.elapsedMs / 1000)).toLocaleString()}/s), queued in client ${p.queued.toLocaleString()}`,
        );
    },
  });
  const acceptedAt = performance.now();
  progress(`load done: ${load.uniqueEvents.toLocaleString()} unique events acknowledged; waiting until all are counted`);
  const countedTotal = async () =>
    Number((await influx.query<{ c: number }>(`SELECT sum("count") AS c FROM ${MEASUREMENT_1M} WHERE event_type <> 'probe'`))[0]?.c ?? 0);
  let counted = 0;
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    counted = await countedTotal();
    if (counted >= load.uniqueEvents || Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 1_000));
  }
  const countedAt = performance.now();
  const cpuEnd = sampleCpu(cpuComponents);
  probing = false;
  await probes;
  const rss = { ingest: peakRssMiB(ingest.proc.pid!), workers: workers.map((w) => peakRssMiB(w.proc.pid!)), query: peakRssMiB(query.proc.pid!) };

  // Exactness per (entity, event type) against the ground truth.
  const truth = new Map<string, { count: number; sum: number }>();
  for (const [k, v] of load.perMinute) {
    const [entity, type] = k.split('\u0000');
    const key = `${entity}|${type}`;
    const x = truth.get(key) ?? { count: 0, sum: 0 };
    x.count += v.count;
    x.sum += v.sum;
    truth.set(key, x);
  }
  const rows = await influx.query<{ entity_id: string; event_type: string; c: number; s: number }>(
    `SELECT sum("count") AS c, sum("sum") AS s FROM ${MEASUREMENT_1M} WHERE event_type <> 'probe' GROUP BY entity_id, event_type`,
  );
  let mismatches = 0;
  for (const r of rows) {
    const t = truth.get(`${r.entity_id}|${r.event_type}`);
    if (!t || t.count !== r.c || Math.abs(t.sum - r.s) > 1e-6) mismatches++;
  }
  mismatches += Math.max(0, truth.size - rows.length);

  await ingest.stop(STOP_GRACE_MS);
  await Promise.all([...workers, query].map((w) => w.stop(STOP_GRACE_MS)));

  progress('DuckDB reference over the archived Parquet files');
  const s3 = createS3(cfg);
  const keys = (await listRaw(s3, cfg.SLUICE_RAW_BUCKET, RAW_EVENTS_PREFIX)).map((o) => o.key);
  const files: string[] = [];
  for (const k of keys) {
    const f = path.join(dataDir, `${files.length}.parquet`);
    await downloadRaw(s3, cfg.SLUICE_RAW_BUCKET, k, f);
    files.push(f);
  }
  await openEngine({ tempDir: path.join(dataDir, 'duck'), memoryLimit: '1GB' });
  const d0 = performance.now();
  const ref = await queryParquet(
    `SELECT entity_id, event_type, count(*)::BIGINT AS c, sum(value) AS s FROM (SELECT DISTINCT ON (event_id) * FROM read_parquet(${parquetFiles(files)}) WHERE event_type <> 'probe') GROUP BY ALL`,
  );
  const duckSec = (performance.now() - d0) / 1000;
  let duckMismatches = 0;
  for (const r of ref) {
    const t = truth.get(`${r.entity_id}|${r.event_type}`);
    if (!t || t.count !== Number(r.c) || Math.abs(t.sum - (r.s as number)) > 1e-6) duckMismatches++;
  }

  freshness.sort((a, b) => a - b);
  queryLatency.sort((a, b) => a - b);
  const e2eSec = (countedAt - t0) / 1000;
  const cost = costModel(
    cpuBetween(cpuStart, cpuEnd, cpuComponents, ticksPerSecond),
    counted,
    (cpuEnd.machineBusyTicks - cpuStart.machineBusyTicks) / ticksPerSecond,
  );
  const result = {
    load: {
      targetRate: RATE,
      seconds: DURATION_MS / 1000,
      entities: ENTITIES,
      sent: load.sent,
      duplicatesSent: load.duplicatesSent,
      uniqueAcknowledged: load.uniqueEvents,
      clientRetries: load.clientStats.retries,
    },
    acceptedPerSec: Math.round(load.uniqueEvents / ((acceptedAt - t0) / 1000)),
    endToEndPerSec: Math.round(load.uniqueEvents / e2eSec),
    drainSecondsAfterLoad: +((countedAt - acceptedAt) / 1000).toFixed(1),
    counted,
    exact: counted === load.uniqueEvents && mismatches === 0,
    seriesMismatches: mismatches,
    freshnessMs: { samples: freshness.length, p50: Math.round(percentile(freshness, 50)), p99: Math.round(percentile(freshness, 99)), flushAge: FLUSH_AGE },
    queryMs: { samples: queryLatency.length, p50: +percentile(queryLatency, 50).toFixed(1), p99: +percentile(queryLatency, 99).toFixed(1) },
    peakRssMiB: rss,
    duckdb: { files: files.length, seconds: +duckSec.toFixed(2), eventsPerSec: Math.round(load.uniqueEvents / duckSec), mismatchesVsTruth: duckMismatches },
    workers: WORKERS,
    redisMode: redisMode(),
    cpuWindow: {
      seconds: +e2eSec.toFixed(1),
      events: counted,
      clockTicksPerSecond: ticksPerSecond,
      what: 'utime + stime from /proc/<pid>/stat (all threads, plus descendants), sampled at load start and when all events were counted',
    },
    cpuSecondsTotal: cost.total,
    cpuSecondsPerMillionEvents: cost.perMillion,
    impliedCeilingEventsPerSec: cost.ceiling,
    cpuDetail: cost.detail,
    machineCpuSecondsInWindow: cost.machine,
  };
  const md = [
    `Load: \`sluice load\` at ${RATE.toLocaleString()} events/s for ${DURATION_MS / 1000} s, ${ENTITIES.toLocaleString()} entities (Zipf 1.1), 1% re-sent duplicates, 1% late events, 5× bursts for 3 s every 30 s; one ingest node (fsync on, flush at ${FLUSH_AGE} or ${Number(FLUSH_EVENTS).toLocaleString()} events), ${WORKERS} worker processes, the query API, InfluxDB, Redis (${redisMode()}) and the S3+SQS emulator (s3rver + fauxqs) all on this machine.`,
    '',
    '| measure | value |',
    '|---|---|',
    `| unique events acknowledged | ${load.uniqueEvents.toLocaleString()} (${load.sent.toLocaleString()} sent incl. ${load.duplicatesSent.toLocaleString()} re-sent duplicates) |`,
    `| accepted events/s | ${result.acceptedPerSec.toLocaleString()} |`,
    `| end-to-end events/s (accepted and counted) | ${result.endToEndPerSec.toLocaleString()} |`,
    `| exact counts vs ground truth | ${result.exact ? 'yes' : `NO (${mismatches} series differ, counted ${counted} of ${load.uniqueEvents})`} |`,
    `| freshness p50 / p99 (202 → visible in the API, uncached; the 2 s answer cache can add up to 2 s) | ${result.freshnessMs.p50} ms / ${result.freshnessMs.p99} ms (${freshness.length} probes) |`,
    `| query API latency p50 / p99 (entity total, under load) | ${result.queryMs.p50} ms / ${result.queryMs.p99} ms |`,
    `| peak RSS ingest / workers / query | ${rss.ingest} / ${rss.workers.join(', ')} / ${rss.query} MiB |`,
    `| DuckDB: same aggregates from the ${files.length} archived files | ${duckSec.toFixed(2)} s (${result.duckdb.eventsPerSec.toLocaleString()} events/s), ${duckMismatches} mismatches vs truth |`,
    '',
    '## CPU cost per event',
    '',
    `CPU time (utime + stime from /proc, every thread, plus children) of each process of the run over the measured window — ${e2eSec.toFixed(1)} s from the start of the load until all ${counted.toLocaleString()} events were counted, start-up excluded — divided by those events. Redis: ${redisMode()}. Cores per 100k events/s = CPU-s per million ÷ 10. The ceiling is 1 core ÷ cost per event; fixed costs (polling, timers, background work) are included, so a low rate overstates the cost per event.`,
    '',
    costTable(cost.rows),
    '',
    `The whole machine was busy ${cost.machine.busy.toFixed(1)} CPU-s in the window (of ${(e2eSec * os.cpus().length).toFixed(1)} available on ${os.cpus().length} cores); the processes above account for ${cost.machine.attributed.toFixed(1)}.${
      cost.machine.busy - cost.machine.attributed > 0.1 * e2eSec * os.cpus().length
        ? ` The other ${(cost.machine.busy - cost.machine.attributed).toFixed(1)} CPU-s went to processes outside the run: the machine was shared, so the throughput and latency above are lower than on a quiet machine (the CPU seconds per event are a process's own and less affected).`
        : ''
    }`,
  ].join('\n');
  await finishRun('e2e', result, md, dataDir, services, { state: cfg });
}

/** The components of the cost model, as the JSON names them. */
type CostComponent = 'ingest' | 'workers' | 'redis' | 'influxdb' | 's3sqs' | 'query' | 'loadGenerator';

/**
 * CPU seconds in total and per million `events` for each component, and the throughput one instance of it can take
 * when it has one core (for the multi-threaded InfluxDB and emulator: per core, measured on this machine's cores).
 */
function costModel(cpu: Record<string, ComponentCpu>, events: number, machineBusySec: number) {
  const c = (name: CostComponent) => cpu[name]!;
  const total = {} as Record<CostComponent, number>;
  const perMillion = {} as Record<CostComponent, number>;
  for (const name of Object.keys(cpu) as CostComponent[]) {
    total[name] = c(name).lost.length ? NaN : c(name).cpuSeconds;
    perMillion[name] = cpuPerMillion(total[name], events);
  }
  const pct = (part: number, whole: number) => (whole > 0 ? `${Math.round((100 * part) / whole)}%` : 'n/a');
  const fmt = (n: number) => (Number.isFinite(n) ? `${n.toLocaleString('en-US')} events/s` : 'n/a');
  const cores = os.cpus().length;
  // The busiest redis-server saturates first: one instance, or the busiest master of a cluster.
  const redisBusiest = Math.max(...c('redis').perProcessCpuSeconds, 0);
  const ceiling = {
    ingest: eventsPerCore(perMillion.ingest),
    workers: eventsPerCore(perMillion.workers),
    redis: eventsPerCore(cpuPerMillion(redisBusiest, events)),
    influxdb: eventsPerCore(perMillion.influxdb),
    s3sqs: eventsPerCore(perMillion.s3sqs),
    query: null,
    loadGenerator: null,
  };
  const basis = {
    ingest: `one ingest node at one core; Node runs its JavaScript on one thread (the event loop took ${pct(c('ingest').mainThreadCpuSeconds, c('ingest').cpuSeconds)} of its CPU), Parquet encoding and fsync run on other threads`,
    workers: `one worker process at one core (its ${WORKERS} processes together: ${pct(c('workers').mainThreadCpuSeconds, c('workers').cpuSeconds)} on their event loops); the fleet scales by adding processes`,
    redis: BENCH_REDIS_CLUSTER
      ? `the ${c('redis').processes}-master cluster when its busiest master (${redisBusiest.toFixed(1)} of ${c('redis').cpuSeconds.toFixed(1)} CPU-s) reaches one core; Redis executes commands on one thread`
      : 'one redis-server at one core; Redis executes commands on one thread',
    influxdb: `per core; InfluxDB is multi-threaded (Go), measured on this machine's ${cores} cores shared with the whole run (${cores} cores: ${fmt(ceiling.influxdb * cores)})`,
    s3sqs: `per core; the emulator (one Node process: s3rver + fauxqs) also uses threads for file I/O, measured on this machine's ${cores} cores shared with the whole run`,
    query: 'none: the query API serves the freshness probes (one new probe a second, each polled every 250 ms until visible), not the event stream',
    loadGenerator: 'none: the benchmark process (`sluice load`, probes, count polling), not part of the pipeline',
  };
  const labels: Record<CostComponent, string> = {
    ingest: 'ingest (1 node)',
    workers: `workers (${WORKERS} processes)`,
    redis: `Redis (${redisMode()})`,
    influxdb: 'InfluxDB',
    s3sqs: 'S3+SQS emulator',
    query: 'query API',
    loadGenerator: 'load generator (this process)',
  };
  const rows: CostRow[] = (Object.keys(labels) as CostComponent[]).map((name) => ({
    component: labels[name],
    cpuSecondsPerMillion: perMillion[name],
    ceiling: ceiling[name] === null ? basis[name] : `${fmt(ceiling[name])}: ${basis[name]}`,
  }));
  const attributed = Object.values(total).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const detail = Object.fromEntries(Object.entries(cpu).map(([name, x]) => [name, { ...x, ceilingBasis: basis[name as CostComponent] }])) as Record<
    CostComponent,
    ComponentCpu & { ceilingBasis: string }
  >;
  return {
    total,
    perMillion,
    ceiling,
    detail,
    rows,
    machine: { busy: +machineBusySec.toFixed(2), attributed: +attributed.toFixed(2), cores },
  };
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
