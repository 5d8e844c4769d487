// The fleet's scaling policy: KEDA's formulas clamped to [min, max] — the depth (aws-sqs-queue) and the oldest
// message's age (Prometheus, metricType Value), the larger wins — immediate scale-up, and a scale-down that waits a
// whole cooldown of low demand, steps by one, never happens while the oldest message is over its target, and never
// oscillates on a wobbling queue.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config.js';
import {
  ageWants,
  decideScale,
  desiredWorkers,
  type FleetSize,
  type QueueSignals,
  type ScalingOptions,
  type ScalingState,
} from '../../workers/fleet/scaling-policy.js';

const opts: ScalingOptions = { min: 1, max: 6, targetPerWorker: 4, cooldownMs: 60_000, maxAgeMs: 60_000 };
const q = (visible: number, inFlight = 0, oldestAgeSeconds?: number): QueueSignals => ({
  visible,
  inFlight,
  ...(oldestAgeSeconds !== undefined ? { oldestAgeSeconds } : {}),
});
const fleet = (active: number, ready = active, draining = false): FleetSize => ({ active, ready, draining });

/** Runs the policy every 5 s from 0 to `to` with the queue given per instant; returns the decisions that moved. */
function run(workers: number, queueAt: (t: number) => QueueSignals, to: number, o = opts) {
  let state: ScalingState = {};
  const moves: { t: number; direction: string; to: number; signal: string }[] = [];
  for (let t = 0; t <= to; t += 5_000) {
    const d = decideScale(fleet(workers), queueAt(t), t, state, o);
    state = d.state;
    if (d.direction !== 'none') moves.push({ t, direction: d.direction, to: d.target, signal: d.signal });
    workers = d.target;
  }
  return { moves, workers };
}

describe('desiredWorkers', () => {
  it('is ceil((visible + inFlight) / target), clamped to [min, max]', () => {
    expect(desiredWorkers(q(0), opts)).toBe(1);
    expect(desiredWorkers(q(4), opts)).toBe(1);
    expect(desiredWorkers(q(5), opts)).toBe(2);
    expect(desiredWorkers(q(3, 6), opts)).toBe(3);
    expect(desiredWorkers(q(0, 9), opts)).toBe(3);
    expect(desiredWorkers(q(10_000, 5), opts)).toBe(6);
    expect(desiredWorkers(q(0), { ...opts, min: 0 })).toBe(0);
  });
});

describe('ageWants', () => {
  it("is the HPA's rule for a Value target: ceil(ready × age / target), ceil(age / target) from zero replicas", () => {
    expect(ageWants(fleet(2), q(1, 0, 90), opts)).toBe(3);
    expect(ageWants(fleet(4), q(1, 0, 30), opts)).toBe(2);
    expect(ageWants(fleet(3), q(1, 0, 60), opts)).toBe(3);
    expect(ageWants(fleet(1), q(1, 0, 0), opts)).toBe(0);
    expect(ageWants(fleet(0), q(1, 0, 130), opts)).toBe(3);
  });

  it('asks for at least the active workers while the age is over its target, even if some are still starting', () => {
    expect(ageWants(fleet(4, 1), q(0, 1, 90), opts)).toBe(4);
    expect(ageWants(fleet(4, 1), q(0, 1, 30), opts)).toBe(1);
  });

  it('asks nothing when the age is unknown or the rule is off', () => {
    expect(ageWants(fleet(2), q(1), opts)).toBeUndefined();
    expect(ageWants(fleet(2), q(1, 0, Number.NaN), opts)).toBeUndefined();
    expect(ageWants(fleet(2), q(1, 0, 900), { ...opts, maxAgeMs: 0 })).toBeUndefined();
  });
});

describe('decideScale on depth', () => {
  it('scales up at once to what the queue asks for', () => {
    const d = decideScale(fleet(1), q(17, 3), 0, {}, opts);
    expect(d).toMatchObject({ desired: 5, target: 5, direction: 'up', signal: 'depth', reason: '20 message(s) want 5 worker(s), 1 active' });
  });

  it('restores the minimum even with an empty queue, naming the bounds as the cause', () => {
    expect(decideScale(fleet(0), q(0), 0, {}, opts)).toMatchObject({ target: 1, direction: 'up', signal: 'bounds' });
  });

  it('scales down only after a whole cooldown of low demand, one worker per cooldown', () => {
    const { moves } = run(4, () => q(0), 400_000);
    expect(moves).toEqual([
      { t: 60_000, direction: 'down', to: 3, signal: 'depth' },
      { t: 120_000, direction: 'down', to: 2, signal: 'depth' },
      { t: 180_000, direction: 'down', to: 1, signal: 'depth' },
    ]);
  });

  it('restarts the cooldown whenever demand comes back, so a wobbling queue never flaps', () => {
    // demand alternates: 30 s low (wants 1), then one sample that wants all 3 workers again
    const { moves, workers } = run(3, (t) => (t % 35_000 === 30_000 ? q(12) : q(1)), 600_000);
    expect(moves).toEqual([]);
    expect(workers).toBe(3);
  });

  it('takes no further step down while a worker is still draining', () => {
    const d = decideScale(fleet(3, 3, true), q(0), 1_000_000, { lowSinceMs: 0 }, opts);
    expect(d).toMatchObject({ target: 3, direction: 'none' });
    expect(d.state.lowSinceMs).toBe(0);
    expect(decideScale(fleet(3), q(0), 1_000_000, d.state, opts)).toMatchObject({ target: 2, direction: 'down' });
  });

  it('keeps the fleet as it is when the queue matches it', () => {
    expect(decideScale(fleet(2), q(5, 2), 0, { lowSinceMs: 0 }, opts)).toEqual({
      desired: 2,
      target: 2,
      direction: 'none',
      signal: 'depth',
      reason: 'queue matches the fleet',
      state: {},
    });
  });

  it('never exceeds the maximum, and comes back under it one step at a time', () => {
    expect(decideScale(fleet(6), q(1_000), 0, {}, opts)).toMatchObject({ target: 6, direction: 'none' });
    expect(decideScale(fleet(8), q(1_000), 0, {}, opts)).toMatchObject({ target: 7, direction: 'down', signal: 'bounds' });
  });
});

