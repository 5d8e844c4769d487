// The fleet's worker processes, from spawn to exit: brings the number of active workers to the target the scaler
// sets, replaces a worker that died unasked (after a backoff per consecutive crash, BACKOFF.workerRestart), and stops
// one only by draining it (SIGTERM, then SIGKILL after SLUICE_FLEET_DRAIN_GRACE). A worker counts as gone only once
// it has exited; the newest is drained first (least work in flight, coldest caches).
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { SupervisedProcess } from '../../shared/process-supervisor.js';
import { BACKOFF, backoffMs, sleep } from '../../shared/retry.js';
import type { FleetMetrics } from './fleet-metrics.js';
import type { FleetHistory, FleetWorkerInfo, WorkerState } from './history.js';

export interface WorkerProc {
  id: number;
  child: SupervisedProcess;
  state: WorkerState;
  url?: string;
  startedAt: number;
  /** Last scraped value of each counter the fleet totals, to add only the increase (worker-scrape.ts). */
  lastSeen: Map<string, number>;
}

export interface WorkerPoolOptions {
  /** Command line that starts one worker process. */
  command: string[];
  drainGraceMs: number;
  /** Workers to run until the scaler says otherwise (SLUICE_FLEET_MIN). */
  initialTarget: number;
  metrics: FleetMetrics;
  history: FleetHistory;
  log: Logger;
}

const STATES = ['starting', 'running', 'draining'] as const;

export class WorkerPool {
  private readonly workers = new Map<number, WorkerProc>();
  private nextId = 1;
  private target: number;
  private consecutiveCrashes = 0;
  private restartNotBefore = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private closing = false;

  constructor(private readonly o: WorkerPoolOptions) {
    this.target = o.initialTarget;
  }

  get all(): WorkerProc[] {
    return [...this.workers.values()];
  }

  /** Workers starting or running (not those already draining). */
  active(): WorkerProc[] {
    return this.all.filter((w) => w.state !== 'draining');
  }

  /** Workers that reported ready and are not draining. */
  running(): WorkerProc[] {
    return this.all.filter((w) => w.state === 'running');
  }

  anyDraining(): boolean {
    return this.all.some((w) => w.state === 'draining');
  }

  info(): FleetWorkerInfo[] {
    return this.all.map((w) => ({
      id: w.id,
      pid: w.child.pid,
      state: w.state,
      ...(w.url ? { url: w.url } : {}),
      startedAt: new Date(w.startedAt).toISOString(),
    }));
  }

  /** Sets how many workers should be active and reconciles at once. */
  scaleTo(target: number): void {
    this.target = target;
    this.reconcile();
  }

  /** Brings the number of active workers to the target: replaces missing ones (after any crash backoff), drains extras. */
  reconcile(): void {
    if (this.closing) return;
    const now = Date.now();
    let n = this.active().length;
    if (n < this.target && now < this.restartNotBefore) {
      this.restartAfter(this.restartNotBefore - now);
      return;
    }
    for (; n < this.target; n++) this.spawn();
    const extra = this.active()
      .sort((a, b) => b.startedAt - a.startedAt)
      .slice(0, Math.max(0, n - this.target));
    for (const w of extra) this.drain(w);
    this.updateGauges();
  }

  /** Waits (at most `ms`) until no worker is starting any more; false when some active worker is still not running. */
  async waitReady(ms: number): Promise<boolean> {
    const readyBy = Date.now() + ms;
    while (Date.now() < readyBy && this.all.some((w) => w.state === 'starting')) await sleep(100);
    return this.active().every((w) => w.state === 'running');
  }

  /** Drains every worker and resolves once all have exited; none is replaced afterwards. */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.restartTimer);
    const all = this.all;
    for (const w of all) this.drain(w);
    await Promise.all(all.map((w) => w.child.exited));
  }

  private spawn(): WorkerProc {
    const id = this.nextId++;
    const child = new SupervisedProcess(`worker ${id}`, this.o.command, { env: { ...process.env, SLUICE_WORKER_PORT: '0' }, ipc: true });
    const w: WorkerProc = { id, child, state: 'starting', startedAt: Date.now(), lastSeen: new Map() };
    this.workers.set(id, w);
    this.o.history.record({ at: new Date().toISOString(), kind: 'started', worker: id, pid: child.pid });
    child.onReady((m) => {
      if (w.state !== 'starting') return;
      w.state = 'running';
      w.url = m.url;
      this.consecutiveCrashes = 0;
      this.updateGauges();
      this.o.log.info({ worker: id, workerPid: child.pid, url: m.url }, 'worker ready');
    });
    void child.exited.then(({ code, signal }) => this.exited(w, code, signal));
    child.proc.on('error', (err) => this.o.log.error({ worker: id, err: errorMessage(err) }, 'could not run worker process'));
    this.updateGauges();
    return w;
  }

  private exited(w: WorkerProc, code: number | null, signal: NodeJS.Signals | null): void {
    const { log, metrics } = this.o;
    const pid = w.child.pid;
    this.workers.delete(w.id);
    const drained = w.state === 'draining';
    this.o.history.record({ at: new Date().toISOString(), kind: 'exited', worker: w.id, pid, drained, code, signal });
    this.updateGauges();
    if (drained) {
      log.info({ worker: w.id, workerPid: pid, code, signal }, 'worker drained and exited');
      return;
    }
    if (this.closing) return;
    metrics.restarts.inc();
    this.consecutiveCrashes++;
    const backoff = backoffMs(this.consecutiveCrashes - 1, BACKOFF.workerRestart);
    this.restartNotBefore = Date.now() + backoff;
    log.error({ worker: w.id, workerPid: pid, code, signal, restartInMs: backoff }, 'worker exited unexpectedly; replacing it');
    this.restartAfter(backoff);
  }

  private restartAfter(ms: number): void {
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => this.reconcile(), ms);
  }

  private drain(w: WorkerProc): void {
    if (w.state === 'draining') return;
    const grace = this.o.drainGraceMs;
    w.state = 'draining';
    this.updateGauges();
    this.o.log.info({ worker: w.id, workerPid: w.child.pid, graceMs: grace }, 'draining worker (SIGTERM)');
    void w.child.stop(grace, () => {
      this.o.metrics.forcedKills.inc();
      this.o.log.warn({ worker: w.id, workerPid: w.child.pid }, `worker still running ${grace} ms after SIGTERM; killing it`);
    });
  }

  private updateGauges(): void {
    for (const s of STATES) this.o.metrics.workers.set({ state: s }, this.all.filter((w) => w.state === s).length);
  }
}
