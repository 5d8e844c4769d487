// Redis out of memory, on a private redis-server started by ensureRedis with a tiny maxmemory: the policy is
// noeviction (nothing already stored disappears, writes fail loudly). Ingest refuses with 503 and the reason while the
// event ids cannot be reserved (dedup fails closed: nothing stored that could be stored twice); with dedup off the rate
// limit and the new-series budget fail open, counted. A worker retries the batch instead of dead-lettering it, then
// counts it exactly once Redis has room again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { startIngest } from '../../ingest/main.js';
import { ensureRedis, type RunningService } from '../../localstack/services.js';
import { createRedis } from '../../shared/clients/redis.js';
import { createLogger } from '../../shared/logger.js';
import { startWorker } from '../../workers/main.js';
import {
  FAST_WORKER_ENV,
  diffAggregates,
  groundTruth,
  influxAggregates,
  metricValueOrZero,
  pastHour,
  queueDepth,
  randomEvents,
  sendManifests,
  uploadBatches,
  waitUntil,
} from '../support/batches.js';
import { testConfig } from '../support/config.js';

const log = createLogger('test', process.env.SLUICE_LOG_LEVEL ?? 'silent');
const MAX_MEMORY = 4 * 1024 * 1024;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

describe('Redis out of memory', () => {
  let server: RunningService;
  let url: string;
  let admin: Redis;
  beforeAll(async () => {
    url = `redis://127.0.0.1:${await freePort()}`;
    server = await ensureRedis(url, mkdtempSync(path.join(os.tmpdir(), 'sluice-redis-oom-')), log, MAX_MEMORY);
    expect(server.started).toBe(true);
    admin = createRedis({ SLUICE_REDIS_URL: url });
    admin.on('error', () => undefined);
  }, 60_000);
  afterAll(async () => {
    admin?.disconnect();
    await server?.stop();
  });

  /**
   * Fills Redis up to its maxmemory; returns the error text of the write that was refused. A refused big write
   * frees its buffer afterwards, so the limit is then lowered under what is stored: every later write is refused.
   */
  async function fill(): Promise<string> {
    const chunk = 'x'.repeat(256 * 1024);
    for (let i = 0; i < 100; i++) {
      try {
        await admin.set(`filler:${i}`, chunk);
      } catch (err) {
        const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1]);
        await admin.config('SET', 'maxmemory', String(Math.floor(used / 2)));
        return String(err);
      }
    }
    throw new Error('Redis never refused a write');
  }
  let filled: Promise<string> | undefined;
  /** Each test can run alone: the first one to need a full Redis fills it. */
  const full = () => (filled ??= fill());

  it('is started with maxmemory and noeviction, and refuses writes instead of evicting', async () => {
    expect(await admin.config('GET', 'maxmemory')).toEqual(['maxmemory', String(MAX_MEMORY)]);
    expect(await admin.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    expect(await full()).toMatch(/OOM command not allowed/);
    expect(await admin.exists('filler:0')).toBe(1); // nothing stored earlier was evicted
    await expect(admin.set('small', '1')).rejects.toThrow(/OOM/);
  });

  it('ingest refuses with the reason while ids cannot be reserved, stores nothing, and accepts again once Redis has room', async () => {
    const cfg = await testConfig({ SLUICE_REDIS_URL: url });
    await full();
    const [, limit] = (await admin.config('GET', 'maxmemory')) as [string, string];
    const ingest = await startIngest(cfg, log);
    try {
      const now = Date.now();
      const events = Array.from({ length: 20 }, (_, i) => ({ eventId: `oom-dedup-${i}`, entityId: 'entity-1', eventType: 'view', timestamp: now }));
      const post = () => fetch(`${ingest.url}/v1/events`, { method: 'POST', body: JSON.stringify(events), headers: { 'content-type': 'application/json' } });
      const res = await post();
      expect(res.status).toBe(503);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(((await res.json()) as { error: string }).error).toMatch(
        /cannot check event ids for duplicates \(Redis: .*OOM.*nothing from this request was stored/,
      );
      await ingest.wal.seal();
      expect(ingest.wal.openSegment.events).toBe(0);
      await admin.config('SET', 'maxmemory', '0'); // room again
      const again = await post();
      expect(again.status).toBe(202);
      expect(await again.json()).toMatchObject({ accepted: 20, duplicates: 0 });
    } finally {
      await admin.config('SET', 'maxmemory', limit); // full again for the next cases
      await ingest.close();
    }
  }, 60_000);

  it('with dedup off, ingest accepts every valid event while Redis refuses writes (rate limit and series budget fail open, counted)', async () => {
    const cfg = await testConfig({ SLUICE_REDIS_URL: url, SLUICE_MAX_NEW_SERIES_PER_MIN: '5', SLUICE_RATE_LIMIT_EVENTS: '1000', SLUICE_DEDUP_WINDOW: '0' });
    await full();
    const ingest = await startIngest(cfg, log);
    try {
      const now = Date.now();
      const events = Array.from({ length: 50 }, (_, i) => ({ eventId: `oom-${i}`, entityId: `entity-${i}`, eventType: 'view', timestamp: now }));
      const res = await fetch(`${ingest.url}/v1/events`, { method: 'POST', body: JSON.stringify(events), headers: { 'content-type': 'application/json' } });
      expect(res.status).toBe(202);
      expect(await res.json()).toMatchObject({ accepted: 50, duplicates: 0 });
      expect(await metricValueOrZero(ingest.url, 'sluice_ingest_series_budget_unchecked_events_total')).toBe(50);
    } finally {
      await ingest.close();
    }
  }, 60_000);

  it('a worker retries a batch while Redis refuses writes, never dead-letters it, and counts it once Redis has room', async () => {
    const cfg = await testConfig({ ...FAST_WORKER_ENV, SLUICE_REDIS_URL: url, SLUICE_MAX_TRANSIENT_RETRY: '1s' });
    const start = pastHour();
    const events = randomEvents(500, { start, minutes: 3, entities: 7 });
    const [batch] = await uploadBatches(cfg, events);
    await sendManifests(cfg, [batch!.body]);
    await full();
    const worker = await startWorker(cfg, log);
    try {
      await waitUntil(
        'the batch was tried and released',
        async () => (await metricValueOrZero(worker.url, 'sluice_worker_batches_total', 'outcome="retry"')) >= 2,
      );
      expect(await metricValueOrZero(worker.url, 'sluice_worker_batches_total', 'outcome="delivered"')).toBe(0);
      expect(await metricValueOrZero(worker.url, 'sluice_worker_dead_letters_total')).toBe(0);
      expect(await queueDepth(cfg, cfg.SLUICE_DLQ_NAME)).toBe(0);

      await admin.config('SET', 'maxmemory', '0'); // room again
      await waitUntil('batch delivered', async () => (await metricValueOrZero(worker.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1, 60_000);
      expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(events))).toEqual([]);
      expect(await queueDepth(cfg, cfg.SLUICE_DLQ_NAME)).toBe(0);
    } finally {
      await admin.config('SET', 'maxmemory', String(MAX_MEMORY)).catch(() => undefined);
      await worker.close();
    }
  }, 120_000);
});
