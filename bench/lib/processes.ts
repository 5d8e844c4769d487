// Benchmark processes: each Sluice service runs as the real `sluice` sub-command (shared/process-supervisor.ts),
// its output in the run's data folder, so a benchmark measures the product as users start it. BENCH_CPU_PROF
// profiles them (`node --cpu-prof`, see cpuProfileArgs); bench/lib/cpu-profile.ts sums the profiles.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../shared/config.js';
import { sluiceCommand } from '../../shared/process-commands.js';
import { startService, SupervisedProcess } from '../../shared/process-supervisor.js';
import { progress } from './report.js';

export type BenchProcess = SupervisedProcess & { url: string };

/** Longest a benchmark waits for a service to finish its work (ingest delivers its WAL) after SIGTERM. */
export const STOP_GRACE_MS = 120_000;

const logFileOf = (env: Record<string, string>, logName: string) => path.join(env.SLUICE_DATA_DIR ?? '.', `${logName}.log`);

/**
 * Node flags that profile `command` when BENCH_CPU_PROF asks for it: "1" profiles every service a benchmark starts,
 * a comma-separated list (e.g. "ingest") only those sub-commands. Each process writes one .cpuprofile when it exits
 * (every process of `sluice ingest --processes N` too: the primary passes its node flags on) into
 * BENCH_CPU_PROF_DIR (default .data/bench-profiles/<log name>/); read them with
 * `node .data/bench-build/bench/lib/cpu-profile.js <folder or files>`.
 */
export function cpuProfileArgs(command: string, logName = command): string[] {
  const want = (process.env.BENCH_CPU_PROF ?? '').trim();
  if (want === '' || want === '0') return [];
  if (want !== '1' && !want.split(',').some((c) => c.trim() === command)) return [];
  const dir = path.resolve(PROJECT_ROOT, process.env.BENCH_CPU_PROF_DIR ?? path.join('.data', 'bench-profiles', logName));
  mkdirSync(dir, { recursive: true });
  progress(`profiling ${logName}: node --cpu-prof, profiles in ${path.relative(PROJECT_ROOT, dir) || '.'}`);
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}

/** Starts `sluice <command>` with the run's settings and waits until it serves (profiled when BENCH_CPU_PROF says so). */
export function startProcess(command: string, env: Record<string, string>, logName = command): Promise<BenchProcess> {
  const profile = cpuProfileArgs(command, logName);
  if (profile.length) return startProfiledProcess(command, env, profile, logName);
  return startService(command, [command], { env: { ...process.env, ...env }, logFile: logFileOf(env, logName) });
}

/**
 * Like startProcess, with extra node flags before the entry (BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof",
 * profiles the process itself; BENCH_CPU_PROF adds its flags too).
 */
export async function startProfiledProcess(
  command: string,
  env: Record<string, string>,
  nodeArgs: readonly string[],
  logName = command,
): Promise<BenchProcess> {
  const [node, ...rest] = sluiceCommand(command);
  const flags = nodeArgs.some((a) => a.startsWith('--cpu-prof')) ? nodeArgs : [...nodeArgs, ...cpuProfileArgs(command, logName)];
  const child = new SupervisedProcess(command, [node!, ...flags, ...rest], { env: { ...process.env, ...env }, logFile: logFileOf(env, logName), ipc: true });
  try {
    const m = await child.ready();
    return Object.assign(child, { url: m.url ?? '' });
  } catch (err) {
    await child.stop(5_000);
    throw err;
  }
}
