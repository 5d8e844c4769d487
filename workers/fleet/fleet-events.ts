// The fleet's scaling decisions as typed pipeline events (shared/pipeline-events.ts): FleetScaled when the intended
// size changes, FleetSizeKept when a poll leaves it; their log line (with the signal that drove the decision: depth,
// age or bounds) and metric updates (desired workers, scale events by direction and signal) are derived here.
import type { Logger } from '../../shared/logger.js';
import { type EventHandlers, type FleetScalingEvent, PipelineEvents } from '../../shared/pipeline-events.js';
import type { FleetMetrics } from './fleet-metrics.js';

const FLEET_HANDLERS: EventHandlers<FleetScalingEvent, FleetMetrics> = {
  FleetScaled: {
    level: 'info',
    message: (e) => `scaling ${e.direction} to ${e.to} worker(s)`,
    record: (e, m) => {
      m.desired.set(e.desired);
      m.scaleEvents.inc({ direction: e.direction, signal: e.signal });
    },
  },
  FleetSizeKept: { level: 'debug', message: 'fleet size unchanged', record: (e, m) => m.desired.set(e.desired) },
};

export type FleetEvents = PipelineEvents<FleetScalingEvent, FleetMetrics>;

/** The emitter of the fleet's scaling decisions, updating `metrics`. */
export function fleetEvents(log: Logger, metrics: FleetMetrics): FleetEvents {
  return new PipelineEvents(log, metrics, FLEET_HANDLERS);
}
