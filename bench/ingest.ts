// `npm run bench:ingest`: HTTP → WAL (fsync on) → Parquet → S3 → SQS under a Zipf workload with a 10× burst.
// Reports accepted events/s per ingest process, ack latency p50/p99, Parquet bytes/event and peak RSS, and
// our WAL→Parquet encode rate as a ratio to DuckDB's native Parquet writer on the same events.
import { mkdirSync, writeFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { createSqs } from '../shared/clients/aws.js';
import { decodeManifest } from '../shared/contracts/manifest.js';
import { encodeEventLine, validateEvent } from '../shared/contracts/event.js';
import { openEngine, queryParquet } from '../shared/parquet.js';
import { writeEventBatches } from '../ingest/parquet-batch-writer.js';
import { benchEnv, finishRun, prepareRun } from './lib/stack.js';
import { drainQueue } from './lib/drain-queue.js';
import { startProfiledProcess, STOP_GRACE_MS } from './lib/processes.js';
import { eventFactory } from './lib/workload.js';
import { peakRssMiB, percentile, progress } from './lib/report.js';

const EVENTS_PER_REQUEST = 1_000;
const STEADY_CLIENTS = 4;
const BURST_CLIENTS = 40;
const STEADY_REQUESTS = Number(process.env.BENCH_STEADY_REQUESTS ?? 600);
const BURST_REQUESTS = Number(process.env.BENCH_BURST_REQUESTS ?? 400);
const ENCODE_EVENTS = Number(process.env.BENCH_ENCODE_EVENTS ?? 1_000_000);

async function main() {
  const run = `i${Date.now().toString(36)}`;
  const env = benchEnv(run, {
    SLUICE_NODE_ID: 'bench-ingest',
    SLUICE_WAL_FSYNC: process.env.BENCH_FSYNC ?? 'true',
    // The burst phase is 40 clients from one address: measure throughput, not the per-producer request limit.
    SLUICE_MAX_CONCURRENT_REQUESTS_PER_PRODUCER: '0',
  });
  const dataDir = env.SLUICE_DATA_DIR!;
  progress('starting services');
  const { cfg, services } = await prepareRun(env);

  // Pre-encode request bodies: the generator must not be what is measured.
  progress('generating workload');
  const make = eventFactory({ entities: 100_000, skew: 1.1, seed: 42, spreadMs: 3 * 60_000, baseMs: Date.now() - 4 * 60_000 });
  const bodies = (n: number, prefix: string) =>
    Array.from({ length: n }, (_, r) => JSON.stringify(Array.from({ length: EVENTS_PER_REQUEST }, () => make(`${prefix}${r}`))));
  const steady = bodies(STEADY_REQUESTS, 's');
  const burst = bodies(BURST_REQUESTS, 'b');

  progress('starting the ingest node');
  // BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the ingest process itself.
  const ingest = await startProfiledProcess('ingest', env, (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean));
  const url = ingest.url;

  async function phase(name: string, reqs: string[], clients: number) {
    const lat: number[] = [];
    let accepted = 0;
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (next < reqs.length) {
          const body = reqs[next++]!;
          const s = performance.now();
          const r = await fetch(`${url}/v1/events`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
          const j = (await r.json()) as { accepted?: number };
          lat.push(performance.now() - s);
          if (r.status !== 202) throw new Error(`${name}: status ${r.status} ${JSON.stringify(j)}`);
          accepted += j.accepted ?? 0;
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    lat.sort((a, b) => a - b);
    const res = {
      clients,
      requests: reqs.length,
      eventsPerRequest: EVENTS_PER_REQUEST,
      accepted,
      seconds: +secs.toFixed(2),
      eventsPerSec: Math.round(accepted / secs),
      ackP50ms: +percentile(lat, 50).toFixed(1),
      ackP99ms: +percentile(lat, 99).toFixed(1),
    };
    progress(`${name}: ${res.eventsPerSec.toLocaleString()} events/s, ack p50 ${res.ackP50ms} ms, p99 ${res.ackP99ms} ms`);
    return res;
  }

  const steadyRes = await phase('steady', steady, STEADY_CLIENTS);
  const burstRes = await phase('burst (10× clients)', burst, BURST_CLIENTS);
  const rss = peakRssMiB(ingest.pid!);
  progress('stopping ingest (delivers its WAL)');
  await ingest.stop(STOP_GRACE_MS);
  const sqs = createSqs(cfg);
  const manifests = (await drainQueue(sqs, cfg.SLUICE_QUEUE_NAME)).map((body) => decodeManifest(body));
  const archived = manifests.reduce((n, m) => n + m.eventCount, 0);
  const bytes = manifests.reduce((n, m) => n + m.byteSize, 0);

  // Encode rate: our WAL segment → Parquet path vs DuckDB writing the same rows from its own table.
  progress(`encode comparison on ${ENCODE_EVENTS.toLocaleString()} events`);
  const encDir = path.join(dataDir, 'encode');
  mkdirSync(encDir, { recursive: true });
  const seg = path.join(encDir, 'segment.ndjson');
  const gen = eventFactory({
    entities: 100_000,
    skew: 1.1,
    seed: 7,
    spreadMs: 50 * 60_000,
    baseMs: Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000,
  });
  const parts: string[] = [];
  const bounds = { nowMs: Date.now(), maxAgeMs: 7 * 86_400_000 };
  for (let i = 0; i < ENCODE_EVENTS; i++) {
    const e = validateEvent(gen('x'), bounds);
    if (typeof e !== 'string') parts.push(encodeEventLine(e, bounds.nowMs, 'bench'));
  }
  writeFileSync(seg, parts.join(''));
  parts.length = 0;
  await openEngine({ tempDir: path.join(encDir, 'tmp'), memoryLimit: '1GB' });
  let t = performance.now();
  const written = await writeEventBatches([seg], path.join(encDir, 'ours'));
  const oursSec = (performance.now() - t) / 1000;
  const oursBytes = written.reduce((n, w) => n + statSync(w.file).size, 0);
  await queryParquet(
    `CREATE TABLE native AS SELECT i AS event_id, n AS entity_id, t AS event_type, epoch_ms(ts)::TIMESTAMP_MS AS event_time, v AS value, d AS dims, epoch_ms(it)::TIMESTAMP_MS AS ingest_time, p AS producer, 1 AS schema_version FROM read_json('${seg}', format='newline_delimited', columns={i:'VARCHAR',n:'VARCHAR',t:'VARCHAR',ts:'BIGINT',v:'DOUBLE',d:'MAP(VARCHAR,VARCHAR)',it:'BIGINT',p:'VARCHAR'})`,
  );
  t = performance.now();
  await queryParquet(
    `COPY (SELECT * FROM native ORDER BY entity_id, event_time) TO '${path.join(encDir, 'native.parquet')}' (FORMAT parquet, COMPRESSION zstd)`,
  );
  const nativeSec = (performance.now() - t) / 1000;
  const encode = {
    events: ENCODE_EVENTS,
    oursEventsPerSec: Math.round(ENCODE_EVENTS / oursSec),
    duckdbNativeEventsPerSec: Math.round(ENCODE_EVENTS / nativeSec),
    ratioToNative: +(ENCODE_EVENTS / oursSec / (ENCODE_EVENTS / nativeSec)).toFixed(2),
    bytesPerEvent: +(oursBytes / ENCODE_EVENTS).toFixed(1),
  };
  progress(
    `encode: ours ${encode.oursEventsPerSec.toLocaleString()} ev/s, native ${encode.duckdbNativeEventsPerSec.toLocaleString()} ev/s (ratio ${encode.ratioToNative})`,
  );

  const result = {
    config: {
      fsync: true,
      flushMaxEvents: cfg.SLUICE_FLUSH_MAX_EVENTS,
      flushMaxBytes: cfg.SLUICE_FLUSH_MAX_BYTES,
      flushMaxAgeMs: cfg.SLUICE_FLUSH_MAX_AGE,
      entities: 100_000,
      zipfSkew: 1.1,
    },
    steady: steadyRes,
    burst: burstRes,
    peakRssMiB: rss,
    archive: {
      objects: manifests.length,
      events: archived,
      bytesPerEvent: +(bytes / Math.max(1, archived)).toFixed(1),
      complete: archived === steadyRes.accepted + burstRes.accepted,
    },
    encode,
  };
  const md = [
    '| measure | value |',
    '|---|---|',
    `| accepted events/s, steady (${STEADY_CLIENTS} clients × ${EVENTS_PER_REQUEST}-event requests, fsync on) | ${steadyRes.eventsPerSec.toLocaleString()} |`,
    `| ack latency p50 / p99, steady | ${steadyRes.ackP50ms} ms / ${steadyRes.ackP99ms} ms |`,
    `| accepted events/s, 10× burst (${BURST_CLIENTS} clients) | ${burstRes.eventsPerSec.toLocaleString()} |`,
    `| ack latency p50 / p99, burst | ${burstRes.ackP50ms} ms / ${burstRes.ackP99ms} ms |`,
    `| peak RSS of the ingest process | ${rss} MiB |`,
    `| archived events / accepted | ${archived.toLocaleString()} / ${(steadyRes.accepted + burstRes.accepted).toLocaleString()} in ${manifests.length} objects |`,
    `| Parquet bytes/event (archive) | ${result.archive.bytesPerEvent} |`,
    `| WAL→Parquet encode, ours | ${encode.oursEventsPerSec.toLocaleString()} events/s |`,
    `| DuckDB native Parquet writer, same rows | ${encode.duckdbNativeEventsPerSec.toLocaleString()} events/s |`,
    `| ratio ours / native | ${encode.ratioToNative} |`,
  ].join('\n');
  await finishRun('ingest', result, md, dataDir, services);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
