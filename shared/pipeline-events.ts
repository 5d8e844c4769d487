// Typed pipeline events: each observable step of the pipeline is one event, emitted once, and both its log line and its
// metric updates are derived from it here, so a step's observability lives in one place (as Vector's internal events).
// Metric names never change with this file's layout: dashboards, alerts (deploy/prometheus/alerts.yml) and tests read them.
//
// How an event is made:
//   - an event is a plain object with a `type` (the discriminant) and the fields its log line shows; it is passed to
//     pino as is (no copy), so name fields as a log reader would search for them (`segment`, `events`, `seconds`);
//   - its handler in the service's table says the log level and message and how it updates the metrics; the table is a
//     mapped type over the union, so the compiler refuses an event without a handler;
//   - the metrics a service's events update are created together (eagerly: a scrape sees every series at 0 from start).
// To add an event: add its type to the service's union, its handler to the service's table, and any new metric to the
// service's metric factory. To add a service's events (worker, fleet): a union, a `…EventMetrics(registry)` factory, a
// handler table and a `…Events(log, registry)` constructor, as the ingest ones (ingest/ingest-events.ts).
// Hot paths emit one event per unit (a request, a group commit, a batch), never one per event a producer sent.
import type { Logger } from './logger.js';

type Level = 'debug' | 'info' | 'warn' | 'error';

/** How one event becomes a log line and metric updates. */
export interface EventHandler<E, M> {
  level: Level | ((e: E) => Level);
  message: string | ((e: E) => string);
  record?: (e: E, m: M) => void;
}

export type EventHandlers<E extends { type: string }, M> = { [K in E['type']]: EventHandler<Extract<E, { type: K }>, M> };

/** The one emitter of a service's events. */
export class PipelineEvents<E extends { type: string }, M = unknown> {
  constructor(
    private readonly log: Logger,
    /** The metrics the events update (exposed for tests and for scrapes; update them only through emit). */
    readonly metrics: M,
    private readonly handlers: EventHandlers<E, M>,
  ) {}

  emit(e: E): void {
    const h = this.handlers[e.type as E['type']] as EventHandler<E, M>;
    h.record?.(e, this.metrics);
    const level = typeof h.level === 'function' ? h.level(e) : h.level;
    if (this.log.isLevelEnabled(level)) this.log[level](e as object, typeof h.message === 'function' ? h.message(e) : h.message);
  }
}

// ── workers (handlers: workers/worker-events.ts, beside the worker's metrics) ─────────────────────────────────────

/** A batch's effects are durable and its message is deleted. */
export interface BatchDelivered {
  type: 'BatchDelivered';
  messageId: string;
  receiveCount: number;
  batchKey: string;
  rows: number;
  counted: number;
  duplicates: number;
  points: number;
  /** From receipt to outcome. */
  seconds: number;
  /** Events set aside in the quarantine, by reason (absent when none). */
  quarantined?: Record<string, number>;
  /** Points InfluxDB refused, by reason (absent when none). */
  refusedPoints?: Record<string, number>;
}

/** A batch released to the queue for a later retry (a dependency failed, or the worker is stopping). */
export interface BatchRetried {
  type: 'BatchRetried';
  messageId: string;
  receiveCount: number;
  code: string;
  err: string;
  delaySeconds: number;
  seconds: number;
}

/** A batch that can never be processed, dead-lettered with its reason and deleted from the batch queue. */
export interface BatchRejected {
  type: 'BatchRejected';
  messageId: string;
  receiveCount: number;
  code: string;
  err: string;
  seconds: number;
}

export type WorkerEvent = BatchDelivered | BatchRetried | BatchRejected;

// ── fleet (handlers: workers/fleet/fleet-events.ts, beside the fleet's metrics) ──────────────────────────────────

/** The fleet's intended size changed. */
export interface FleetScaled {
  type: 'FleetScaled';
  direction: 'up' | 'down';
  from: number;
  to: number;
  desired: number;
  visible: number;
  inFlight: number;
  /** Age of the oldest message the decision saw, in seconds (absent when unknown). */
  oldestAgeSeconds?: number;
  /** The signal that drove the decision: queue depth, oldest message age, or the min/max bounds. */
  signal: 'depth' | 'age' | 'bounds';
  reason: string;
}

/** A poll that left the intended size as it was. */
export interface FleetSizeKept {
  type: 'FleetSizeKept';
  workers: number;
  desired: number;
  visible: number;
  inFlight: number;
  oldestAgeSeconds?: number;
  signal: 'depth' | 'age' | 'bounds';
  reason: string;
}

export type FleetScalingEvent = FleetScaled | FleetSizeKept;