describe('decideScale on the oldest message age', () => {
  it('scales up when the oldest message is over its target although the depth wants no more workers', () => {
    const d = decideScale(fleet(2), q(1, 1, 90), 0, {}, opts);
    expect(desiredWorkers(q(1, 1), opts)).toBe(1);
    expect(d).toMatchObject({ desired: 3, target: 3, direction: 'up', signal: 'age', state: {} });
    expect(d.reason).toBe('oldest message 90s old (target 60s) wants 3 worker(s), 2 active');
  });

  it('is driven by the depth when the depth asks for more than the age', () => {
    expect(decideScale(fleet(2), q(20, 0, 90), 0, {}, opts)).toMatchObject({ desired: 5, direction: 'up', signal: 'depth' });
  });

  it('does not scale up while the oldest message is younger than its target', () => {
    expect(decideScale(fleet(2), q(1, 1, 59), 0, {}, opts)).toMatchObject({ desired: 2, target: 2, direction: 'none' });
  });

  it('clamps to the maximum however old the oldest message is', () => {
    const d = decideScale(fleet(2), q(1, 0, 600), 0, {}, opts);
    expect(d).toMatchObject({ desired: 6, target: 6, direction: 'up', signal: 'age' });
    expect(d.reason).toMatch(/wants 20 worker\(s\) \(capped at 6\)/);
    expect(decideScale(fleet(6), q(1, 0, 600), 0, {}, opts)).toMatchObject({ target: 6, direction: 'none', signal: 'age' });
  });

  it('never scales down while the oldest message is over its target, however low the depth, and cools down after', () => {
    // At the maximum with an empty-looking queue: the age alone holds the fleet for as long as it stays over target.
    const old = run(6, (t) => (t < 300_000 ? q(0, 1, 61) : q(0)), 500_000);
    expect(old.moves[0]).toEqual({ t: 360_000, direction: 'down', to: 5, signal: 'depth' });
    expect(old.moves.every((m) => m.direction === 'down' && m.t >= 360_000)).toBe(true);
    // Workers still starting do not open a way down either.
    expect(decideScale(fleet(4, 1), q(0, 1, 90), 1_000_000, { lowSinceMs: 0 }, opts)).toMatchObject({ target: 4, direction: 'none', state: {} });
  });

  it('steps up again only once the workers it started are running', () => {
    // 1 ready of 3 active, age twice the target: ceil(1 × 2) = 2 < 3 active: hold (not down, not more).
    expect(decideScale(fleet(3, 1), q(0, 1, 120), 0, {}, opts)).toMatchObject({ target: 3, direction: 'none' });
    expect(decideScale(fleet(3, 3), q(0, 1, 120), 0, {}, opts)).toMatchObject({ target: 6, direction: 'up', signal: 'age' });
  });

  it('below its target still holds as many workers as keep the age there (proportionally), stepping down by cooldowns', () => {
    // 4 running at 45 s of a 60 s target: ceil(4 × 0.75) = 3, so one worker goes after a cooldown, then 3 hold.
    const { moves, workers } = run(4, () => q(1, 0, 45), 400_000);
    expect(moves).toEqual([{ t: 60_000, direction: 'down', to: 3, signal: 'age' }]);
    expect(workers).toBe(3);
  });

  it('rests on the depth alone when the age is unknown or the rule is off', () => {
    const depthOnly = run(4, () => q(1), 400_000);
    expect(run(4, () => q(1, 0, undefined), 400_000)).toEqual(depthOnly);
    expect(run(4, () => q(1, 0, 3_600), 400_000, { ...opts, maxAgeMs: 0 })).toEqual(depthOnly);
    expect(decideScale(fleet(1), q(1, 0, 3_600), 0, {}, { ...opts, maxAgeMs: 0 })).toMatchObject({ target: 1, direction: 'none', signal: 'depth' });
  });
});

describe('fleet settings', () => {
  it('refuse a minimum above the maximum, naming both', () => {
    expect(() => loadConfig({ SLUICE_FLEET_MIN: '5', SLUICE_FLEET_MAX: '2' })).toThrow(/SLUICE_FLEET_MIN must not exceed SLUICE_FLEET_MAX, got 5 > 2/);
    expect(loadConfig({ SLUICE_FLEET_MIN: '2', SLUICE_FLEET_MAX: '2' })).toMatchObject({
      SLUICE_FLEET_MIN: 2,
      SLUICE_FLEET_MAX: 2,
      SLUICE_FLEET_COOLDOWN: 60_000,
    });
  });

  it('take the oldest message target as a duration (1 minute by default, 0 = off) and name a bad one', () => {
    expect(loadConfig({}).SLUICE_FLEET_MAX_AGE).toBe(60_000);
    expect(loadConfig({ SLUICE_FLEET_MAX_AGE: '2m' }).SLUICE_FLEET_MAX_AGE).toBe(120_000);
    expect(loadConfig({ SLUICE_FLEET_MAX_AGE: '0' }).SLUICE_FLEET_MAX_AGE).toBe(0);
    expect(() => loadConfig({ SLUICE_FLEET_MAX_AGE: 'soon' })).toThrow(/SLUICE_FLEET_MAX_AGE must be a duration like 250ms, 10s, 5m, 2h or 7d, got "soon"/);
  });
});
