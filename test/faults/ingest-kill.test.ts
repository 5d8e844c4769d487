// SIGKILL an ingest node at random moments while producers keep sending through the kills (requests in flight
// when it dies); producers re-send every unacknowledged request to the restarted node. Afterwards every
// acknowledged event is in the archive exactly once — a re-sent request whose first copy was made durable before the
// kill is answered "duplicate", or waits for the dead request's reservations (lease) — and a worker counts every event
// exactly once.
import { describe, expect, it } from 'vitest';
import net from 'node:net';
import { createSqs } from '../../shared/clients/aws.js';
import { decodeManifest } from '../../shared/contracts/manifest.js';
import { createLogger } from '../../shared/logger.js';
import { startWorker } from '../../workers/main.js';
import { FAST_WORKER_ENV, influxAggregates, metricValueOrZero, queueDepth, sendManifests, totalCount, waitUntil } from '../support/batches.js';
import { archivedEventIds } from '../support/archive.js';
import { testConfig } from '../support/config.js';
import { startProcess, type ChildService } from '../support/processes.js';
import { receiveAll } from '../support/sqs.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });

describe('ingest survives SIGKILL at any moment', () => {
  it('keeps every acknowledged event exactly once through kills with requests in flight, and re-sent ones once counted', async () => {
    const port = await freePort();
    const cfg = await testConfig({
      ...FAST_WORKER_ENV,
      SLUICE_FLUSH_MAX_EVENTS: '3000',
      SLUICE_FLUSH_MAX_AGE: '300ms',
      SLUICE_INGEST_PORT: String(port),
      SLUICE_DEDUP_LEASE: '2s',
    });
    const env = { ...cfg.env, SLUICE_NODE_ID: 'ingest-kill' };
    const url = `http://127.0.0.1:${port}`;
    const acked = new Set<string>();
    const resent = new Set<string>();
    const pending: string[][] = [];
    let next = 0;
    let inFlight = 0;
    let failedRequests = 0;
    let stopNew = false;
    const now = Date.now();
    const body = (ids: string[]) =>
      JSON.stringify(ids.map((id, i) => ({ eventId: id, entityId: `video-${i % 37}`, eventType: 'view', timestamp: now - (i % 7) * 60_000 })));

    // Producers send without pause through every kill; a request without a 202 goes back to `pending` and is re-sent.
    const producer = async () => {
      while (!stopNew || pending.length > 0) {
        const retry = pending.shift();
        if (!retry && stopNew) break;
        const ids = retry ?? Array.from({ length: 250 }, () => `ev-${next++}`);
        if (retry) for (const id of ids) resent.add(id);
        inFlight++;
        try {
          const r = await fetch(`${url}/v1/events`, {
            method: 'POST',
            body: body(ids),
            headers: { 'content-type': 'application/json' },
            signal: AbortSignal.timeout(10_000),
          });
          if (r.status !== 202) throw new Error(`status ${r.status}`);
          const json = (await r.json()) as { accepted: number; duplicates: number; rejected: unknown[] };
          expect(json.rejected).toEqual([]); // none of these events may be refused
          for (const id of ids) acked.add(id);
        } catch (err) {
          if ((err as { name?: string }).name === 'AssertionError') throw err;
          failedRequests++;
          pending.push(ids);
          await sleep(50);
        } finally {
          inFlight--;
        }
      }
    };

    let node: ChildService = await startProcess('ingest', env, 'ingest-kill');
    const producers = Promise.all([producer(), producer(), producer(), producer()]);
    const inFlightAtKill: number[] = [];
    for (let round = 0; round < 5; round++) {
      await sleep(400 + Math.random() * 1_000);
      inFlightAtKill.push(inFlight);
      await node.kill('SIGKILL');
      node = await startProcess('ingest', env, 'ingest-kill');
    }
    await sleep(500);
    stopNew = true;
    await producers;
    expect(await node.kill('SIGTERM')).toBe(0); // a graceful stop delivers every WAL segment first
    expect(pending).toEqual([]);
    expect(acked.size).toBe(next); // with resend, every event was acknowledged in the end
    expect(acked.size).toBeGreaterThan(2_000);
    // The kills really hit requests in progress, and the resend path was taken.
    expect(inFlightAtKill.filter((n) => n > 0).length).toBeGreaterThanOrEqual(4);
    expect(failedRequests).toBeGreaterThan(0);
    expect(resent.size).toBeGreaterThan(0);

    // The archive: every object announced by a manifest, and no object without one.
    const sqs = createSqs(cfg);
    const received = await receiveAll(sqs, cfg.SLUICE_QUEUE_NAME, { waitMs: 3_000, deleteThem: true });
    const manifests = received.map((m) => decodeManifest(m.body));
    const { keys, counts: inArchive } = await archivedEventIds(cfg);
    expect(new Set(manifests.map((m) => m.key))).toEqual(new Set(keys));
    const missing = [...acked].filter((id) => !inArchive.has(id));
    expect(missing).toEqual([]);
    const twice = [...inArchive].filter(([, n]) => n > 1);
    expect(twice).toEqual([]); // re-sent ones included: the reservations keep every id once
    expect(inArchive.size).toBe(acked.size);
    // Manifests agree with the objects they announce. A segment replayed after a kill that came between sending its
    // manifests and deleting it announces the same objects again (same key, same checksum): workers count a batch
    // once per key, so a repeated manifest must describe exactly the same object.
    const byKey = new Map<string, (typeof manifests)[number]>();
    for (const m of manifests) {
      const first = byKey.get(m.key);
      if (first) expect({ key: m.key, count: m.eventCount, sha: m.checksum.value }).toEqual({ key: m.key, count: first.eventCount, sha: first.checksum.value });
      else byKey.set(m.key, m);
    }
    const total = [...byKey.values()].reduce((n, m) => n + m.eventCount, 0);
    expect(total).toBe([...inArchive.values()].reduce((a, b) => a + b, 0));

    // Counted: a worker takes every manifest (repeats included) and counts each event exactly once.
    await sendManifests(
      cfg,
      received.map((m) => m.body),
    );
    const worker = await startWorker(cfg, createLogger('ingest-kill-worker', 'warn'));
    try {
      await waitUntil(
        'every manifest processed',
        async () => (await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)) === 0 && (await metricValueOrZero(worker.url, 'sluice_worker_batches_in_flight')) === 0,
        60_000,
      );
      expect(totalCount(await influxAggregates(cfg, now - 3_600_000, now + 3_600_000))).toBe(acked.size);
    } finally {
      await worker.close();
      sqs.destroy();
    }
  }, 180_000);
});
