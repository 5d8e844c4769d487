// The fleet's scaling policy: KEDA's formula clamped to [min, max], immediate scale-up, and a scale-down that
// waits a whole cooldown of low demand, steps by one, and never oscillates on a wobbling queue.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config.js';
import { decideScale, desiredWorkers, type ScalingOptions, type ScalingState } from '../../workers/fleet/scaling-policy.js';

const opts: ScalingOptions = { min: 1, max: 6, targetPerWorker: 4, cooldownMs: 60_000 };
const q = (visible: number, inFlight = 0) => ({ visible, inFlight });

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

describe('decideScale', () => {
  it('scales up at once to what the queue asks for', () => {
    const d = decideScale(1, false, q(17, 3), 0, {}, opts);
    expect(d).toMatchObject({ desired: 5, target: 5, direction: 'up' });
  });

  it('restores the minimum even with an empty queue', () => {
    expect(decideScale(0, false, q(0), 0, {}, opts)).toMatchObject({ target: 1, direction: 'up' });
  });

  it('scales down only after a whole cooldown of low demand, one worker per cooldown', () => {
    let state: ScalingState = {};
    let workers = 4;
    const steps: { t: number; to: number }[] = [];
    for (let t = 0; t <= 400_000; t += 5_000) {
      const d = decideScale(workers, false, q(0), t, state, opts);
      state = d.state;
      if (d.direction === 'down') {
        expect(d.target).toBe(workers - 1);
        steps.push({ t, to: d.target });
      }
      workers = d.target;
    }
    expect(steps).toEqual([
      { t: 60_000, to: 3 },
      { t: 120_000, to: 2 },
      { t: 180_000, to: 1 },
    ]);
  });

  it('restarts the cooldown whenever demand comes back, so a wobbling queue never flaps', () => {
    let state: ScalingState = {};
    let workers = 3;
    const directions: string[] = [];
    // demand alternates: 30 s low (wants 1), then one sample that wants all 3 workers again
    for (let t = 0; t <= 600_000; t += 5_000) {
      const depth = t % 35_000 === 30_000 ? q(12) : q(1);
      const d = decideScale(workers, false, depth, t, state, opts);
      state = d.state;
      if (d.direction !== 'none') directions.push(d.direction);
      workers = d.target;
    }
    expect(directions).toEqual([]);
    expect(workers).toBe(3);
  });

  it('takes no further step down while a worker is still draining', () => {
    const d = decideScale(3, true, q(0), 1_000_000, { lowSinceMs: 0 }, opts);
    expect(d).toMatchObject({ target: 3, direction: 'none' });
    expect(d.state.lowSinceMs).toBe(0);
    expect(decideScale(3, false, q(0), 1_000_000, d.state, opts)).toMatchObject({ target: 2, direction: 'down' });
  });

  it('keeps the fleet as it is when the queue matches it', () => {
    expect(decideScale(2, false, q(5, 2), 0, { lowSinceMs: 0 }, opts)).toEqual({
      desired: 2,
      target: 2,
      direction: 'none',
      reason: 'queue matches the fleet',
      state: {},
    });
  });

  it('never exceeds the maximum, and comes back under it one step at a time', () => {
    expect(decideScale(6, false, q(1_000), 0, {}, opts)).toMatchObject({ target: 6, direction: 'none' });
    expect(decideScale(8, false, q(1_000), 0, {}, opts)).toMatchObject({ target: 7, direction: 'down' });
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
});
