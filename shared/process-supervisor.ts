// Runs one service as a child process and stops it: spawn an entry file (from sources via tsx, or from dist/),
// wait for its ready message, stop it with SIGTERM and SIGKILL only after a grace. A stop resolves once it exited.
// SupervisedService keeps one running: restarted with backoff after a crash, given up (and reported) in a crash loop.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { backoffMs, type Backoff } from './retry.js';

/** The folder that holds cli/, shared/, … — the repository root from sources, dist/ (or another out dir) when built. */
const CODE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FROM_SOURCES = import.meta.url.endsWith('.ts');

/** node command line that runs one of the project's entry files (`cli/sluice.ts`), from sources (via tsx) or built. */
export function entryCommand(fileFromRoot: string): string[] {
  const file = path.join(CODE_ROOT, FROM_SOURCES ? fileFromRoot : fileFromRoot.replace(/\.ts$/, '.js'));
  return FROM_SOURCES ? [process.execPath, '--import', 'tsx', file] : [process.execPath, file];
}

/** Command line of one `sluice` sub-command, e.g. sluiceCommand('worker'). */
export function sluiceCommand(...args: string[]): string[] {
  return [...entryCommand('cli/sluice.ts'), ...args];
}

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
}

/** A running child process and its one exit. */
export class SupervisedProcess {
  readonly proc: ChildProcess;
  /** Resolves when the process has exited (also when it could not be started). */
  readonly exited: Promise<Exit>;
  /** Where its output goes, when not inherited. */
  readonly logFile: string | undefined;
  private killTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly name: string,
    command: readonly string[],
    opts: ChildOptions = {},
  ) {
    this.logFile = opts.logFile;
    const out = opts.logFile ? openSync(opts.logFile, 'a') : 'inherit';
    const stdio: StdioOptions = ['ignore', out, out, ...(opts.ipc ? (['ipc'] as const) : [])];
    try {
      this.proc = spawn(command[0]!, command.slice(1), { env: opts.env ?? process.env, stdio });
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
   * Calling it again does not restart the grace.
   */
  stop(graceMs: number, onForcedKill?: () => void): Promise<Exit> {
    if (this.running && this.killTimer === undefined) {
      this.proc.kill('SIGTERM');
      this.killTimer = setTimeout(() => {
        onForcedKill?.();
        this.proc.kill('SIGKILL');
      }, graceMs);
    }
    return this.exited;
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

/** How a supervised service is restarted after a crash, and when its crashes stop the stack instead. */
export interface RestartPolicy {
  /** Delay before restart n (n = crashes within the window, 0-based); one of BACKOFF in shared/retry.ts. */
  backoff: Backoff;
  /** This many crashes within `windowMs` mean a crash loop: the service is not restarted again. */
  maxCrashes: number;
  windowMs: number;
}

export interface RestartEvent {
  service: string;
  exit: Exit;
  /** Restarts of this service since it was first started (this one included). */
  restarts: number;
  delayMs: number;
}

export interface SupervisedServiceOptions extends Omit<ChildOptions, 'ipc'> {
  policy: RestartPolicy;
  /** The setting that holds the service's port (e.g. SLUICE_INGEST_PORT): restarts listen where the first start did. */
  portSetting?: string;
  readyTimeoutMs?: number;
  onStarted?(service: string, pid: number | undefined, url: string): void;
  onRestarting?(e: RestartEvent): void;
  /** Called once, instead of a restart, when the service crashed `maxCrashes` times within `windowMs`. */
  onCrashLoop?(service: string, exits: Exit[], lastLogLines: string[]): void;
}

/** The last `n` lines of a log file ('' lines dropped); [] when it cannot be read. */
export function tailLines(file: string | undefined, n = 20, maxBytes = 64 * 1024): string[] {
  if (!file) return [];
  try {
    const size = statSync(file).size;
    const fd = openSync(file, 'r');
    try {
      const len = Math.min(size, maxBytes);
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, size - len);
      return buf.toString('utf8').split('\n').filter(Boolean).slice(-n);
    } finally {
      closeSync(fd);
    }
  } catch {
    return [];
  }
}

/**
 * A `sluice` sub-command kept running: started like startService(), restarted after every unexpected exit with the
 * policy's backoff (on the same port), until it crashes `maxCrashes` times within `windowMs` or stop() is called.
 */
export class SupervisedService {
  private child!: SupervisedProcess & { url: string };
  private stopping = false;
  private crashes: { at: number; exit: Exit }[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  private restarting: Promise<void> | undefined;
  /** Restarts since the first start. */
  restarts = 0;

  constructor(
    readonly name: string,
    private readonly args: string[],
    private readonly o: SupervisedServiceOptions,
  ) {}

  get url(): string {
    return this.child.url;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get logFile(): string | undefined {
    return this.o.logFile;
  }

  /** Starts the service and waits for its ready message (a failure here is not retried: the caller reports it). */
  async start(): Promise<this> {
    await this.spawn(this.o.env);
    return this;
  }

  private async spawn(env: NodeJS.ProcessEnv | undefined): Promise<void> {
    const child = await startService(this.name, this.args, { env, logFile: this.o.logFile, readyTimeoutMs: this.o.readyTimeoutMs });
    this.child = child;
    this.o.onStarted?.(this.name, child.pid, child.url);
    void child.exited.then((exit) => this.onExit(child, exit));
  }

  private onExit(child: SupervisedProcess, exit: Exit): void {
    if (this.stopping || child !== this.child) return;
    const now = Date.now();
    this.crashes = [...this.crashes.filter((c) => now - c.at < this.o.policy.windowMs), { at: now, exit }];
    if (this.crashes.length >= this.o.policy.maxCrashes) {
      this.o.onCrashLoop?.(
        this.name,
        this.crashes.map((c) => c.exit),
        tailLines(this.o.logFile),
      );
      return;
    }
    const delayMs = backoffMs(this.crashes.length - 1, this.o.policy.backoff);
    this.restarts++;
    this.o.onRestarting?.({ service: this.name, exit, restarts: this.restarts, delayMs });
    this.restartTimer = setTimeout(() => {
      this.restarting = this.respawn().finally(() => {
        this.restarting = undefined;
      });
    }, delayMs);
  }

  /** Starts again on the port of the first start; a start that fails counts as one more crash. */
  private async respawn(): Promise<void> {
    if (this.stopping) return;
    const port = this.o.portSetting && this.child.url ? new URL(this.child.url).port : '';
    const env = { ...(this.o.env ?? process.env), ...(this.o.portSetting && port ? { [this.o.portSetting]: port } : {}) };
    const failed = this.child;
    try {
      await this.spawn(env);
    } catch {
      // startService stopped the child; treat it like a crash of the one before.
      this.onExit(failed, { code: null, signal: null });
    }
  }

  /** Stops the service (SIGTERM, SIGKILL after `graceMs`) and any restart that is pending. */
  async stop(graceMs: number): Promise<Exit> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    await this.restarting?.catch(() => undefined);
    return this.child.stop(graceMs);
  }
}
