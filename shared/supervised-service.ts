// Keeps one `sluice` sub-command running: restarted with backoff (on the same port) after every unexpected exit,
// given up and reported with its last log lines once it crashes `maxCrashes` times within the policy's window.
// Once its stack is stopping (endRestarts(), stop()) an exit is final: a service that stops on its own then (a
// signal sent to every process, e.g. by a service manager) is not started again in the middle of the shutdown.
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { backoffMs, type Backoff } from './retry.js';
import { type ChildOptions, type Exit, type SupervisedProcess, startService } from './process-supervisor.js';

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
  /** Called when the service exits after endRestarts() and before stop() (it is not restarted). */
  onExitWhileStopping?(service: string, exit: Exit): void;
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
  /** No more restarts: the stack is stopping (endRestarts) or this service is (stop). */
  private stopping = false;
  private stopCalled = false;
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
    if (child !== this.child) return;
    if (this.stopping) {
      if (!this.stopCalled) this.o.onExitWhileStopping?.(this.name, exit);
      return;
    }
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

  /**
   * From now on an exit of the service is final: it is not restarted (a pending restart is cancelled). Its stack
   * calls it on every service when it starts stopping, before it stops them one after another.
   */
  endRestarts(): void {
    this.stopping = true;
    clearTimeout(this.restartTimer);
  }

  /** Stops the service (SIGTERM, SIGKILL after `graceMs`) and any restart that is pending. */
  async stop(graceMs: number): Promise<Exit> {
    this.endRestarts();
    this.stopCalled = true;
    await this.restarting?.catch(() => undefined);
    return this.child.stop(graceMs);
  }
}
