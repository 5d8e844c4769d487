// `npm run soak`: the whole stack under a steady load (default one hour at 25,000 events/s, half the sustained
// rate measured by bench:e2e), sampling every process's RSS and open file handles over time to show leaks:
// a healthy run has flat RSS and handle counts after warm-up, and exact counts at the end.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { createInflux } from '../shared/clients/influx.js';
import { MEASUREMENT_1M } from '../shared/contracts/influx-series.js';
import { benchEnv, prepareRun } from './lib/stack.js';
import { startProcess, STOP_GRACE_MS, type BenchProcess } from './lib/processes.js';
import { runLoad } from '../cli/load-generator.js';
import { progress, writeResults } from './lib/report.js';

const RATE = Number(process.env.SOAK_RATE ?? 25_000);
const DURATION_S = Number(process.env.SOAK_DURATION_S ?? 3_600);
const SAMPLE_S = Number(process.env.SOAK_SAMPLE_S ?? 30);

function sample(pid: number): { rssMiB: number; handles: number } {
  try {
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { rssMiB: rss ? Math.round(Number(rss[1]) / 1024) : NaN, handles: readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return { rssMiB: NaN, handles: NaN };
  }
}

async function main() {
  const id = `s${Date.now().toString(36)}`;
  const env = benchEnv(id, { SLUICE_FLUSH_MAX_AGE: '5s' });
  const dataDir = env.SLUICE_DATA_DIR!;
  const { cfg, services } = await prepareRun(env);
  const influx = createInflux(cfg);
  const procs: Record<string, BenchProcess> = {
    ingest: await startProcess('ingest', env),
    'worker-0': await startProcess('worker', env, 'worker-0'),
    'worker-1': await startProcess('worker', env, 'worker-1'),
    query: await startProcess('query', env),
  };
  const samples: { t: number; [proc: string]: number | { rssMiB: number; handles: number } }[] = [];
  const t0 = Date.now();
  const timer = setInterval(() => {
    const row: (typeof samples)[number] = { t: Math.round((Date.now() - t0) / 1000) };
    for (const [name, p] of Object.entries(procs)) row[name] = sample(p.proc.pid!);
    samples.push(row);
    progress(
      `${row.t}s ${Object.entries(procs)
        .map(([n]) => `${n} ${(row[n] as { rssMiB: number }).rssMiB} MiB/${(row[n] as { handles: number }).handles} fds`)
        .join('  ')}`,
    );
  }, SAMPLE_S * 1000);
  progress(`soak: ${RATE.toLocaleString()} events/s for ${DURATION_S}s`);
  const load = await runLoad({
    url: procs.ingest!.url,
    rate: RATE,
    durationMs: DURATION_S * 1000,
    entities: 10_000,
    skew: 1.1,
    types: { view: 0.85, like: 0.12, share: 0.03 },
    duplicateRatio: 0.01,
    lateRatio: 0.01,
    burstEveryMs: 0,
    burstForMs: 0,
    burstFactor: 1,
    seed: 5,
    idPrefix: id,
  });
  clearInterval(timer);
  let counted = 0;
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    counted = Number((await influx.query<{ c: number }>(`SELECT sum("count") AS c FROM ${MEASUREMENT_1M}`))[0]?.c ?? 0);
    if (counted >= load.uniqueEvents || Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 1_000));
  }
  for (const p of Object.values(procs)) await p.stop(STOP_GRACE_MS);
  const growth = (name: string, key: 'rssMiB' | 'handles') => {
    const vals = samples.map((s) => (s[name] as { rssMiB: number; handles: number })[key]).filter(Number.isFinite);
    const warm = vals.slice(Math.floor(vals.length / 4));
    return warm.length > 1 ? warm[warm.length - 1]! - warm[0]! : 0;
  };
  const summary = Object.keys(procs).map((n) => ({ process: n, rssGrowthAfterWarmupMiB: growth(n, 'rssMiB'), handleGrowthAfterWarmup: growth(n, 'handles') }));
  const md = [
    `${RATE.toLocaleString()} events/s for ${DURATION_S} s; ${load.uniqueEvents.toLocaleString()} unique events, ${counted.toLocaleString()} counted (${counted === load.uniqueEvents ? 'exact' : 'NOT exact'}). Samples every ${SAMPLE_S} s.`,
    '',
    '| process | RSS growth after warm-up | handle growth after warm-up |',
    '|---|---|---|',
    ...summary.map((x) => `| ${x.process} | ${x.rssGrowthAfterWarmupMiB} MiB | ${x.handleGrowthAfterWarmup} |`),
  ].join('\n');
  writeResults('soak', { rate: RATE, seconds: DURATION_S, unique: load.uniqueEvents, counted, summary, samples }, md);
  rmSync(dataDir, { recursive: true, force: true });
  await Promise.all(services.map((s) => s.stop()));
  process.exit(counted === load.uniqueEvents ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
