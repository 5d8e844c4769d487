// Benchmark processes: each Sluice service runs as the real `sluice` sub-command (shared/process-supervisor.ts),
// its output in the run's data folder, so a benchmark measures the product as users start it.
import path from 'node:path';
import { sluiceCommand } from '../../shared/process-commands.js';
import { startService, SupervisedProcess } from '../../shared/process-supervisor.js';

export type BenchProcess = SupervisedProcess & { url: string };

/** Longest a benchmark waits for a service to finish its work (ingest delivers its WAL) after SIGTERM. */
export const STOP_GRACE_MS = 120_000;

const logFileOf = (env: Record<string, string>, logName: string) => path.join(env.SLUICE_DATA_DIR ?? '.', `${logName}.log`);

/** Starts `sluice <command>` with the run's settings and waits until it serves. */
export function startProcess(command: string, env: Record<string, string>, logName = command): Promise<BenchProcess> {
  return startService(command, [command], { env: { ...process.env, ...env }, logFile: logFileOf(env, logName) });
}

/**
 * Like startProcess, with extra node flags before the entry (BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof",
 * profiles the process itself).
 */
export async function startProfiledProcess(command: string, env: Record<string, string>, nodeArgs: readonly string[]): Promise<BenchProcess> {
  const [node, ...rest] = sluiceCommand(command);
  const child = new SupervisedProcess(command, [node!, ...nodeArgs, ...rest], { env: { ...process.env, ...env }, logFile: logFileOf(env, command), ipc: true });
  const m = await child.ready();
  return Object.assign(child, { url: m.url ?? '' });
}
