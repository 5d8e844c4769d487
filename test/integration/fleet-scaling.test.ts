// The fleet supervisor as a real process (`sluice fleet`) over real workers, SQS, S3, Redis and InfluxDB: it replaces
// a crashed worker, scales up to its maximum under a flood of batches, drains back to its minimum one worker per
// cooldown without flapping or killing anyone, and every event sent is counted exactly once in InfluxDB. It also
// scales up when batches have waited in the queue longer than SLUICE_FLEET_MAX_AGE, although their number alone
// would not ask for another worker.
import { afterEach, describe, expect, it } from 'vitest';
import { MEASUREMENT_1M } from '../../shared/contracts/influx-series.js';
import { createInflux } from '../../shared/clients/influx.js';
import type { FleetEvent, FleetWorkerInfo } from '../../workers/fleet/history.js';
import { testConfig } from '../support/config.js';
import { startProcess, type ChildService } from '../support/processes.js';
import { sleep } from '../../shared/retry.js';
import {
  FAST_WORKER_ENV,
  metricValue,
  metricValueOrZero,
  pastHour,
  queueDepth,
  randomEvents,
  sendManifests,
  uploadBatches,
  waitUntil,
} from '../support/batches.js';

interface FleetStatus {
  desired: number;
  target: number;
  workers: FleetWorkerInfo[];
  events: FleetEvent[];
}

const running: ChildService[] = [];
/** Continues a worker a test paused (SIGSTOP); a no-op once called, or when none is paused. */
let resume = () => {};
afterEach(async () => {
  resume();
  await Promise.all(running.splice(0).map((s) => s.kill('SIGTERM')));
});

const COOLDOWN_MS = 1_500;
const MAX = 3;
const BATCHES = 24;
const EVENTS_PER_BATCH = 2_000;

const alive = (pid: number | undefined) => {
  try {
    process.kill(pid!, 0);
    return true;
  } catch {
    return false;
  }
};

