// Runs one service as a child process and stops it: spawn a command (see shared/process-commands.ts), wait for its
// ready message, stop it with SIGTERM and SIGKILL only after a grace. A stop resolves once it exited.
//
// A child with an IPC channel runs in a process group of its own. Ctrl-C in a terminal sends SIGINT to every process
// of the foreground group: were the children in ours, each would start stopping on its own, at once and out of order
// (a supervisor restarting a service that exited, a worker seeing its supervisor's SIGTERM as a second signal). In
// their own group only this process gets it and stops them in its order. Such a child watches its IPC channel instead:
// when this process exits, however (also SIGKILL), the channel closes and the child stops as on SIGTERM
// (shared/service.ts). A child without IPC (a database, a proxy) could not notice, and stays in our group.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { sluiceCommand } from './process-commands.js';

/** What a service sends over IPC once it serves (cli/sluice.ts `serve`). */
export interface ReadyMessage {
  ready: true;
  url?: string;
}
const isReady = (m: unknown): m is ReadyMessage => typeof m === 'object' && m !== null && (m as { ready?: unknown }).ready === true;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildOptions {
  env?: NodeJS.ProcessEnv;
  /** Append stdout and stderr to this file; default: inherit this process's. */
  logFile?: string;
  /** Open an IPC channel (needed for the ready message). */
  ipc?: boolean;
  /**
   * Run the child in a process group of its own, out of reach of the terminal's Ctrl-C (see the file header).
   * Default: when it has an IPC channel, by which it notices this process's exit.
   */
  ownProcessGroup?: boolean;
}

/** A running child process and its one exit. */
export class SupervisedProcess {
  readonly proc: ChildProcess;
  /** Resolves when the process has exited (also when it could not be started). */
  readonly exited: Promise<Exit>;
  /** Where its output goes, when not inherited. */
  readonly logFile: string | undefined;
  /** It leads a process group of its own (its pid is the group's id). */
  readonly ownProcessGroup: boolean;
  private killTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly name: string,
    command: readonly string[],
    opts: ChildOptions = {},
  ) {
    this.logFile = opts.logFile;
    this.ownProcessGroup = opts.ownProcessGroup ?? opts.ipc === true;
    const out = opts.logFile ? openSync(opts.logFile, 'a') : 'inherit';
    const stdio: StdioOptions = ['ignore', out, out, ...(opts.ipc ? (['ipc'] as const) : [])];
    try {
      this.proc = spawn(command[0]!, command.slice(1), { env: opts.env ?? process.env, stdio, detached: this.ownProcessGroup });
    } finally {
      if (typeof out === 'number') closeSync(out); // the child holds its own copy
    }
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        clearTimeout(this.killTimer);
        resolve({ code, signal });
      });
      // A command that cannot be spawned emits 'error' and never 'exit'.
      this.proc.on('error', () => {
        if (this.proc.pid === undefined) resolve({ code: null, signal: null });
      });
    });
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get exitCode(): number | null {
    return this.proc.exitCode;
  }

  /** Sends a signal now (tests kill with SIGKILL); see stop() for a graceful stop. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) this.proc.kill(signal);
  }

  get running(): boolean {
    return this.proc.pid !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /**
   * Resolves with the URL of the service's ready message; rejects, naming the log, when it exits first or
   * stays silent for `timeoutMs`.
   */
  ready(timeoutMs = 60_000): Promise<ReadyMessage> {
    const where = this.logFileHint();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`${this.name} did not report ready within ${timeoutMs / 1000}s${where}`)), timeoutMs);
      const onMessage = (m: unknown) => {
        if (isReady(m)) done(undefined, m);
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
        done(new Error(`${this.name} exited (${signal ?? `code ${code}`}) while starting${where}`));
      const done = (err?: Error, m?: ReadyMessage) => {
        clearTimeout(timer);
        this.proc.off('message', onMessage);
        this.proc.off('exit', onExit);
        if (err) reject(err);
        else resolve(m!);
      };
      this.proc.on('message', onMessage);
      this.proc.once('exit', onExit);
    });
  }

  /** Calls `onReady` on the first ready message (for supervisors that do not wait). */
  onReady(onReady: (m: ReadyMessage) => void): void {
    const listener = (m: unknown) => {
      if (!isReady(m)) return;
      this.proc.off('message', listener);
      onReady(m);
    };
    this.proc.on('message', listener);
  }

  /**
   * SIGTERM now, SIGKILL when it is still running `graceMs` later (`onForcedKill` is told first); resolves on exit.
   * Calling it again does not restart the grace. SIGTERM goes to the child alone, which stops its own children in
   * its order; SIGKILL to its whole process group, so none of them outlives it.
   */
  stop(graceMs: number, onForcedKill?: () => void): Promise<Exit> {
    if (this.running && this.killTimer === undefined) {
      this.proc.kill('SIGTERM');
      this.killTimer = setTimeout(() => {
        onForcedKill?.();
        this.killGroup();
      }, graceMs);
    }
    return this.exited;
  }

  /** SIGKILL to the child's process group (to the child alone when it shares ours). */
  private killGroup(): void {
    if (!this.running) return;
    if (this.ownProcessGroup && this.proc.pid !== undefined) {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
        return;
      } catch {
        // the group is gone already; the child itself is handled below
      }
    }
    this.proc.kill('SIGKILL');
  }

  private logFileHint(): string {
    return this.logFile ? `; see ${this.logFile}` : '';
  }
}

/** Spawns a `sluice` sub-command with IPC and waits for its ready message. */
export async function startService(
  name: string,
  args: string[],
  opts: Omit<ChildOptions, 'ipc'> & { readyTimeoutMs?: number } = {},
): Promise<SupervisedProcess & { url: string }> {
  const child = new SupervisedProcess(name, sluiceCommand(...args), { ...opts, ipc: true });
  try {
    const m = await child.ready(opts.readyTimeoutMs);
    return Object.assign(child, { url: m.url ?? '' });
  } catch (err) {
    await child.stop(5_000);
    throw err;
  }
}
