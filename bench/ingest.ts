// `npm run bench:ingest`: HTTP → WAL (fsync on) → Parquet → S3 → SQS under a Zipf workload with a 10× burst, first on
// one ingest process, then on `sluice ingest --processes N` (N = BENCH_INGEST_PROCESSES or SLUICE_INGEST_PROCESSES, by
// default the CPUs; 1 skips the second phase).
// Reports accepted events/s, ack latency p50/p99, peak RSS, Parquet bytes/event, our WAL→Parquet encode rate as a
// ratio to DuckDB's native Parquet writer on the same events, and per phase the CPU cost read from /proc: CPU seconds
// per million events of the ingest processes (all threads, and their event loops alone), of this load generator and
// of Redis, and the cores the machine's other processes kept busy meanwhile. The load generator shares the cores with
// ingest, so events/s alone understates a process on its own core: 1e6 / (ingest CPU-s per million) is what one fully
// used core gives.
import { mkdirSync, readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { createSqs } from '../shared/clients/aws.js';
import { loadConfig } from '../shared/config.js';
import { decodeManifest } from '../shared/contracts/manifest.js';
import { validateEvent } from '../shared/contracts/event.js';
import { encodeEventLine } from '../shared/contracts/event-line.js';
import { openEngine, queryParquet } from '../shared/parquet.js';
import { writeEventBatches } from '../ingest/parquet-batch-writer.js';
import { benchEnv, finishRun, prepareRun, servicePids } from './lib/stack.js';
import { drainQueue } from './lib/drain-queue.js';
import { type BenchProcess, startProfiledProcess, STOP_GRACE_MS } from './lib/processes.js';
import { eventFactory } from './lib/workload.js';
import { cpuPerMillion, eventsPerCore, peakRssMiB, percentile, progress } from './lib/report.js';
import { type CpuComponent, clockTicksPerSecond, cpuBetween, parseProcStat, sampleCpu } from './lib/proc-cpu.js';

const EVENTS_PER_REQUEST = Number(process.env.BENCH_EVENTS_PER_REQUEST ?? 1_000);
const STEADY_CLIENTS = 4;
const BURST_CLIENTS = 40;
const STEADY_REQUESTS = Number(process.env.BENCH_STEADY_REQUESTS ?? 600);
const BURST_REQUESTS = Number(process.env.BENCH_BURST_REQUESTS ?? 400);
const ENCODE_EVENTS = Number(process.env.BENCH_ENCODE_EVENTS ?? 1_000_000);
// BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") adds node flags to the ingest processes; BENCH_CPU_PROF=1
// profiles them into .data/bench-profiles/ (bench/lib/processes.ts), bench/lib/cpu-profile.ts sums the profiles.
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);

/** The CPU account of one phase, from /proc (bench/lib/proc-cpu.ts), over the phase's window only. */
interface PhaseCpu {
  /** CPU seconds of the ingest processes (every thread: event loop, GC, fsync pool, the Parquet conversion's engine thread). */
  ingestCpuSeconds: number;
  /** Of which their main threads (the event loop: what one process saturates first). */
  ingestMainThreadCpuSeconds: number;
  ingestPerProcessCpuSeconds: number[];
  ingestCpuSecondsPerMillion: number;
  ingestMainThreadCpuSecondsPerMillion: number;
  /** Events/s one fully used core gives at this cost (1e6 / ingestCpuSecondsPerMillion). */
  eventsPerSecPerIngestCore: number;
  /** The same for the event loop alone: the ceiling of one process given a core of its own and the rest elsewhere. */
  eventsPerSecPerEventLoop: number;
  /** Of the ingest processes' CPU, per kind of thread (event loop, V8's GC and compiler helpers, libuv's pool, DuckDB). */
  ingestThreadsCpuSecondsPerMillion: Record<string, number>;
  /** The primary of `--processes N` (accepts connections and hands them over); 0 with one process. */
  primaryCpuSeconds: number;
  /** This process: fetch clients sending the pre-encoded bodies and reading the answers. */
  loadGeneratorCpuSecondsPerMillion: number;
  redisCpuSecondsPerMillion: number;
  s3sqsCpuSecondsPerMillion: number;
  /** Average cores busy on the whole machine during the phase, and those of processes that are not this run's. */
  machineBusyCores: number;
  otherBusyCores: number;
}

