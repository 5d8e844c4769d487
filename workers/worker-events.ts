// The worker's batch outcomes as typed pipeline events (shared/pipeline-events.ts): each batch ends in exactly one of
// BatchDelivered / BatchRetried / BatchRejected, and its log line and metric updates (batches by outcome, duration,
// events, points, duplicates, quarantine and refused points, dead letters) are derived here, in one place.
import { type EventHandlers, PipelineEvents, type WorkerEvent } from '../shared/pipeline-events.js';
import type { Logger } from '../shared/logger.js';
import type { DurableBatch, Outcome } from './outcome.js';
import type { WorkerMetrics } from './worker-metrics.js';

function addAll(counts: Record<string, number> | undefined, inc: (reason: string, n: number) => void): void {
  if (counts) for (const reason in counts) inc(reason, counts[reason]!);
}

const WORKER_HANDLERS: EventHandlers<WorkerEvent, WorkerMetrics> = {
  BatchDelivered: {
    level: 'info',
    message: 'batch delivered',
    record: (e, m) => {
      m.batches.inc({ outcome: 'delivered' });
      m.batchSeconds.observe({ outcome: 'delivered' }, e.seconds);
      m.events.inc(e.counted);
      m.points.inc(e.points);
      m.duplicates.inc(e.duplicates);
      addAll(e.quarantined, (reason, n) => m.quarantinedEvents.inc({ reason }, n));
      addAll(e.refusedPoints, (reason, n) => m.influxRejectedPoints.inc({ reason }, n));
    },
  },
  BatchRetried: {
    level: 'warn',
    message: 'batch released for a later retry',
    record: (e, m) => {
      m.batches.inc({ outcome: 'retry' });
      m.batchSeconds.observe({ outcome: 'retry' }, e.seconds);
    },
  },
  BatchRejected: {
    level: 'error',
    message: 'batch rejected and dead-lettered',
    record: (e, m) => {
      m.batches.inc({ outcome: 'rejected' });
      m.batchSeconds.observe({ outcome: 'rejected' }, e.seconds);
      m.deadLetters.inc({ reason: e.code });
    },
  },
};

export type WorkerEvents = PipelineEvents<WorkerEvent, WorkerMetrics>;

/** The emitter of a worker's batch outcomes, updating `metrics`. */
export function workerEvents(log: Logger, metrics: WorkerMetrics): WorkerEvents {
  return new PipelineEvents(log, metrics, WORKER_HANDLERS);
}

/** A map of counts by reason as a plain record, or undefined when empty (so a clean batch's log line stays short). */
function record(counts: Map<string, number>): Record<string, number> | undefined {
  return counts.size ? Object.fromEntries(counts) : undefined;
}

/** The one event of a batch that ended in `outcome` after `seconds`. */
export function outcomeEvent(outcome: Outcome, message: { messageId: string; receiveCount: number }, seconds: number): WorkerEvent {
  const { messageId, receiveCount } = message;
  if (outcome.kind === 'delivered') {
    const { stats, setAside }: DurableBatch = outcome;
    const quarantined = record(setAside.events);
    const refusedPoints = record(setAside.rejectedPoints);
    return {
      type: 'BatchDelivered',
      messageId,
      receiveCount,
      ...stats,
      seconds,
      ...(quarantined ? { quarantined } : {}),
      ...(refusedPoints ? { refusedPoints } : {}),
    };
  }
  const common = { messageId, receiveCount, code: outcome.error.code, err: outcome.error.message, seconds };
  return outcome.kind === 'rejected' ? { type: 'BatchRejected', ...common } : { type: 'BatchRetried', ...common, delaySeconds: outcome.delaySeconds };
}
