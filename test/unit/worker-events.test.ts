// The worker's batch outcomes and the fleet's scaling decisions as typed pipeline events: one emit per batch (or
// decision) gives both the log line and the metric updates, under the metric names dashboards and the fleet read.
// Also the InfluxDB write classifier the line-protocol client uses (status codes and client classes, never text).
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { PermanentError, TransientError, classifyInfluxError } from '../../shared/errors.js';
import { createRegistry } from '../../shared/metrics.js';
import { fleetEvents } from '../../workers/fleet/fleet-events.js';
import { FleetMetrics } from '../../workers/fleet/fleet-metrics.js';
import { outcomeEvent, workerEvents } from '../../workers/worker-events.js';
import { WorkerMetrics } from '../../workers/worker-metrics.js';

function logSink(level = 'debug') {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level }, sink), lines };
}

async function value(registry: ReturnType<typeof createRegistry>, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`metric ${name} is not registered`);
  const { values } = await metric.get();
  return values.find((v) => Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x))?.value;
}

const message = { messageId: 'm1', receiveCount: 2 };
const stats = { batchKey: 'raw/events/k.parquet', rows: 10, counted: 7, duplicates: 1, points: 4 };

describe('worker pipeline events', () => {
  it('derives a delivered batch log line and every counter from one BatchDelivered', async () => {
    const { log, lines } = logSink();
    const registry = createRegistry('worker');
    const events = workerEvents(log, new WorkerMetrics(registry));
    const setAside = { events: new Map([['control_character', 2]]), rejectedPoints: new Map([['series_limit', 1]]) };
    events.emit(outcomeEvent({ kind: 'delivered', stats, setAside }, message, 0.3));
    expect(await value(registry, 'sluice_worker_batches_total', { outcome: 'delivered' })).toBe(1);
    expect(await value(registry, 'sluice_worker_batch_duration_seconds', { outcome: 'delivered', le: '0.5' })).toBe(1);
    expect(await value(registry, 'sluice_worker_events_total')).toBe(7);
    expect(await value(registry, 'sluice_worker_influx_points_total')).toBe(4);
    expect(await value(registry, 'sluice_worker_duplicates_dropped_total')).toBe(1);
    expect(await value(registry, 'sluice_worker_quarantined_events_total', { reason: 'control_character' })).toBe(2);
    expect(await value(registry, 'sluice_worker_influx_rejected_points_total', { reason: 'series_limit' })).toBe(1);
    expect(lines).toEqual([expect.objectContaining({ level: 30, msg: 'batch delivered', type: 'BatchDelivered', messageId: 'm1', receiveCount: 2, ...stats })]);
    expect(lines[0]).toMatchObject({ quarantined: { control_character: 2 }, refusedPoints: { series_limit: 1 } });
  });

  it('keeps a clean batch line free of empty set-aside counts', () => {
    const e = outcomeEvent({ kind: 'delivered', stats, setAside: { events: new Map(), rejectedPoints: new Map() } }, message, 0.1);
    expect(e).not.toHaveProperty('quarantined');
    expect(e).not.toHaveProperty('refusedPoints');
  });

  it('counts a rejected batch as a dead letter by reason and a retried one by its outcome only', async () => {
    const { log, lines } = logSink();
    const registry = createRegistry('worker');
    const events = workerEvents(log, new WorkerMetrics(registry));
    events.emit(outcomeEvent({ kind: 'rejected', error: new PermanentError('bad', 'checksum_mismatch') }, message, 1));
    events.emit(outcomeEvent({ kind: 'retry', error: new TransientError('down', 'influx_unavailable'), delaySeconds: 30 }, message, 2));
    expect(await value(registry, 'sluice_worker_batches_total', { outcome: 'rejected' })).toBe(1);
    expect(await value(registry, 'sluice_worker_batches_total', { outcome: 'retry' })).toBe(1);
    expect(await value(registry, 'sluice_worker_dead_letters_total', { reason: 'checksum_mismatch' })).toBe(1);
    expect(lines.map((l) => [l.level, l.msg, l.code])).toEqual([
      [50, 'batch rejected and dead-lettered', 'checksum_mismatch'],
      [40, 'batch released for a later retry', 'influx_unavailable'],
    ]);
    expect(lines[1]).toMatchObject({ delaySeconds: 30, err: 'down' });
  });

  it('counts a fleet scaling decision by direction and logs it; an unchanged size only at debug', async () => {
    const { log, lines } = logSink('info');
    const registry = createRegistry('fleet');
    const events = fleetEvents(log, new FleetMetrics(registry));
    events.emit({ type: 'FleetScaled', direction: 'up', from: 1, to: 3, desired: 3, visible: 25, inFlight: 2, signal: 'age', reason: 'r' });
    events.emit({ type: 'FleetSizeKept', workers: 3, desired: 2, visible: 12, inFlight: 3, signal: 'depth', reason: 'cooldown' });
    expect(await value(registry, 'sluice_fleet_scale_events_total', { direction: 'up', signal: 'age' })).toBe(1);
    expect(await value(registry, 'sluice_fleet_desired_workers')).toBe(2);
    expect(lines).toEqual([expect.objectContaining({ level: 30, msg: 'scaling up to 3 worker(s)', from: 1, to: 3, visible: 25, signal: 'age' })]);
  });
});

describe('classifyInfluxError', () => {
  const http = (status: number) => Object.assign(new Error(`HTTP ${status}`), { res: { statusCode: status } });

  it('retries throttling, timeouts, 5xx and an unavailable client; never 401 or 404', () => {
    for (const s of [500, 503, 429, 408]) expect(classifyInfluxError(http(s))).toMatchObject({ retryable: true, code: 'influx_unavailable' });
    for (const s of [401, 403, 404]) expect(classifyInfluxError(http(s))).toMatchObject({ retryable: false, code: 'influx_rejected' });
    class ServiceNotAvailableError extends Error {}
    expect(classifyInfluxError(new ServiceNotAvailableError('all hosts down'))).toMatchObject({ retryable: true, code: 'influx_unavailable' });
    expect(classifyInfluxError(Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }))).toMatchObject({ retryable: true });
  });
});
