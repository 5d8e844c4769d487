// `npm run bench:e2e` (part of `npm run bench`): the whole local stack under `sluice load` — sustained events/s
// end to end (accepted and counted), freshness p50/p99 (accepted → visible in the query API), query latency
// p50/p99, peak RSS of every process, exactness against the ground truth, and DuckDB computing the same
// aggregates from the same archived Parquet files as the native reference.
import path from 'node:path';
import { createInflux } from '../shared/clients/influx.js';
import { MEASUREMENT_1M } from '../shared/contracts/influx-series.js';
import { createS3 } from '../shared/clients/aws.js';
import { RAW_EVENTS_PREFIX } from '../shared/contracts/parquet-schema.js';
import { openEngine, parquetFiles, queryParquet } from '../shared/parquet.js';
import { benchEnv, finishRun, prepareRun } from './lib/stack.js';
import { downloadRaw, listRaw } from '../workers/cold/archive.js';
import { startProcess, STOP_GRACE_MS, type BenchProcess } from './lib/processes.js';
import { runLoad } from '../cli/load-generator.js';
import { peakRssMiB, percentile, progress } from './lib/report.js';

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
  };
  const md = [
    `Load: \`sluice load\` at ${RATE.toLocaleString()} events/s for ${DURATION_MS / 1000} s, ${ENTITIES.toLocaleString()} entities (Zipf 1.1), 1% re-sent duplicates, 1% late events, 5× bursts for 3 s every 30 s; one ingest node (fsync on, flush at ${FLUSH_AGE} or ${Number(FLUSH_EVENTS).toLocaleString()} events), ${WORKERS} worker processes, the query API, InfluxDB, Redis and fauxqs all on this machine.`,
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
  ].join('\n');
  await finishRun('e2e', result, md, dataDir, services);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
