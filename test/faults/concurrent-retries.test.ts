// The same event ids sent concurrently to two ingest nodes — every request to one node with a copy of it re-sent at
// the same moment to the other, as an impatient producer with two connections does — and again while one node is
// SIGKILLed mid-run and restarted. Producers keep re-sending every request without a 202 (honouring Retry-After).
// Afterwards the archive, read with DuckDB, holds every id exactly once and nothing acknowledged is missing, and a
// worker counts each event exactly once. It runs on a 3-master Redis Cluster started for it (the reservations spread
// over 16 hash tags there); test/faults/multi-host.test.ts covers two nodes on a single Redis.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/logger.js';
import { startWorker } from '../../workers/main.js';
import { archiveEventIdCounts } from '../support/archive.js';
import { FAST_WORKER_ENV, influxAggregates, metricValueOrZero, queueDepth, totalCount, waitUntil } from '../support/batches.js';
import { testConfig } from '../support/config.js';
import { freePorts } from '../support/ports.js';
import { startTestRedisCluster, type TestRedisCluster } from '../support/redis-cluster.js';
import { type ChildService, startProcess } from '../support/processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('concurrent retries to two ingest nodes on a Redis Cluster', () => {
  let cluster: TestRedisCluster;
  beforeAll(async () => {
    cluster = await startTestRedisCluster();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('stores every event id once across both nodes, through a SIGKILL, with nothing acknowledged lost', async () => {
    const ports = await freePorts(2);
    const cfg = await testConfig({
      ...FAST_WORKER_ENV,
      ...cluster.env,
      SLUICE_FLUSH_MAX_EVENTS: '2000',
      SLUICE_FLUSH_MAX_AGE: '300ms',
      SLUICE_DEDUP_LEASE: '2s',
    });
    const envOf = (i: number) => ({ ...cfg.env, SLUICE_NODE_ID: `dup-node-${i}`, SLUICE_INGEST_PORT: String(ports[i]) });
    const nodes: ChildService[] = [await startProcess('ingest', envOf(0), 'dup-node-0'), await startProcess('ingest', envOf(1), 'dup-node-1')];
    const url = (i: number) => `http://127.0.0.1:${ports[i]}`;
    const now = Date.now();
    const acked = new Set<string>();
    const statuses = new Map<number, number>();
    let duplicatesAnswered = 0;
    let killed = false;

    /** Sends one request to node `i` until it is answered 202 (a dead node's requests fail and are sent again). */
    const sendUntilAcked = async (i: number, ids: string[]) => {
      const body = JSON.stringify(ids.map((id, k) => ({ eventId: id, entityId: `video-${k % 23}`, eventType: 'view', timestamp: now - (k % 5) * 60_000 })));
      for (let attempt = 0; ; attempt++) {
        if (attempt > 200) throw new Error(`request of ${ids[0]}… never acknowledged by node ${i}`);
        try {
          const r = await fetch(`${url(i)}/v1/events`, {
            method: 'POST',
            body,
            headers: { 'content-type': 'application/json' },
            signal: AbortSignal.timeout(10_000),
          });
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          const json = (await r.json()) as { accepted: number; duplicates: number; rejectedCount?: number };
          if (r.status === 202) {
            expect(json.rejectedCount ?? 0).toBe(0);
            duplicatesAnswered += json.duplicates;
            for (const id of ids) acked.add(id);
            return;
          }
          expect(r.status).toBe(503); // an id in flight elsewhere, or a node going away: never a 4xx, never a 500
          await sleep(Number(r.headers.get('retry-after') ?? 1) * 1000 * (0.5 + Math.random()));
        } catch (err) {
          if ((err as { name?: string }).name === 'AssertionError') throw err;
          await sleep(100); // connection refused or reset: the node is down or restarting
        }
      }
    };

    // 8 connections; each request of 500 ids goes to one node, and a copy (the retry) to the other at the same moment.
    const requests = Array.from({ length: 16 }, (_, r) => Array.from({ length: 500 }, (_, k) => `dup-${r}-${k}`));
    let nextRequest = 0;
    const connection = async () => {
      for (let r = nextRequest++; r < requests.length; r = nextRequest++) {
        const first = r % 2;
        await Promise.all([sendUntilAcked(first, requests[r]!), sendUntilAcked(1 - first, requests[r]!)]);
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, connection));
    // Mid-run, node 0 dies with requests in flight (SIGKILL: no drain) and comes back on its own WAL.
    await sleep(300);
    await nodes[0]!.kill('SIGKILL');
    killed = true;
    await sleep(500);
    nodes[0] = await startProcess('ingest', envOf(0), 'dup-node-0');
    await load;
    expect(killed).toBe(true);
    for (const n of nodes) expect(await n.kill('SIGTERM')).toBe(0); // a graceful stop delivers every WAL segment

    const all = requests.flat();
    expect(acked.size).toBe(all.length);
    expect(duplicatesAnswered).toBeGreaterThan(0); // the copies really met their originals
    const counts = await archiveEventIdCounts(cfg);
    const missing = all.filter((id) => !counts.has(id));
    const twice = [...counts].filter(([, n]) => n > 1).map(([id, n]) => `${id}×${n}`);
    expect({ missing: missing.slice(0, 10), twice: twice.slice(0, 10) }).toEqual({ missing: [], twice: [] });
    expect(counts.size).toBe(all.length);

    // And counted: one worker, each event exactly once.
    const worker = await startWorker(cfg, createLogger('concurrent-retries-worker', 'warn'));
    try {
      await waitUntil(
        'every batch counted',
        async () => (await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)) === 0 && (await metricValueOrZero(worker.url, 'sluice_worker_batches_in_flight')) === 0,
        60_000,
      );
      expect(totalCount(await influxAggregates(cfg, now - 3_600_000, now + 3_600_000))).toBe(all.length);
    } finally {
      await worker.close();
    }
  }, 240_000);
});
