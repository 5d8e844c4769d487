// Ingest over real HTTP against the real emulator and Redis: durable acceptance, Parquet + manifest delivery,
// and every error status with its message.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { startIngest } from '../../ingest/main.js';
import { createLogger } from '../../shared/logger.js';
import { createS3, createSqs } from '../../shared/clients/aws.js';
import { decodeManifest } from '../../shared/contracts/manifest.js';
import { parseRawEventsKey } from '../../shared/contracts/parquet-schema.js';
import { openEngine, queryParquet } from '../../shared/parquet.js';
import { testConfig } from '../support/config.js';
import { downloadTo, listKeys, receiveAll } from '../support/sqs.js';

const log = createLogger('test', 'warn');
type Started = Awaited<ReturnType<typeof startIngest>>;

function post(url: string, body: string | Buffer, headers: Record<string, string> = {}) {
  return fetch(`${url}/v1/events`, {
    method: 'POST',
    body: typeof body === 'string' ? body : new Uint8Array(body),
    headers: { 'content-type': 'application/json', ...headers },
  });
}

describe('ingest HTTP API', () => {
  let cfg: Awaited<ReturnType<typeof testConfig>>;
  let ingest: Started;
  beforeAll(async () => {
    cfg = await testConfig({
      SLUICE_API_KEYS: 'web:key-web,app:key-app',
      SLUICE_RATE_LIMIT_EVENTS: '50',
      SLUICE_RATE_LIMIT_BURST: '100',
      SLUICE_MAX_BODY_BYTES: '1MiB',
    });
    ingest = await startIngest(cfg, log);
  });
  afterAll(async () => {
    await ingest?.close();
  });
  const auth = { authorization: 'Bearer key-web' };
  const now = Date.now();

  it('accepts valid events, rejects bad ones by index, and delivers Parquet + a manifest partitioned by event time', async () => {
    const lateTs = now - 3 * 3_600_000; // a late event: must land in its own hour partition
    const events = [
      { eventId: 'a1', entityId: 'video-A', eventType: 'view', timestamp: now },
      { eventId: 'a2', entityId: 'video-A', eventType: 'view', timestamp: new Date(now).toISOString(), value: 2.5, dims: { country: 'FR' } },
      { eventId: 'a3', entityId: 'video-B', eventType: 'Bad Type', timestamp: now },
      { eventId: 'a4', entityId: 'video-B', eventType: 'like', timestamp: lateTs },
      { eventId: 'a5', entityId: 'video-B', eventType: 'like', timestamp: now, value: 'x' },
    ];
    const res = await post(ingest.url, JSON.stringify(events), auth);
    expect(res.status).toBe(202);
    const body = await res.json();
    expect(body.accepted).toBe(3);
    expect(body.rejected.map((r: { index: number }) => r.index)).toEqual([2, 4]);
    expect(body.rejected[0].reason).toMatch(/eventType must match/);
    expect(body.rejected[1].reason).toMatch(/value must be a finite number/);

    const sqs = createSqs(cfg);
    const msgs = await receiveAll(sqs, cfg.SLUICE_QUEUE_NAME, { waitMs: 4_000, deleteThem: true });
    const manifests = msgs.map((m) => decodeManifest(m.body));
    expect(manifests.reduce((n, m) => n + m.eventCount, 0)).toBe(3);
    const hours = manifests.map((m) => parseRawEventsKey(m.key)!.hour).sort();
    expect(hours).toEqual([new Date(lateTs).toISOString().slice(11, 13), new Date(now).toISOString().slice(11, 13)].sort());

    const s3 = createS3(cfg);
    const keys = await listKeys(s3, cfg.SLUICE_RAW_BUCKET, 'events/');
    expect(keys.sort()).toEqual(manifests.map((m) => m.key).sort());
    await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duck') });
    const files = [];
    for (const k of keys) {
      const f = path.join(cfg.SLUICE_DATA_DIR, k.replaceAll('/', '_'));
      await downloadTo(s3, cfg.SLUICE_RAW_BUCKET, k, f);
      files.push(f);
    }
    const rows = await queryParquet(
      `SELECT count(*)::INT AS n, sum(value) AS s, max(dims['country']) AS c, min(producer) AS p FROM read_parquet([${files.map((f) => `'${f}'`).join(',')}])`,
    );
    expect(rows[0]).toMatchObject({ n: 3, s: 4.5, c: 'FR', p: 'web' });
  });

  it('counts a retried request as duplicates, not new events', async () => {
    const events = [
      { eventId: 'd1', entityId: 'v', eventType: 'view', timestamp: now },
      { eventId: 'd2', entityId: 'v', eventType: 'view', timestamp: now },
    ];
    const first = await (await post(ingest.url, JSON.stringify(events), auth)).json();
    const again = await (await post(ingest.url, JSON.stringify([...events, events[0]]), auth)).json();
    expect(first).toMatchObject({ accepted: 2, duplicates: 0 });
    expect(again).toMatchObject({ accepted: 0, duplicates: 3 });
  });

  it('accepts NDJSON and gzip, rejecting a bad line by index', async () => {
    const nd = `{"eventId":"n1","entityId":"v","eventType":"view","timestamp":${now}}\n{"eventId":"n2",\n{"eventId":"n3","entityId":"v","eventType":"view","timestamp":${now}}\n`;
    const res = await post(ingest.url, gzipSync(nd), { ...auth, 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' });
    expect(res.status).toBe(202);
    const body = await res.json();
    expect(body.accepted).toBe(2);
    expect(body.rejected).toEqual([{ index: 1, reason: expect.stringMatching(/^line 2 is not valid JSON/) }]);
  });

  it('answers 401 without a key and 403 with a wrong key', async () => {
    const e = JSON.stringify([{ eventId: 'x', entityId: 'v', eventType: 'view', timestamp: now }]);
    const r1 = await post(ingest.url, e);
    expect(r1.status).toBe(401);
    expect((await r1.json()).error).toMatch(/Authorization: Bearer/);
    const r2 = await post(ingest.url, e, { authorization: 'Bearer nope' });
    expect(r2.status).toBe(403);
  });

  it('answers 400 with the position of a JSON syntax error', async () => {
    const r = await post(ingest.url, '[{"eventId":"t1","entityId":"v",', auth);
    expect(r.status).toBe(400);
    expect((await r.json()).error).toMatch(/not valid JSON.*character \d+, line 1, column \d+/);
    const bad = Buffer.from([0x5b, 0x22, 0xff, 0xfe, 0x22, 0x5d]);
    const r2 = await post(ingest.url, bad, auth);
    expect(r2.status).toBe(400);
    expect((await r2.json()).error).toMatch(/not valid UTF-8 \(first invalid byte at offset 2\)/);
  });

  it('answers 413 naming the limit, also for a gzip bomb', async () => {
    const big = JSON.stringify([{ eventId: 'x'.repeat(2 * 1024 * 1024), entityId: 'v', eventType: 'view', timestamp: now }]);
    const r = await post(ingest.url, big, auth);
    expect(r.status).toBe(413);
    expect((await r.json()).error).toMatch(/1048576 bytes/);
    const bomb = gzipSync(Buffer.alloc(4 * 1024 * 1024, 0x20));
    const r2 = await post(ingest.url, bomb, { ...auth, 'content-encoding': 'gzip' });
    expect(r2.status).toBe(413);
  });

  it('gives clear per-event reasons for wrong types, huge strings and deep nesting without crashing', async () => {
    const depth = 100_000;
    const deep = '{"a":'.repeat(depth) + '"x"' + '}'.repeat(depth);
    const events = [
      { eventId: 1, entityId: 'v', eventType: 'view', timestamp: now },
      { eventId: 'h', entityId: 'e'.repeat(300_000), eventType: 'view', timestamp: now },
      { eventId: 'n', entityId: 'v', eventType: 'view', timestamp: now, dims: 'DEEP' },
      { eventId: 'f', entityId: 'v', eventType: 'view', timestamp: now + 3_600_000 },
      { eventId: 'o', entityId: 'v', eventType: 'view', timestamp: '2001-01-01T00:00:00Z' },
      'not an object',
    ];
    const r = await post(ingest.url, JSON.stringify(events).replace('"DEEP"', deep), { authorization: 'Bearer key-app' });
    expect(r.status).toBe(202);
    const body = await r.json();
    expect(body.accepted).toBe(0);
    const reasons = body.rejected.map((x: { reason: string }) => x.reason);
    expect(reasons[0]).toMatch(/eventId must be a string/);
    expect(reasons[1]).toMatch(/entityId must be 1–256 characters long, got 300000/);
    expect(reasons[2]).toMatch(/dims\.a must be a string/);
    expect(reasons[3]).toMatch(/more than 5 minutes in the future/);
    expect(reasons[4]).toMatch(/older than the accepted age/);
    expect(reasons[5]).toMatch(/event must be a JSON object/);
    expect((await fetch(`${ingest.url}/healthz`)).status).toBe(200);
  });

  it('answers 429 with Retry-After past the producer rate limit', async () => {
    const batch = JSON.stringify(Array.from({ length: 90 }, (_, i) => ({ eventId: `r${i}`, entityId: 'v', eventType: 'view', timestamp: now })));
    const first = await post(ingest.url, batch, { authorization: 'Bearer key-app' });
    expect(first.status).toBe(202);
    const second = await post(ingest.url, batch.replaceAll('"r', '"s'), { authorization: 'Bearer key-app' });
    expect(second.status).toBe(429);
    expect(Number(second.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await second.json()).error).toMatch(/rate limit of 50 events\/s for producer app/);
  });
});

describe('ingest memory bound', () => {
  it('turns requests away with 503 and Retry-After once SLUICE_MAX_INFLIGHT_BYTES of bodies are in progress, and serves again after', async () => {
    const cfg = await testConfig({ SLUICE_MAX_INFLIGHT_BYTES: '300KiB' });
    const ingest = await startIngest(cfg, log);
    try {
      const now = Date.now();
      const body = (p: string) =>
        JSON.stringify(
          Array.from({ length: 1_000 }, (_, i) => ({
            eventId: `${p}-${i}`,
            entityId: `video-${i % 10}`,
            eventType: 'view',
            timestamp: now,
            dims: { pad: 'x'.repeat(40) },
          })),
        );
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => post(ingest.url, body(`m${i}`))));
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 202).length).toBeGreaterThan(0);
      const busy = results.filter((r) => r.status === 503);
      expect(busy.length).toBeGreaterThan(0);
      expect(busy[0]!.headers.get('retry-after')).toBe('1');
      expect((await busy[0]!.json()).error).toMatch(/SLUICE_MAX_INFLIGHT_BYTES=307200/);
      expect((await post(ingest.url, body('after'))).status).toBe(202); // the bound is released as requests finish
    } finally {
      await ingest.close();
    }
  });
});

describe('ingest with default limits', () => {
  it('rejects a 10 MB single field by index with its length, and keeps serving', async () => {
    const cfg = await testConfig();
    const ingest = await startIngest(cfg, log);
    try {
      const now = Date.now();
      const events = [
        { eventId: 'ok-1', entityId: 'v', eventType: 'view', timestamp: now },
        { eventId: 'big', entityId: 'v'.repeat(10 * 1024 * 1024), eventType: 'view', timestamp: now },
      ];
      const r = await post(ingest.url, JSON.stringify(events));
      expect(r.status).toBe(202);
      expect(await r.json()).toEqual({
        accepted: 1,
        duplicates: 0,
        rejected: [{ index: 1, reason: 'entityId must be 1–256 characters long, got 10485760' }],
        rejectedCount: 1,
        rejectedByReason: { 'entityId:length': 1 },
      });
      expect((await fetch(`${ingest.url}/healthz`)).status).toBe(200);
    } finally {
      await ingest.close();
    }
  });
});
