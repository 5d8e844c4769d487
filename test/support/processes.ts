// Runs Sluice services as real child processes (the `sluice` CLI), so tests can SIGKILL and restart them.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync } from 'node:fs';
import path from 'node:path';
import { nodeEntry } from '../../localstack/services.js';

export interface ChildService {
  proc: ChildProcess;
  url: string;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Runs `sluice <command>` and resolves once it reports ready. `commandPrefix` runs it through another program that
 * then executes it in place (the same process, so signals and the IPC channel reach it), e.g. `ip netns exec <ns>`.
 */
export function startProcess(command: string, env: Record<string, string>, logName = command, commandPrefix: readonly string[] = []): Promise<ChildService> {
  const [cmd, ...args] = [...commandPrefix, ...nodeEntry('cli/sluice.ts')];
  const fd = openSync(path.join(env.SLUICE_DATA_DIR ?? '.', `${logName}.log`), 'a');
  const proc = spawn(cmd!, [...args, command], { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd, 'ipc'] });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} did not start within 60s`)), 60_000);
    proc.once('message', (m: { ready?: boolean; url?: string }) => {
      clearTimeout(timer);
      resolve({
        proc,
        url: m.url ?? '',
        async kill(signal: NodeJS.Signals = 'SIGTERM') {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
          return exited;
        },
      });
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${command} exited with ${code} while starting`));
    });
  });
}

/** Runs a test-only entry file (path from the project root) as a child process that reports { ready, url } over IPC. */
export function startEntry(fileFromRoot: string, env: Record<string, string>, logName: string): Promise<ChildService> {
  const [cmd, ...args] = nodeEntry(fileFromRoot);
  const fd = openSync(path.join(env.SLUICE_DATA_DIR ?? '.', `${logName}.log`), 'a');
  const proc = spawn(cmd!, args, { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd, 'ipc'] });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${fileFromRoot} did not start within 60s`)), 60_000);
    proc.once('message', (m: { url?: string }) => {
      clearTimeout(timer);
      resolve({
        proc,
        url: m.url ?? '',
        async kill(signal: NodeJS.Signals = 'SIGTERM') {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
          return exited;
        },
      });
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${fileFromRoot} exited with ${code ?? signal} while starting`));
    });
  });
}

/** Resolves with the signal that ended a child (null when it exited by itself), waiting at most `timeoutMs`. */
export function exitSignal(proc: ChildProcess, timeoutMs = 60_000): Promise<NodeJS.Signals | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.signalCode);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`process ${proc.pid} still running after ${timeoutMs} ms`)), timeoutMs);
    proc.once('exit', (_code, signal) => {
      clearTimeout(t);
      resolve(signal);
    });
  });
}