interface PhaseResult {
  processes: number;
  clients: number;
  requests: number;
  eventsPerRequest: number;
  accepted: number;
  seconds: number;
  eventsPerSec: number;
  eventsPerSecPerProcess: number;
  ackP50ms: number;
  ackP99ms: number;
  cpu: PhaseCpu;
}

/**
 * CPU ticks of every thread of `pids` now, by `<pid>/<tid>`, with the thread's name: the main thread is "event loop", its
 * kernel time apart as "event loop (system)" (syscalls: sockets, epoll); Node 20 names all its other threads "node".
 */
function threadTicks(pids: readonly number[]): Map<string, { name: string; ticks: number }> {
  const out = new Map<string, { name: string; ticks: number }>();
  for (const pid of pids) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const ticks = parseProcStat(stat).ticks;
        if (Number(tid) !== pid) {
          out.set(`${pid}/${tid}`, { name: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(), ticks });
          continue;
        }
        // utime and stime are fields 14 and 15 of proc(5), the 12th and 13th after the command name.
        const system = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[12]);
        out.set(`${pid}/${tid}`, { name: 'event loop', ticks: ticks - system });
        out.set(`${pid}/${tid}/system`, { name: 'event loop (system)', ticks: system });
      } catch {
        // the thread ended meanwhile
      }
    }
  }
  return out;
}

/** CPU seconds per million events of each kind of thread between two readings (threads started meanwhile count from 0). */
function threadCost(a: ReturnType<typeof threadTicks>, b: ReturnType<typeof threadTicks>, ticksPerSecond: number, events: number): Record<string, number> {
  const byName = new Map<string, number>();
  for (const [k, t] of b) byName.set(t.name, (byName.get(t.name) ?? 0) + t.ticks - (a.get(k)?.ticks ?? 0));
  return Object.fromEntries(
    [...byName]
      .filter(([, ticks]) => ticks > 0)
      .sort((x, y) => y[1] - x[1])
      .map(([name, ticks]) => [name, cpuPerMillion(ticks / ticksPerSecond, events)]),
  );
}

