// Benchmark reporting: the machine the numbers were measured on, percentiles, peak RSS of child processes, the
// CPU cost model (CPU seconds per million events, cores per 100k events/s), and writing results as JSON
// (machine-readable) plus a Markdown summary into bench/results/.
import os from 'node:os';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../shared/config.js';

export function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.type()} ${os.release()}`,
    date: new Date().toISOString(),
  };
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Peak resident set size (VmHWM) of a process, in MiB, from /proc. */
export function peakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : NaN;
  } catch {
    return NaN;
  }
}

/** CPU seconds per million events (NaN without events). */
export function cpuPerMillion(cpuSeconds: number, events: number): number {
  return events > 0 && Number.isFinite(cpuSeconds) ? +((cpuSeconds / events) * 1e6).toFixed(3) : NaN;
}

/** Cores a component keeps busy at 100,000 events/s, given its CPU seconds per million events. */
export function coresPer100k(cpuSecondsPerMillion: number): number {
  return +(cpuSecondsPerMillion / 10).toFixed(3);
}

/** Events/s that one fully busy core gives at `cpuSecondsPerMillion` (NaN when nothing was measured). */
export function eventsPerCore(cpuSecondsPerMillion: number): number {
  return cpuSecondsPerMillion > 0 ? Math.round(1e6 / cpuSecondsPerMillion) : NaN;
}

/** One row of the cost table: a component, its measured cost, and what one instance of it can take (or why not). */
export interface CostRow {
  component: string;
  cpuSecondsPerMillion: number;
  ceiling: string;
}

/** The Markdown cost table: component, CPU-s per million events, cores per 100k events/s, ceiling of one instance. */
export function costTable(rows: readonly CostRow[]): string {
  const num = (x: number) => (Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: x < 10 ? 2 : 1 }) : 'n/a');
  return [
    '| component | CPU-s per million events | cores per 100k events/s | ceiling of one instance |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.component} | ${num(r.cpuSecondsPerMillion)} | ${num(coresPer100k(r.cpuSecondsPerMillion))} | ${r.ceiling} |`),
  ].join('\n');
}

export function writeResults(name: string, data: Record<string, unknown>, markdown: string): string {
  // BENCH_RESULTS_DIR sends a trial run's results elsewhere, leaving the committed ones in bench/results/ untouched.
  const dir = path.resolve(PROJECT_ROOT, process.env.BENCH_RESULTS_DIR ?? path.join('bench', 'results'));
  mkdirSync(dir, { recursive: true });
  const day = new Date().toISOString().slice(0, 10);
  const json = path.join(dir, `${name}-${day}.json`);
  writeFileSync(json, JSON.stringify({ benchmark: name, machine: machine(), ...data }, null, 2) + '\n');
  const m = machine();
  writeFileSync(
    path.join(dir, `${name}.md`),
    `# ${name} benchmark\n\nMeasured ${m.date} on ${m.cores} × ${m.cpu}, ${m.memoryGiB} GiB, Node ${m.node}.\n\n${markdown}\n`,
  );
  return json;
}

/** Progress on stderr for long runs. */
export function progress(msg: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}
