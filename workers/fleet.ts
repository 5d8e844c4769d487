// The fleet supervisor (`sluice fleet`): runs `sluice worker` processes and sizes the fleet by the batch queue,
// with workers/scaling-policy.ts deciding. A worker is stopped only by draining it (SIGTERM, then SIGKILL after
// SLUICE_FLEET_DRAIN_GRACE) and counts as gone only once it has exited; a worker that dies unasked is replaced.
import Fastify from 'fastify';
import type { Config } from '../shared/config.js';
import { createSqs } from '../shared/clients/aws.js';
import { errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { addOpsRoutes, createRegistry } from '../shared/metrics.js';
import { maxOf, scrapeMetrics, sumOf, type Sample } from '../shared/prom-text.js';
import { readQueueStats, type QueueStats } from '../shared/queue-stats.js';
import { sluiceCommand, SupervisedProcess } from '../shared/process-supervisor.js';
import { BACKOFF, backoffMs } from '../shared/retry.js';
import type { Service } from '../shared/service.js';
import { FleetMetrics } from './fleet-metrics.js';
import { decideScale, type Direction, type ScalingOptions, type ScalingState } from './scaling-policy.js';

export interface FleetOptions {
  /** Command line that starts one worker process; defaults to this CLI's `worker` sub-command. */
  workerCommand?: string[];
}

export type WorkerState = 'starting' | 'running' | 'draining';

export interface FleetWorkerInfo {
  id: number;
  pid: number | undefined;
  state: WorkerState;
  url?: string;
  startedAt: string;
}

/** One entry of the fleet's recent history (GET /v1/fleet), newest last. */
export type FleetEvent =
  | { at: string; kind: 'scale'; direction: Exclude<Direction, 'none'>; from: number; to: number; reason: string }
  | { at: string; kind: 'started'; worker: number; pid: number | undefined }
  | { at: string; kind: 'exited'; worker: number; pid: number | undefined; drained: boolean; code: number | null; signal: string | null };

interface WorkerProc {
  id: number;
  child: SupervisedProcess;
  state: WorkerState;
  url?: string;
  startedAt: number;
  /** Last scraped value of each counter the fleet totals, to add only the increase. */
  lastSeen: Map<string, number>;
}

const HISTORY = 500;
const SCRAPE_TIMEOUT_MS = 1_000;
/** How long start-up waits for the first SLUICE_FLEET_MIN workers before reporting ready anyway. */
const INITIAL_READY_WAIT_MS = 60_000;

export async function startFleet(cfg: Config, log: Logger, opts: FleetOptions = {}): Promise<Service> {
  const flog = log.child({ component: 'fleet' });
  const policy: ScalingOptions = {
    min: cfg.SLUICE_FLEET_MIN,
    max: cfg.SLUICE_FLEET_MAX,
    targetPerWorker: cfg.SLUICE_FLEET_TARGET_PER_WORKER,
    cooldownMs: cfg.SLUICE_FLEET_COOLDOWN,
  };
  const registry = createRegistry('fleet');
  const metrics = new FleetMetrics(registry);
  const sqs = createSqs(cfg);
  const workerCommand = opts.workerCommand ?? sluiceCommand('worker');

  const workers = new Map<number, WorkerProc>();
  const history: FleetEvent[] = [];
  const record = (e: FleetEvent) => {
    history.push(e);
    if (history.length > HISTORY) history.shift();
  };
  let nextId = 1;
  let target = policy.min;
  let desired = policy.min;
  let scaling: ScalingState = {};
  let lastQueue: QueueStats | undefined;
  let queueError: string | undefined = 'queue not read yet';
  let lastEmptyAtMs = Date.now();
  let consecutiveCrashes = 0;
  let restartNotBefore = 0;
  let restartTimer: NodeJS.Timeout | undefined;
  let tickTimer: NodeJS.Timeout | undefined;
  let closing = false;

  const active = () => [...workers.values()].filter((w) => w.state !== 'draining');
  const updateGauges = () => {
    for (const s of ['starting', 'running', 'draining'] as const) metrics.workers.set({ state: s }, [...workers.values()].filter((w) => w.state === s).length);
  };

  const spawnWorker = (): WorkerProc => {
    const id = nextId++;
    const child = new SupervisedProcess(`worker ${id}`, workerCommand, { env: { ...process.env, SLUICE_WORKER_PORT: '0' }, ipc: true });
    const proc = child.proc;
    const w: WorkerProc = { id, child, state: 'starting', startedAt: Date.now(), lastSeen: new Map() };
    workers.set(id, w);
    record({ at: new Date().toISOString(), kind: 'started', worker: id, pid: proc.pid });
    child.onReady((m) => {
      if (w.state !== 'starting') return;
      w.state = 'running';
      w.url = m.url;
      consecutiveCrashes = 0;
      updateGauges();
      flog.info({ worker: id, workerPid: proc.pid, url: m.url }, 'worker ready');
    });
    void child.exited.then(({ code, signal }) => {
      workers.delete(id);
      const drained = w.state === 'draining';
      record({ at: new Date().toISOString(), kind: 'exited', worker: id, pid: proc.pid, drained, code, signal });
      updateGauges();
      if (drained) {
        flog.info({ worker: id, workerPid: proc.pid, code, signal }, 'worker drained and exited');
        return;
      }
      if (closing) return;
      metrics.restarts.inc();
      consecutiveCrashes++;
      const backoff = backoffMs(consecutiveCrashes - 1, BACKOFF.workerRestart);
      restartNotBefore = Date.now() + backoff;
      flog.error({ worker: id, workerPid: proc.pid, code, signal, restartInMs: backoff }, 'worker exited unexpectedly; replacing it');
      clearTimeout(restartTimer);
      restartTimer = setTimeout(reconcile, backoff);
    });
    proc.on('error', (err) => flog.error({ worker: id, err: errorMessage(err) }, 'could not run worker process'));
    updateGauges();
    return w;
  };

  const drainWorker = (w: WorkerProc) => {
    if (w.state === 'draining') return;
    w.state = 'draining';
    updateGauges();
    flog.info({ worker: w.id, workerPid: w.child.pid, graceMs: cfg.SLUICE_FLEET_DRAIN_GRACE }, 'draining worker (SIGTERM)');
    void w.child.stop(cfg.SLUICE_FLEET_DRAIN_GRACE, () => {
      metrics.forcedKills.inc();
      flog.warn({ worker: w.id, workerPid: w.child.pid }, `worker still running ${cfg.SLUICE_FLEET_DRAIN_GRACE} ms after SIGTERM; killing it`);
    });
  };

  /** Brings the number of active workers to `target`: replaces missing ones (after any crash backoff), drains extras. */
  function reconcile(): void {
    if (closing) return;
    const now = Date.now();
    let n = active().length;
    if (n < target && now < restartNotBefore) {
      clearTimeout(restartTimer);
      restartTimer = setTimeout(reconcile, restartNotBefore - now);
      return;
    }
    for (; n < target; n++) spawnWorker();
    // Stop the newest first: it has the least work in flight and the coldest caches.
    const extra = active()
      .sort((a, b) => b.startedAt - a.startedAt)
      .slice(0, Math.max(0, n - target));
    for (const w of extra) drainWorker(w);
  }

  /** Adds each worker's counter increases since the last scrape to the fleet's totals (a restarted counter counts from 0). */
  const addIncrease = (w: WorkerProc, key: string, value: number | undefined, add: (n: number) => void) => {
    if (value === undefined) return;
    const before = w.lastSeen.get(key) ?? 0;
    const inc = value >= before ? value - before : value;
    if (inc > 0) add(inc);
    w.lastSeen.set(key, value);
  };
  const scrapeWorkers = async (): Promise<number | undefined> => {
    let oldest: number | undefined;
    await Promise.all(
      [...workers.values()]
        .filter((w) => w.url)
        .map(async (w) => {
          let samples: Sample[];
          try {
            samples = await scrapeMetrics(w.url!, SCRAPE_TIMEOUT_MS);
          } catch {
            return;
          }
          addIncrease(w, 'events', sumOf(samples, 'sluice_worker_events_total'), (n) => metrics.workerEvents.inc(n));
          addIncrease(w, 'dead', sumOf(samples, 'sluice_worker_dead_letters_total'), (n) => metrics.workerDeadLetters.inc(n));
          for (const outcome of new Set(samples.filter((s) => s.name === 'sluice_worker_batches_total').map((s) => s.labels.outcome ?? ''))) {
            addIncrease(w, `batches:${outcome}`, sumOf(samples, 'sluice_worker_batches_total', { outcome }), (n) => metrics.workerBatches.inc({ outcome }, n));
          }
          const age = maxOf(samples, 'sluice_worker_oldest_message_age_seconds');
          if (age !== undefined) oldest = Math.max(oldest ?? 0, age);
        }),
    );
    return oldest;
  };

  const tick = async () => {
    const now = Date.now();
    const [main, dlq, workerOldest] = await Promise.all([
      readQueueStats(sqs, cfg.SLUICE_QUEUE_NAME).catch((err: unknown) => err as Error),
      readQueueStats(sqs, cfg.SLUICE_DLQ_NAME).catch(() => undefined),
      scrapeWorkers(),
    ]);
    if (dlq) metrics.queueMessages.set({ queue: 'dead_letter', state: 'visible' }, dlq.visible);
    if (main instanceof Error) {
      metrics.pollErrors.inc();
      if (!queueError) flog.warn({ err: errorMessage(main) }, 'cannot read the queue depth; keeping the fleet as it is');
      queueError = `cannot read queue ${cfg.SLUICE_QUEUE_NAME}: ${errorMessage(main)}`;
      reconcile();
      return;
    }
    queueError = undefined;
    lastQueue = main;
    for (const [state, v] of [
      ['visible', main.visible],
      ['in_flight', main.inFlight],
      ['delayed', main.delayed],
    ] as const)
      metrics.queueMessages.set({ queue: 'batches', state }, v);
    if (main.visible + main.inFlight + main.delayed === 0) lastEmptyAtMs = now;
    // Oldest message: SQS's own figure when reported; else the oldest batch in a worker; if messages wait and no
    // worker holds any, they arrived after the queue was last seen empty — an upper bound.
    const waitingUnseen = main.visible > 0 && !(workerOldest && workerOldest > 0);
    const oldest = main.oldestAgeSeconds ?? Math.max(workerOldest ?? 0, waitingUnseen ? (now - lastEmptyAtMs) / 1000 : 0);
    metrics.oldestAge.set(oldest);
    metrics.freshness.set(cfg.SLUICE_FLUSH_MAX_AGE / 1000 + oldest);

    // The policy sizes the intended fleet (target); workers missing after a crash are replaced by reconcile(), not counted as scaling.
    const before = target;
    const draining = [...workers.values()].some((w) => w.state === 'draining');
    const d = decideScale(before, draining, main, now, scaling, policy);
    scaling = d.state;
    desired = d.desired;
    metrics.desired.set(d.desired);
    if (d.direction !== 'none' && d.target !== before) {
      metrics.scaleEvents.inc({ direction: d.direction });
      record({ at: new Date(now).toISOString(), kind: 'scale', direction: d.direction, from: before, to: d.target, reason: d.reason });
      flog.info(
        { direction: d.direction, from: before, to: d.target, desired: d.desired, visible: main.visible, inFlight: main.inFlight, reason: d.reason },
        `scaling ${d.direction} to ${d.target} worker(s)`,
      );
    } else {
      flog.debug({ workers: before, desired: d.desired, visible: main.visible, inFlight: main.inFlight, reason: d.reason }, 'fleet size unchanged');
    }
    target = d.target;
    reconcile();
  };

  const loop = () => {
    tickTimer = setTimeout(() => {
      tick()
        .catch((err: unknown) => flog.error({ err: errorMessage(err) }, 'fleet poll failed'))
        .finally(() => {
          if (!closing) loop();
        });
    }, cfg.SLUICE_FLEET_POLL_INTERVAL);
  };

  const app = Fastify({ logger: false });
  addOpsRoutes(app, registry, () => (closing ? 'fleet is stopping' : queueError));
  app.get('/v1/fleet', async () => ({
    min: policy.min,
    max: policy.max,
    targetPerWorker: policy.targetPerWorker,
    cooldownMs: policy.cooldownMs,
    desired,
    target,
    queue: lastQueue ?? null,
    workers: [...workers.values()].map(
      (w): FleetWorkerInfo => ({
        id: w.id,
        pid: w.child.pid,
        state: w.state,
        ...(w.url ? { url: w.url } : {}),
        startedAt: new Date(w.startedAt).toISOString(),
      }),
    ),
    events: history,
  }));
  let url: string;
  try {
    url = await app.listen({ host: '127.0.0.1', port: cfg.SLUICE_FLEET_PORT });
  } catch (err) {
    sqs.destroy();
    throw err;
  }

  reconcile();
  updateGauges();
  const readyBy = Date.now() + INITIAL_READY_WAIT_MS;
  while (Date.now() < readyBy && [...workers.values()].some((w) => w.state === 'starting')) await new Promise((r) => setTimeout(r, 100));
  if (active().some((w) => w.state !== 'running')) flog.warn('not every initial worker is ready yet; continuing');
  await tick().catch((err: unknown) => flog.error({ err: errorMessage(err) }, 'fleet poll failed'));
  loop();
  flog.info({ url, ...policy, pollMs: cfg.SLUICE_FLEET_POLL_INTERVAL }, 'fleet supervisor started');

  let closed: Promise<void> | undefined;
  const close = async () => {
    closing = true;
    clearTimeout(tickTimer);
    clearTimeout(restartTimer);
    const all = [...workers.values()];
    for (const w of all) drainWorker(w);
    await Promise.all(all.map((w) => w.child.exited));
    await app.close();
    sqs.destroy();
    flog.info('fleet supervisor stopped');
  };
  return { url, close: () => (closed ??= close()) };
}
