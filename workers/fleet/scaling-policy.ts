// How many worker processes the fleet should run, as a pure function of the queue and the fleet's recent past.
// Two signals, the larger wins: the depth (KEDA's aws-sqs-queue formula) and the age of the oldest message (KEDA's
// Prometheus trigger with metricType Value). Guarantees: never outside [min, max]; up at once to what the signals
// need; no step down while the oldest message is older than its target; down one worker at a time, and only after
// both signals have wanted fewer workers for a whole cooldown — so a queue that wobbles never makes it flap.

export interface ScalingOptions {
  min: number;
  max: number;
  /** Visible + in-flight messages one worker absorbs (KEDA aws-sqs-queue `queueLength`). */
  targetPerWorker: number;
  cooldownMs: number;
  /** SLUICE_FLEET_MAX_AGE: target age of the oldest message (the Prometheus trigger's `threshold`); 0 = depth only. */
  maxAgeMs: number;
}

export interface QueueDepth {
  visible: number;
  inFlight: number;
}

/** What the policy reads of the queue: its depth and, when known, the age of its oldest message. */
export interface QueueSignals extends QueueDepth {
  /** Seconds; undefined when no source reported it (then the decision rests on the depth alone). */
  oldestAgeSeconds?: number;
}

/** The fleet as the decision finds it. */
export interface FleetSize {
  /** Workers starting or running (not those already draining). */
  active: number;
  /** Workers running (ready); the age rule scales these, as the HPA scales ready pods. */
  ready: number;
  /** A scale-down is still in progress: no further step down is taken. */
  draining: boolean;
}

/** What the policy remembers between two decisions. */
export interface ScalingState {
  /** Since when (epoch ms) the signals have continuously wanted fewer workers than are active; undefined if not. */
  lowSinceMs?: number;
}

export type Direction = 'up' | 'down' | 'none';

/** Which signal drove a decision: the queue depth, the oldest message's age, or the min/max bounds themselves. */
export type ScalingSignal = 'depth' | 'age' | 'bounds';

export interface ScalingDecision {
  /** clamp(max(depth wants, age wants), min, max): what the queue asks for right now. */
  desired: number;
  /** Workers to run after this decision. */
  target: number;
  direction: Direction;
  signal: ScalingSignal;
  reason: string;
  state: ScalingState;
}

const clamp = (n: number, opts: ScalingOptions) => Math.min(opts.max, Math.max(opts.min, n));

/** Workers the depth asks for, before the bounds: ceil((visible + inFlight) / queueLength). */
function depthWants(depth: QueueDepth, opts: ScalingOptions): number {
  return Math.ceil(Math.max(0, depth.visible + depth.inFlight) / opts.targetPerWorker);
}

/** KEDA's aws-sqs-queue formula with scaleOnInFlight: ceil((visible + inFlight) / queueLength), clamped. */
export function desiredWorkers(depth: QueueDepth, opts: ScalingOptions): number {
  return clamp(depthWants(depth, opts), opts);
}

/**
 * Workers the oldest message's age asks for, before the bounds, or undefined when the rule is off or the age unknown.
 * The HPA's rule for a Value target: ceil(ready × age / target) (ceil(age / target) from zero replicas). While the
 * age is above its target it asks for at least the active workers, so workers still starting never let it shrink.
 */
export function ageWants(fleet: FleetSize, queue: QueueSignals, opts: ScalingOptions): number | undefined {
  const age = queue.oldestAgeSeconds;
  if (opts.maxAgeMs <= 0 || age === undefined || !Number.isFinite(age)) return undefined;
  const ratio = Math.max(0, age) / (opts.maxAgeMs / 1000);
  const wanted = Math.ceil((fleet.active === 0 ? 1 : fleet.ready) * ratio);
  return ratio > 1 ? Math.max(wanted, fleet.active) : wanted;
}

const secs = (ms: number) => `${Math.round(ms / 100) / 10}s`;

/** Decides the next worker count from the queue's depth and oldest message. */
export function decideScale(fleet: FleetSize, queue: QueueSignals, nowMs: number, state: ScalingState, opts: ScalingOptions): ScalingDecision {
  const { active, draining } = fleet;
  const byDepth = depthWants(queue, opts);
  const byAge = ageWants(fleet, queue, opts);
  const wanted = Math.max(byDepth, byAge ?? 0);
  const desired = clamp(wanted, opts);
  const signal: ScalingSignal = byAge !== undefined && byAge > byDepth ? 'age' : 'depth';
  const messages = queue.visible + queue.inFlight;
  const why =
    signal === 'age'
      ? `oldest message ${secs(queue.oldestAgeSeconds! * 1000)} old (target ${secs(opts.maxAgeMs)}) wants ${byAge} worker(s)`
      : `${messages} message(s) want ${byDepth} worker(s)`;
  const capped = wanted > opts.max ? ` (capped at ${opts.max})` : '';

  if (active < opts.min || desired > active) {
    const target = Math.max(desired, opts.min);
    if (wanted <= active) {
      return { desired, target, direction: 'up', signal: 'bounds', reason: `${active} active is below the minimum of ${opts.min}`, state: {} };
    }
    return { desired, target, direction: 'up', signal, reason: `${why}${capped}, ${active} active`, state: {} };
  }
  if (active > opts.max) {
    return {
      desired,
      target: active - 1,
      direction: 'down',
      signal: 'bounds',
      reason: `${active} active is above the maximum of ${opts.max}`,
      state: { lowSinceMs: nowMs },
    };
  }
  if (desired === active) {
    const reason = capped ? `${why}${capped}, the fleet is at its maximum` : signal === 'age' ? `${why}, as many as are active` : 'queue matches the fleet';
    return { desired, target: active, direction: 'none', signal, reason, state: {} };
  }
  // desired < active: wait for a whole cooldown of low demand, then step down by one and start a new cooldown.
  const lowSinceMs = state.lowSinceMs ?? nowMs;
  if (draining) return { desired, target: active, direction: 'none', signal, reason: 'a worker is still draining', state: { lowSinceMs } };
  const waited = nowMs - lowSinceMs;
  if (waited < opts.cooldownMs) {
    return {
      desired,
      target: active,
      direction: 'none',
      signal,
      reason: `queue wants ${desired} for ${waited} ms of the ${opts.cooldownMs} ms cooldown`,
      state: { lowSinceMs },
    };
  }
  return {
    desired,
    target: active - 1,
    direction: 'down',
    signal,
    reason: `the queue has wanted ${desired} worker(s) for ${waited} ms (${why}); stopping one of ${active}`,
    state: { lowSinceMs: nowMs },
  };
}