/** Pids whose parent is `pid` (the processes of `sluice ingest --processes N` under their primary). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (parseProcStat(readFileSync(`/proc/${name}/stat`, 'utf8')).ppid === pid) out.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

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
  // N of the second phase: BENCH_INGEST_PROCESSES, else SLUICE_INGEST_PROCESSES as `sluice ingest` reads it (default: the
  // CPUs of this machine); benchEnv sets one process for the other benchmarks, so it is read here without that setting.
  const { SLUICE_INGEST_PROCESSES: _onePerBench, ...runEnv } = env;
  const askedN = process.env.BENCH_INGEST_PROCESSES ?? process.env.SLUICE_INGEST_PROCESSES;
  const processesN = loadConfig({ ...process.env, ...runEnv, ...(askedN === undefined ? {} : { SLUICE_INGEST_PROCESSES: askedN }) }).SLUICE_INGEST_PROCESSES;
  const svc = servicePids(cfg, services);
  const ticksPerSecond = clockTicksPerSecond();

  const utf8 = new TextEncoder();
  // Pre-encoded request bodies (UTF-8 bytes): the generator must not be what is measured.
  const make = eventFactory({ entities: 100_000, skew: 1.1, seed: 42, spreadMs: 3 * 60_000, baseMs: Date.now() - 4 * 60_000 });
  const bodies = (n: number, prefix: string) =>
    Array.from({ length: n }, (_, r) => utf8.encode(JSON.stringify(Array.from({ length: EVENTS_PER_REQUEST }, () => make(`${prefix}${r}`)))));

  async function phase(name: string, node: BenchProcess, processes: number, reqs: Uint8Array<ArrayBuffer>[], clients: number): Promise<PhaseResult> {
    const lat: number[] = [];
    let accepted = 0;
    let next = 0;
    const ingestPids = processes === 1 ? [node.pid!] : childPids(node.pid!);
    if (ingestPids.length !== processes) throw new Error(`${name}: found ${ingestPids.length} ingest processes under pid ${node.pid}, expected ${processes}`);
    const components: Record<string, CpuComponent> = {
      ingest: { pids: ingestPids },
      primary: { pids: processes === 1 ? [] : [node.pid!], children: false },
      // This process sends the load; its children are the ingest processes, measured above.
      loadGenerator: { pids: [process.pid], children: false },
      redis: { pids: svc.redis },
      s3sqs: { pids: svc.s3sqs },
    };
    const threads0 = threadTicks(ingestPids);
    const cpu0 = sampleCpu(components);
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (next < reqs.length) {
          const body = reqs[next++]!;
          const s = performance.now();
          const r = await fetch(`${node.url}/v1/events`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
          const j = (await r.json()) as { accepted?: number };
          lat.push(performance.now() - s);
          if (r.status !== 202) throw new Error(`${name}: status ${r.status} ${JSON.stringify(j)}`);
          accepted += j.accepted ?? 0;
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    const cpu1 = sampleCpu(components);
    const threads1 = threadTicks(ingestPids);
    const c = cpuBetween(cpu0, cpu1, components, ticksPerSecond);
    lat.sort((a, b) => a - b);
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const ours = sum(Object.values(c).map((x) => x.cpuSeconds));
    const machineBusy = (cpu1.machineBusyTicks - cpu0.machineBusyTicks) / ticksPerSecond;
    const perMillion = cpuPerMillion(c.ingest!.cpuSeconds, accepted);
    const mainPerMillion = cpuPerMillion(c.ingest!.mainThreadCpuSeconds, accepted);
    const res: PhaseResult = {
      processes,
      clients,
      requests: reqs.length,
      eventsPerRequest: EVENTS_PER_REQUEST,
      accepted,
      seconds: +secs.toFixed(2),
      eventsPerSec: Math.round(accepted / secs),
      eventsPerSecPerProcess: Math.round(accepted / secs / processes),
      ackP50ms: +percentile(lat, 50).toFixed(1),
      ackP99ms: +percentile(lat, 99).toFixed(1),
      cpu: {
        ingestCpuSeconds: c.ingest!.cpuSeconds,
        ingestMainThreadCpuSeconds: c.ingest!.mainThreadCpuSeconds,
        ingestPerProcessCpuSeconds: c.ingest!.perProcessCpuSeconds,
        ingestCpuSecondsPerMillion: perMillion,
        ingestMainThreadCpuSecondsPerMillion: mainPerMillion,
        eventsPerSecPerIngestCore: eventsPerCore(perMillion),
        eventsPerSecPerEventLoop: eventsPerCore(mainPerMillion),
        ingestThreadsCpuSecondsPerMillion: threadCost(threads0, threads1, ticksPerSecond, accepted),
        primaryCpuSeconds: c.primary!.cpuSeconds,
        loadGeneratorCpuSecondsPerMillion: cpuPerMillion(c.loadGenerator!.cpuSeconds, accepted),
        redisCpuSecondsPerMillion: cpuPerMillion(c.redis!.cpuSeconds, accepted),
        s3sqsCpuSecondsPerMillion: cpuPerMillion(c.s3sqs!.cpuSeconds, accepted),
        machineBusyCores: +(machineBusy / secs).toFixed(2),
        otherBusyCores: +(Math.max(0, machineBusy - ours) / secs).toFixed(2),
      },
    };
    progress(
      `${name}: ${res.eventsPerSec.toLocaleString()} events/s, ack p50 ${res.ackP50ms} ms, p99 ${res.ackP99ms} ms; ingest ${perMillion} CPU-s per million events ` +
        `(${res.cpu.eventsPerSecPerIngestCore.toLocaleString()} events/s per core, event loop ${mainPerMillion}), load generator ${res.cpu.loadGeneratorCpuSecondsPerMillion}, ` +
        `other processes ${res.cpu.otherBusyCores} cores`,
    );
    progress(`${name}: ingest CPU-s per million events by thread ${JSON.stringify(res.cpu.ingestThreadsCpuSecondsPerMillion)}`);
    return res;
  }

  /** One node: its steady and burst phases, then its peak RSS and a stop that delivers its WAL. */
  async function node(label: string, processes: number) {
    progress(`generating the workload of ${label}`);
    const steady = bodies(STEADY_REQUESTS * processes, `${label}s`);
    const burst = bodies(BURST_REQUESTS * processes, `${label}b`);
    progress(`starting ${label}`);
    const nodeEnv = { ...env, SLUICE_NODE_ID: `bench-ingest-${label}`, SLUICE_INGEST_PROCESSES: String(processes) };
    const ingest = await startProfiledProcess('ingest', nodeEnv, NODE_ARGS, `ingest-${label}`);
    // Each process gets the clients the one-process phase has: N processes, N times the clients and requests.
    const steadyRes = await phase(`${label} steady`, ingest, processes, steady, STEADY_CLIENTS * processes);
    const burstRes = await phase(`${label} burst (10× clients)`, ingest, processes, burst, BURST_CLIENTS * processes);
    const rss = Math.max(...(processes === 1 ? [ingest.pid!] : childPids(ingest.pid!)).map(peakRssMiB));
    progress(`stopping ${label} (delivers its WAL)`);
    await ingest.stop(STOP_GRACE_MS);
    return { steady: steadyRes, burst: burstRes, peakRssMiB: rss };
  }

  const one = await node('1p', 1);
  const many = processesN > 1 ? await node(`${processesN}p`, processesN) : undefined;
  const accepted = one.steady.accepted + one.burst.accepted + (many ? many.steady.accepted + many.burst.accepted : 0);
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
      ingestProcessesN: processesN,
    },
    // One ingest process (SLUICE_INGEST_PROCESSES=1).
    steady: one.steady,
    burst: one.burst,
    peakRssMiB: one.peakRssMiB,
    // `sluice ingest --processes N` on the same machine, N times the clients and requests; null when N is 1.
    multiProcess: many ?? null,
    archive: {
      objects: manifests.length,
      events: archived,
      bytesPerEvent: +(bytes / Math.max(1, archived)).toFixed(1),
      complete: archived === accepted,
    },
    encode,
  };
  const num = (x: number) => (Number.isFinite(x) ? x.toLocaleString('en-US') : 'n/a');
  const row = (label: string, r: PhaseResult) =>
    `| ${label} | ${r.processes} | ${r.clients} | ${num(r.eventsPerSec)} | ${num(r.eventsPerSecPerProcess)} | ${r.ackP50ms} / ${r.ackP99ms} ms | ` +
    `${num(r.cpu.ingestCpuSecondsPerMillion)} / ${num(r.cpu.ingestMainThreadCpuSecondsPerMillion)} | ${num(r.cpu.eventsPerSecPerIngestCore)} / ${num(r.cpu.eventsPerSecPerEventLoop)} | ` +
    `${num(r.cpu.loadGeneratorCpuSecondsPerMillion)} | ${num(r.cpu.redisCpuSecondsPerMillion)} | ${r.cpu.otherBusyCores} |`;
  const md = [
    `${EVENTS_PER_REQUEST}-event requests, fsync on, Zipf entities (100,000, skew 1.1); steady = ${STEADY_CLIENTS} clients per process, burst = ${BURST_CLIENTS} per process.`,
    'CPU from /proc over each phase: the ingest processes (all threads / the event loop alone), this load generator, Redis,',
    'and the cores other processes on the machine kept busy. The load generator and Redis share the cores with ingest, so',
    'events/s is what this machine gave; events/s per core (1e6 / CPU-s per million events) is what one fully used core gives.',
    '',
    '| phase | processes | clients | events/s | events/s per process | ack p50 / p99 | ingest CPU-s per M events (all / event loop) | events/s per ingest core (all / event loop) | load generator CPU-s per M | Redis CPU-s per M | other load (cores) |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    row('steady, 1 process', one.steady),
    row('burst, 1 process', one.burst),
    ...(many ? [row(`steady, ${many.steady.processes} processes`, many.steady), row(`burst, ${many.burst.processes} processes`, many.burst)] : []),
    '',
    '| measure | value |',
    '|---|---|',
    `| peak RSS of the ingest process (1 process${many ? ` / largest of ${many.steady.processes}` : ''}) | ${one.peakRssMiB}${many ? ` / ${many.peakRssMiB}` : ''} MiB |`,
    `| archived events / accepted | ${archived.toLocaleString()} / ${accepted.toLocaleString()} in ${manifests.length} objects |`,
    `| Parquet bytes/event (archive) | ${result.archive.bytesPerEvent} |`,
    `| WAL→Parquet encode, ours | ${encode.oursEventsPerSec.toLocaleString()} events/s |`,
    `| DuckDB native Parquet writer, same rows | ${encode.duckdbNativeEventsPerSec.toLocaleString()} events/s |`,
    `| ratio ours / native | ${encode.ratioToNative} |`,
  ].join('\n');
  await finishRun('ingest', result, md, dataDir, services, { state: cfg });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