describe('sluice fleet', () => {
  it('replaces a crashed worker, scales up to max under a flood, drains back to min, and counts every event once', async () => {
    const cfg = await testConfig({
      ...FAST_WORKER_ENV,
      SLUICE_WORKER_CONCURRENCY: '1',
      SLUICE_FLEET_MIN: '1',
      SLUICE_FLEET_MAX: String(MAX),
      SLUICE_FLEET_TARGET_PER_WORKER: '2',
      // The depth alone drives this test; the age of the oldest message has its own below.
      SLUICE_FLEET_MAX_AGE: '0',
      SLUICE_FLEET_COOLDOWN: `${COOLDOWN_MS}ms`,
      SLUICE_FLEET_POLL_INTERVAL: '300ms',
      SLUICE_FLEET_DRAIN_GRACE: '30s',
      SLUICE_FLEET_PORT: '0',
    });
    const fleet = await startProcess('fleet', cfg.env);
    running.push(fleet);
    const status = async (): Promise<FleetStatus> => (await fetch(`${fleet.url}/v1/fleet`)).json() as Promise<FleetStatus>;
    const runningWorkers = (s: FleetStatus) => s.workers.filter((w) => w.state === 'running');

    // At rest: the minimum. A worker that dies unasked is replaced, and that is not a scaling decision.
    const first = runningWorkers(await status());
    expect(first).toHaveLength(1);
    process.kill(first[0]!.pid!, 'SIGKILL');
    await waitUntil('the crashed worker replaced', async () => {
      const s = runningWorkers(await status());
      return s.length === 1 && s[0]!.pid !== first[0]!.pid;
    });
    expect(await metricValue(fleet.url, 'sluice_fleet_worker_restarts_total')).toBe(1);

    // Flood: all batches uploaded first, then their manifests sent at once.
    const start = pastHour();
    const bodies: string[] = [];
    for (let i = 0; i < BATCHES; i++) {
      const [b] = await uploadBatches(cfg, randomEvents(EVENTS_PER_BATCH, { start, minutes: 30, entities: 50, idPrefix: `b${i}` }));
      bodies.push(b!.body);
    }
    let maxRunning = 0;
    let maxSeen = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const s = await status();
        maxRunning = Math.max(maxRunning, runningWorkers(s).length);
        maxSeen = Math.max(maxSeen, s.workers.length);
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    // The running worker is paused while the fleet grows: one worker alone can drain the flood before a new worker
    // process has started (seconds on a loaded machine), and the fleet would rightly never reach its maximum. A paused
    // worker is still a running process; a batch it held goes back to the queue after the visibility timeout and is
    // counted once either way (per-batch idempotency), which the exact counts below check.
    const paused = runningWorkers(await status())[0]!.pid!;
    process.kill(paused, 'SIGSTOP');
    resume = () => {
      resume = () => {};
      if (alive(paused)) process.kill(paused, 'SIGCONT');
    };
    await sendManifests(cfg, bodies);

    try {
      await waitUntil('the fleet at its maximum', async () => runningWorkers(await status()).length === MAX, 90_000);
      resume();
      await waitUntil('the queue drained', async () => (await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)) === 0, 90_000);
      await waitUntil('the fleet back at its minimum', async () => (await status()).workers.length === 1, 60_000);
    } finally {
      sampling = false;
      // A failed sample leaves the maxima short, which the assertions below report.
      await sampler.catch(() => undefined);
    }

    expect(maxRunning).toBe(MAX);
    expect(maxSeen).toBeLessThanOrEqual(MAX);
    const s = await status();
    expect(s.desired).toBe(1);
    const scales = s.events.filter((e): e is Extract<FleetEvent, { kind: 'scale' }> => e.kind === 'scale');
    const ups = scales.filter((e) => e.direction === 'up');
    const downs = scales.filter((e) => e.direction === 'down');
    // No flapping: every step up comes before every step down; down goes one worker at a time, a cooldown apart.
    expect(scales.map((e) => e.direction)).toEqual([...ups.map(() => 'up'), ...downs.map(() => 'down')]);
    expect(ups.at(-1)!.to).toBe(MAX);
    for (const e of ups) expect(e.signal).toBe('depth');
    expect(downs.map((e) => [e.from, e.to])).toEqual([
      [3, 2],
      [2, 1],
    ]);
    expect(Date.parse(downs[1]!.at) - Date.parse(downs[0]!.at)).toBeGreaterThanOrEqual(COOLDOWN_MS);
    // Drained workers exited by themselves (code 0), none was killed.
    const drained = s.events.filter((e): e is Extract<FleetEvent, { kind: 'exited' }> => e.kind === 'exited' && e.drained);
    expect(drained).toHaveLength(2);
    for (const e of drained) expect(e).toMatchObject({ code: 0, signal: null });
    expect(await metricValue(fleet.url, 'sluice_fleet_worker_kills_total')).toBe(0);
    expect(await metricValue(fleet.url, 'sluice_fleet_scale_events_total', 'direction="down"')).toBe(2);
    expect(await metricValue(fleet.url, 'sluice_fleet_workers', 'state="running"')).toBe(1);

    // Exact counts: every event counted once, whichever worker took its batch.
    const [row] = await createInflux(cfg).query<{ sum: number }>(`SELECT sum("count") FROM ${MEASUREMENT_1M}`);
    expect(row?.sum).toBe(BATCHES * EVENTS_PER_BATCH);

    // Stopping the fleet drains its last worker and exits cleanly.
    const lastPid = runningWorkers(s)[0]!.pid;
    running.splice(0);
    expect(await fleet.kill('SIGTERM')).toBe(0);
    expect(alive(lastPid)).toBe(false);
  }, 300_000);

  it('scales up when batches are older than SLUICE_FLEET_MAX_AGE although the depth alone would not', async () => {
    const MAX_AGE_MS = 1_000;
    const AGED_BATCHES = 12;
    const cfg = await testConfig({
      ...FAST_WORKER_ENV,
      SLUICE_WORKER_CONCURRENCY: '1',
      SLUICE_FLEET_MIN: '1',
      SLUICE_FLEET_MAX: String(MAX),
      // However many batches this test sends, the depth asks for one worker.
      SLUICE_FLEET_TARGET_PER_WORKER: '1000',
      SLUICE_FLEET_MAX_AGE: `${MAX_AGE_MS}ms`,
      SLUICE_FLEET_COOLDOWN: `${COOLDOWN_MS}ms`,
      SLUICE_FLEET_POLL_INTERVAL: '300ms',
      SLUICE_FLEET_DRAIN_GRACE: '30s',
      SLUICE_FLEET_PORT: '0',
    });

    // The manifests wait in the real queue before any worker runs, so each is older than the target when received.
    const start = pastHour();
    const bodies: string[] = [];
    for (let i = 0; i < AGED_BATCHES; i++) {
      const [b] = await uploadBatches(cfg, randomEvents(EVENTS_PER_BATCH, { start, minutes: 30, entities: 50, idPrefix: `a${i}` }));
      bodies.push(b!.body);
    }
    await sendManifests(cfg, bodies);
    await sleep(2 * MAX_AGE_MS);

    const fleet = await startProcess('fleet', cfg.env);
    running.push(fleet);
    const status = async (): Promise<FleetStatus> => (await fetch(`${fleet.url}/v1/fleet`)).json() as Promise<FleetStatus>;
    let maxAgeSeen = 0;
    let maxWorkers = 0;
    let maxDepth = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const s = await status();
        maxWorkers = Math.max(maxWorkers, s.workers.length);
        maxAgeSeen = Math.max(maxAgeSeen, await metricValueOrZero(fleet.url, 'sluice_queue_oldest_message_age_seconds'));
        maxDepth = Math.max(maxDepth, await metricValueOrZero(fleet.url, 'sluice_queue_messages', 'queue="batches",state="visible"'));
        await sleep(150);
      }
    })();

    const scaleUps = (s: FleetStatus) => s.events.filter((e): e is Extract<FleetEvent, { kind: 'scale' }> => e.kind === 'scale' && e.direction === 'up');
    try {
      await waitUntil('a scale-up on the oldest message age', async () => scaleUps(await status()).length > 0, 60_000);
      await waitUntil('the queue drained', async () => (await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)) === 0, 60_000);
      await waitUntil('the fleet back at its minimum', async () => (await status()).workers.length === 1, 30_000);
    } finally {
      sampling = false;
      // A failed sample leaves the maxima short, which the assertions below report.
      await sampler.catch(() => undefined);
    }

    const s = await status();
    const ups = scaleUps(s);
    expect(ups.length).toBeGreaterThan(0);
    for (const e of ups) {
      expect(e).toMatchObject({ signal: 'age', from: expect.any(Number), to: expect.any(Number) });
      expect(e.reason).toMatch(/^oldest message [\d.]+s old \(target 1s\) wants \d+ worker\(s\)/);
    }
    expect(ups[0]!.from).toBe(1);
    expect(ups.at(-1)!.to).toBeGreaterThan(1);
    expect(maxWorkers).toBeLessThanOrEqual(MAX);
    // Batches were seen waiting, but never more than ceil(12 / 1000) = 1 worker's worth; the age the fleet scaled
    // on is the one it exports.
    expect(maxDepth).toBeGreaterThan(0);
    expect(maxDepth).toBeLessThanOrEqual(AGED_BATCHES);
    expect(maxAgeSeen).toBeGreaterThan(MAX_AGE_MS / 1000);
    expect(await metricValue(fleet.url, 'sluice_fleet_scale_events_total', 'direction="up",signal="age"')).toBe(ups.length);
    expect(await metricValueOrZero(fleet.url, 'sluice_fleet_scale_events_total', 'direction="up",signal="depth"')).toBe(0);
    // Once the old batches are done the age no longer holds the extra workers: they drain one per cooldown.
    const downs = s.events.filter((e): e is Extract<FleetEvent, { kind: 'scale' }> => e.kind === 'scale' && e.direction === 'down');
    expect(downs.map((e) => e.to)).toEqual(downs.map((e) => e.from - 1));
    expect(downs.at(-1)!.to).toBe(1);

    const [row] = await createInflux(cfg).query<{ sum: number }>(`SELECT sum("count") FROM ${MEASUREMENT_1M}`);
    expect(row?.sum).toBe(AGED_BATCHES * EVENTS_PER_BATCH);
  }, 240_000);
});
