// One poll of the fleet: reads the batch queue (and the DLQ), the workers' counters and oldest message, updates the
// queue gauges and freshness, and asks scaling-policy.ts how many workers to run from the depth and the oldest
// message's age; the pool carries the target out. When the queue cannot be read the fleet keeps its size (and
// /readyz says why). Workers missing after a crash are replaced by the pool, not counted as scaling.
import type { SQSClient } from '@aws-sdk/client-sqs';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { readQueueStats, type QueueStats } from '../../shared/queue-stats.js';
import { type FleetEvents, fleetEvents } from './fleet-events.js';
import type { FleetMetrics } from './fleet-metrics.js';
import type { FleetHistory } from './history.js';
import { decideScale, type QueueSignals, type ScalingOptions, type ScalingState } from './scaling-policy.js';
import type { WorkerPool } from './worker-pool.js';
import { scrapeWorkers } from './worker-scrape.js';

export interface ScalerOptions {
  sqs: SQSClient;
  queueName: string;
  deadLetterQueueName: string;
  policy: ScalingOptions;
  /** SLUICE_FLUSH_MAX_AGE: ingest's buffering, the fixed part of the freshness estimate. */
  flushMaxAgeMs: number;
  pool: WorkerPool;
  metrics: FleetMetrics;
  history: FleetHistory;
  log: Logger;
}

export class Scaler {
  /** Workers the fleet intends to run. */
  target: number;
  /** What the queue asked for at the last good read. */
  desired: number;
  lastQueue: QueueStats | undefined;
  /** Why the fleet is not ready (the queue could not be read), or undefined. */
  queueError: string | undefined = 'queue not read yet';
  private scaling: ScalingState = {};
  private lastEmptyAtMs = Date.now();
  private readonly events: FleetEvents;

  constructor(private readonly o: ScalerOptions) {
    this.events = fleetEvents(o.log, o.metrics);
    this.target = o.policy.min;
    this.desired = o.policy.min;
  }

  async tick(): Promise<void> {
    const o = this.o;
    const now = Date.now();
    const [main, dlq, workerOldest] = await Promise.all([
      readQueueStats(o.sqs, o.queueName).catch((err: unknown) => err as Error),
      readQueueStats(o.sqs, o.deadLetterQueueName).catch(() => undefined),
      scrapeWorkers(o.pool.all, o.metrics),
    ]);
    if (dlq) o.metrics.queueMessages.set({ queue: 'dead_letter', state: 'visible' }, dlq.visible);
    if (main instanceof Error) {
      o.metrics.pollErrors.inc();
      if (!this.queueError) o.log.warn({ err: errorMessage(main) }, 'cannot read the queue depth; keeping the fleet as it is');
      this.queueError = `cannot read queue ${o.queueName}: ${errorMessage(main)}`;
      o.pool.reconcile();
      return;
    }
    this.queueError = undefined;
    this.lastQueue = main;
    const oldestAgeSeconds = this.observeQueue(main, workerOldest, now);
    this.decide({ visible: main.visible, inFlight: main.inFlight, ...(oldestAgeSeconds !== undefined ? { oldestAgeSeconds } : {}) }, now);
    o.pool.scaleTo(this.target);
  }

  /**
   * Queue gauges, and the oldest message: SQS's own figure when reported; else the oldest batch in a worker; if
   * messages wait and no worker holds any, they arrived after the queue was last seen empty — an upper bound.
   * Returns the age to scale on: only a measured one (SQS's, or a worker's). The upper bound stays in the gauge and
   * the alerts: under steady load the queue is rarely empty, so it would grow without bound and scale for nothing.
   */
  private observeQueue(main: QueueStats, workerOldest: number | undefined, now: number): number | undefined {
    const m = this.o.metrics;
    for (const [state, v] of [
      ['visible', main.visible],
      ['in_flight', main.inFlight],
      ['delayed', main.delayed],
    ] as const)
      m.queueMessages.set({ queue: 'batches', state }, v);
    if (main.visible + main.inFlight + main.delayed === 0) this.lastEmptyAtMs = now;
    const waitingUnseen = main.visible > 0 && !(workerOldest && workerOldest > 0);
    const oldest = main.oldestAgeSeconds ?? Math.max(workerOldest ?? 0, waitingUnseen ? (now - this.lastEmptyAtMs) / 1000 : 0);
    m.oldestAge.set(oldest);
    m.freshness.set(this.o.flushMaxAgeMs / 1000 + oldest);
    return main.oldestAgeSeconds ?? workerOldest;
  }

  /** Sizes the intended fleet (target) from the queue. */
  private decide(queue: QueueSignals, now: number): void {
    const before = this.target;
    const pool = this.o.pool;
    const fleet = { active: before, ready: Math.min(before, pool.running().length), draining: pool.anyDraining() };
    const d = decideScale(fleet, queue, now, this.scaling, this.o.policy);
    this.scaling = d.state;
    this.desired = d.desired;
    const { desired, signal, reason } = d;
    const { visible, inFlight, oldestAgeSeconds } = queue;
    const age = oldestAgeSeconds !== undefined ? { oldestAgeSeconds } : {};
    if (d.direction !== 'none' && d.target !== before) {
      this.o.history.record({ at: new Date(now).toISOString(), kind: 'scale', direction: d.direction, from: before, to: d.target, signal, reason });
      this.events.emit({ type: 'FleetScaled', direction: d.direction, from: before, to: d.target, desired, visible, inFlight, ...age, signal, reason });
    } else {
      this.events.emit({ type: 'FleetSizeKept', workers: before, desired, visible, inFlight, ...age, signal, reason });
    }
    this.target = d.target;
  }
}
