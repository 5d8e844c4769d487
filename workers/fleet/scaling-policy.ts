// How many worker processes the fleet should run, as a pure function of the queue and the fleet's recent past.
// Guarantees: never outside [min, max]; up at once to what the queue needs; down one worker at a time, and only
// after the queue has wanted fewer workers for a whole cooldown — so a depth that wobbles never makes it flap.

export interface ScalingOptions {
  min: number;
  max: number;
  /** Visible + in-flight messages one worker absorbs (KEDA aws-sqs-queue `queueLength`). */
  targetPerWorker: number;
  cooldownMs: number;
}

export interface QueueDepth {
  visible: number;
  inFlight: number;
}

/** What the policy remembers between two decisions. */
export interface ScalingState {
  /** Since when (epoch ms) the queue has continuously wanted fewer workers than are active; undefined if it does not. */
  lowSinceMs?: number;
}

export type Direction = 'up' | 'down' | 'none';

export interface ScalingDecision {
  /** clamp(ceil((visible + inFlight) / targetPerWorker), min, max): what the queue asks for right now. */
  desired: number;
  /** Workers to run after this decision. */
  target: number;
  direction: Direction;
  reason: string;
  state: ScalingState;
}

/** KEDA's aws-sqs-queue formula with scaleOnInFlight: ceil((visible + inFlight) / queueLength), clamped. */
export function desiredWorkers(depth: QueueDepth, opts: ScalingOptions): number {
  const wanted = Math.ceil(Math.max(0, depth.visible + depth.inFlight) / opts.targetPerWorker);
  return Math.min(opts.max, Math.max(opts.min, wanted));
}

/**
 * Decides the next worker count. `active` counts workers starting or running (not those already draining);
 * `draining` tells whether a scale-down is still in progress, in which case no further step down is taken.
 */
export function decideScale(active: number, draining: boolean, depth: QueueDepth, nowMs: number, state: ScalingState, opts: ScalingOptions): ScalingDecision {
  const desired = desiredWorkers(depth, opts);
  const messages = depth.visible + depth.inFlight;
  if (active < opts.min || desired > active) {
    const target = Math.max(desired, opts.min);
    return { desired, target, direction: 'up', reason: `${messages} message(s) want ${desired} worker(s), ${active} active`, state: {} };
  }
  if (active > opts.max) {
    return { desired, target: active - 1, direction: 'down', reason: `${active} active is above the maximum of ${opts.max}`, state: { lowSinceMs: nowMs } };
  }
  if (desired === active) return { desired, target: active, direction: 'none', reason: 'queue matches the fleet', state: {} };
  // desired < active: wait for a whole cooldown of low demand, then step down by one and start a new cooldown.
  const lowSinceMs = state.lowSinceMs ?? nowMs;
  if (draining) return { desired, target: active, direction: 'none', reason: 'a worker is still draining', state: { lowSinceMs } };
  const waited = nowMs - lowSinceMs;
  if (waited < opts.cooldownMs) {
    return {
      desired,
      target: active,
      direction: 'none',
      reason: `queue wants ${desired} for ${waited} ms of the ${opts.cooldownMs} ms cooldown`,
      state: { lowSinceMs },
    };
  }
  return {
    desired,
    target: active - 1,
    direction: 'down',
    reason: `${messages} message(s) have wanted ${desired} worker(s) for ${waited} ms; stopping one of ${active}`,
    state: { lowSinceMs: nowMs },
  };
}
