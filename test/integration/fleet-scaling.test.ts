// The fleet supervisor as a real process (`sluice fleet`) over real workers, SQS, S3, Redis and InfluxDB: it replaces
// a crashed worker, scales up to its maximum under a flood of batches, drains back to its minimum one worker per
// cooldown without flapping or killing anyone, and every event sent is counted exactly once in InfluxDB.
import { afterEach, describe, expect, it } from 'vitest';
import { MEASUREMENT_1M } from '../../shared/contracts/influx-series.js';
import { createInflux } from '../../shared/clients/influx.js';
import type { FleetEvent, FleetWorkerInfo } from '../../workers/fleet/history.js';
import { testConfig } from '../support/config.js';
import { startProcess, type ChildService } from '../support/processes.js';
import { FAST_WORKER_ENV, metricValue, pastHour, queueDepth, randomEvents, sendManifests, uploadBatches, waitUntil } from '../support/batches.js';

interface FleetStatus {
  desired: number;
  target: number;
  workers: FleetWorkerInfo[];
  events: FleetEvent[];
}

const running: ChildService[] = [];
afterEach(async () => {
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
    await sendManifests(cfg, bodies);

    await waitUntil('the fleet at its maximum', async () => runningWorkers(await status()).length === MAX, 30_000);
    await waitUntil('the queue drained', async () => (await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)) === 0, 60_000);
    await waitUntil('the fleet back at its minimum', async () => (await status()).workers.length === 1, 30_000);
    sampling = false;
    await sampler;

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
  });
});
