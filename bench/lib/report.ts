// Benchmark reporting: the machine the numbers were measured on, percentiles, peak RSS of child processes,
// and writing results as JSON (machine-readable) plus a Markdown summary into bench/results/.
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

export function writeResults(name: string, data: Record<string, unknown>, markdown: string): string {
  const dir = path.join(PROJECT_ROOT, 'bench', 'results');
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
