// Typed pipeline events: one emit gives the log line and the metric updates, under the metric names dashboards read.
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { createRegistry } from '../../shared/metrics.js';
import { ingestEvents } from '../../ingest/ingest-events.js';

function setup(level = 'debug') {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const log = pino({ level }, sink);
  const registry = createRegistry('ingest');
  return { events: ingestEvents(log, registry), registry, lines };
}

async function value(registry: ReturnType<typeof createRegistry>, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`metric ${name} is not registered`);
  const { values } = await metric.get();
  const hit = values.find((v) => Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x));
  return hit?.value;
}

describe('pipeline events', () => {
  it('derives the request metrics and the log line from one RequestAccepted', async () => {
    const { events, registry, lines } = setup();
    events.emit({ type: 'RequestAccepted', producer: 'web', accepted: 5, duplicates: 2, rejected: 1, seconds: 0.002 });
    expect(await value(registry, 'sluice_ingest_requests_total', { status: '202' })).toBe(1);
    expect(await value(registry, 'sluice_ingest_ack_seconds', { le: '0.0025' })).toBe(1);
    expect(await value(registry, 'sluice_ingest_events_total', { outcome: 'accepted', producer: 'web' })).toBe(5);
    expect(await value(registry, 'sluice_ingest_events_total', { outcome: 'duplicate', producer: 'web' })).toBe(2);
    expect(await value(registry, 'sluice_ingest_events_total', { outcome: 'rejected', producer: 'web' })).toBe(1);
    expect(lines).toEqual([expect.objectContaining({ level: 20, type: 'RequestAccepted', producer: 'web', accepted: 5, msg: 'request accepted' })]);
  });

  it('registers every metric at creation, so a scrape sees it before the first event', async () => {
    const { registry } = setup();
    for (const name of ['sluice_ingest_delivery_failures_total', 'sluice_ingest_segments_delivered_total', 'sluice_ingest_wal_bytes_total'])
      expect(await value(registry, name)).toBe(0);
  });

  it('times refusals only after authentication, and logs a failed request as an error', async () => {
    const { events, registry, lines } = setup();
    events.emit({ type: 'RequestRefused', status: 401, producer: undefined, error: 'missing Authorization header', seconds: undefined });
    events.emit({ type: 'RequestRefused', status: 503, producer: 'web', error: 'WAL write failed', seconds: 0.01, err: new Error('disk full') });
    expect(await value(registry, 'sluice_ingest_requests_total', { status: '401' })).toBe(1);
    expect(await value(registry, 'sluice_ingest_requests_total', { status: '503' })).toBe(1);
    expect(await value(registry, 'sluice_ingest_ack_seconds', { le: '+Inf' })).toBe(1);
    expect(lines.map((l) => l.level)).toEqual([20, 50]);
    expect(lines[1]).toMatchObject({ err: { message: 'disk full' } });
  });

  it('counts a segment quarantine once although every attempt logs it', async () => {
    const { events, registry, lines } = setup('info');
    const e = {
      type: 'SegmentQuarantined',
      segment: 's1',
      quarantined: 3,
      delivered: 7,
      reasons: { json: 2, field: 1 },
      firstReason: 'json',
      object: 's3://b/k',
    } as const;
    events.emit({ ...e, repeated: false });
    events.emit({ ...e, repeated: true });
    expect(await value(registry, 'sluice_ingest_quarantined_events_total', { reason: 'json' })).toBe(2);
    expect(await value(registry, 'sluice_ingest_quarantined_events_total', { reason: 'field' })).toBe(1);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 40, segment: 's1', reasons: { json: 2, field: 1 } });
    expect(lines[0]!.msg).toMatch(/quarantined 3 line\(s\) of WAL segment s1 \(first reason: json\); its other 7 event\(s\) are delivered/);
  });

  it('skips debug lines below the log level but still updates the metrics', async () => {
    const { events, registry, lines } = setup('info');
    events.emit({ type: 'WalCommitted', bytes: 100, requests: 3, fsyncSeconds: 0.001 });
    expect(await value(registry, 'sluice_ingest_wal_bytes_total')).toBe(100);
    expect(lines).toEqual([]);
  });
});
