// Abusive requests against a real ingest node (real Redis, S3/SQS emulator): a 16 KB gzip of millions of tiny
// lines, too many events, slow uploads, unauthenticated and greedy clients. Each is answered quickly with a 4xx,
// memory stays within the node's budget, and other producers keep being served.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { gzipSync } from 'node:zlib';
import { startIngest } from '../../ingest/main.js';
import { createLogger } from '../../shared/logger.js';
import { testConfig } from '../support/config.js';

const log = createLogger('test', 'warn');
const MiB = 1024 * 1024;

function post(url: string, body: string | Buffer, headers: Record<string, string> = {}) {
  return fetch(`${url}/v1/events`, {
    method: 'POST',
    body: typeof body === 'string' ? body : new Uint8Array(body),
    headers: { 'content-type': 'application/json', ...headers },
  });
}

/** A client that sends its headers, then one body byte per second: resolves with what the server answered when it closes. */
function slowUpload(url: string, headers: Record<string, string>, declaredLength: number) {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  let answer = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    answer += d;
  });
  socket.on('error', () => undefined);
  const head = Object.entries({ host: `${hostname}:${port}`, 'content-type': 'application/json', 'content-length': String(declaredLength), ...headers })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.write(`POST /v1/events HTTP/1.1\r\n${head}\r\n[`);
  const drip = setInterval(() => socket.write(' '), 1_000);
  const closed = new Promise<{ answer: string; afterMs: number }>((resolve) => {
    const t0 = Date.now();
    socket.on('close', () => {
      clearInterval(drip);
      resolve({ answer, afterMs: Date.now() - t0 });
    });
  });
  return { socket, closed, answerSoFar: () => answer };
}

const event = (id: string, pad = 0) => ({
  eventId: id,
  entityId: 'video-1',
  eventType: 'view',
  timestamp: Date.now(),
  dims: pad ? { pad: 'x'.repeat(pad) } : undefined,
});

describe('ingest under abusive requests', () => {
  let cfg: Awaited<ReturnType<typeof testConfig>>;
  let ingest: Awaited<ReturnType<typeof startIngest>>;
  const web = { authorization: 'Bearer key-web' };
  const app = { authorization: 'Bearer key-app' };
  beforeAll(async () => {
    cfg = await testConfig({
      SLUICE_API_KEYS: 'web:key-web,app:key-app',
      SLUICE_INGEST_REQUEST_TIMEOUT: '2s',
      SLUICE_MAX_INFLIGHT_BYTES: '200KiB',
      SLUICE_MAX_CONCURRENT_REQUESTS_PER_PRODUCER: '2',
    });
    ingest = await startIngest(cfg, log);
  });
  afterAll(async () => {
    await ingest?.close();
  });

  it('answers a 16 KB gzip of 8.3M lines of `1` (NDJSON and JSON array) with 413 at once, within the memory budget', async () => {
    const n = 8_300_000;
    const lines = gzipSync('1\n'.repeat(n));
    const array = gzipSync(`[${'1,'.repeat(n - 1)}1]`);
    expect(lines.length).toBeLessThan(20_000);
    expect('1\n'.length * n).toBeLessThan(16 * MiB);
    expect((await post(ingest.url, JSON.stringify([event('warm-up')]), web)).status).toBe(202);
    const rss0 = process.memoryUsage().rss;
    const timings: Record<string, number[]> = { ndjson: [], array: [] };
    for (let round = 0; round < 5; round++) {
      for (const [kind, body, ctype] of [
        ['ndjson', lines, 'application/x-ndjson'],
        ['array', array, 'application/json'],
      ] as const) {
        const t0 = performance.now();
        const r = await post(ingest.url, body, { ...web, 'content-type': ctype, 'content-encoding': 'gzip' });
        const text = await r.text();
        timings[kind]!.push(performance.now() - t0);
        expect(r.status, text).toBe(413);
        expect(JSON.parse(text).error).toBe(
          'request holds more than 10000 events (SLUICE_MAX_EVENTS_PER_REQUEST); split it into requests of at most 10000 events',
        );
      }
    }
    const growth = process.memoryUsage().rss - rss0;
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(1);
    console.log(
      `16 KB gzip bomb (${lines.length} B NDJSON, ${array.length} B array): median ${median(timings.ndjson!)} ms / ${median(timings.array!)} ms, RSS growth ${(growth / MiB).toFixed(1)} MiB`,
    );
    expect(growth).toBeLessThan(200 * MiB);
    expect((await post(ingest.url, JSON.stringify([event('after-bomb')]), web)).status).toBe(202);
  });

  it('refuses more than SLUICE_MAX_EVENTS_PER_REQUEST events with 413, and accepts exactly that many', async () => {
    const max = cfg.SLUICE_MAX_EVENTS_PER_REQUEST;
    const over = await post(ingest.url, JSON.stringify(Array.from({ length: max + 1 }, (_, i) => ({ i }))), app);
    expect(over.status).toBe(413);
    expect((await over.json()).error).toMatch(/more than 10000 events.*split it/);
    const exact = await post(ingest.url, `[${'{},'.repeat(max - 1)}{}]`, app);
    expect(exact.status).toBe(202);
    expect(await exact.json()).toMatchObject({ accepted: 0, rejectedCount: max });
  });

  it('lists the first 100 rejections and counts all of them by field and rule', async () => {
    const events = [
      ...Array.from({ length: 150 }, (_, i) => ({ ...event(`bad-type-${i}`), eventType: 'Not Valid' })),
      ...Array.from({ length: 100 }, (_, i) => ({ ...event(`bad-dims-${i}`), dims: { k: '\ud800' } })),
      { entityId: 'v', eventType: 'view', timestamp: Date.now() },
      event('good-1'),
    ];
    const r = await post(ingest.url, JSON.stringify(events), app);
    expect(r.status).toBe(202);
    const body = await r.json();
    expect(body.accepted).toBe(1);
    expect(body.rejected).toHaveLength(100);
    expect(body.rejected[0]).toEqual({ index: 0, reason: expect.stringMatching(/^eventType must match/) });
    expect(body.rejectedCount).toBe(251);
    expect(body.rejectedByReason).toEqual({ 'eventType:pattern': 150, 'dims.value:unicode': 100, 'eventId:missing': 1 });
  });

  it('cuts a slow upload at SLUICE_INGEST_REQUEST_TIMEOUT; while it drips it holds no budget beyond its bytes', async () => {
    const slow = [slowUpload(ingest.url, web, 150_000), slowUpload(ingest.url, app, 150_000)];
    await new Promise((r) => setTimeout(r, 300));
    // Charged by declared length, the two uploads would hold 300 KB of the 200 KiB budget and this would get 503.
    const body = JSON.stringify(Array.from({ length: 1_000 }, (_, i) => event(`during-slow-${i}`, 20)));
    expect(body.length).toBeGreaterThan(100_000);
    expect(body.length).toBeLessThan(150_000);
    const during = await post(ingest.url, body, { authorization: 'Bearer key-web' });
    expect(during.status, await during.clone().text()).toBe(202);
    const cut = await Promise.all(slow.map((s) => s.closed));
    for (const c of cut) {
      expect(c.afterMs).toBeLessThan(5_000);
      expect(c.answer).toMatch(/^HTTP\/1\.1 408/);
    }
  });

  it('answers an unauthenticated upload 401 before reading its body, so it never holds budget', async () => {
    const anon = slowUpload(ingest.url, {}, 150_000);
    const wrong = slowUpload(ingest.url, { authorization: 'Bearer nope' }, 150_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(anon.answerSoFar()).toMatch(/^HTTP\/1\.1 401/);
    expect(wrong.answerSoFar()).toMatch(/^HTTP\/1\.1 403/);
    anon.socket.destroy();
    wrong.socket.destroy();
  });

  it('limits concurrent requests per producer with 429 + Retry-After, leaving other producers unaffected', async () => {
    const slow = [slowUpload(ingest.url, web, 1_000), slowUpload(ingest.url, web, 1_000)];
    await new Promise((r) => setTimeout(r, 300));
    const third = await post(ingest.url, JSON.stringify([event('third')]), web);
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toBe('1');
    expect((await third.json()).error).toMatch(/producer web already has 2 requests in progress \(SLUICE_MAX_CONCURRENT_REQUESTS_PER_PRODUCER\)/);
    expect((await post(ingest.url, JSON.stringify([event('other-producer')]), app)).status).toBe(202);
    await Promise.all(slow.map((s) => s.closed)); // cut by the request timeout, releasing the slots
    expect((await post(ingest.url, JSON.stringify([event('after-slots')]), web)).status).toBe(202);
  });

  it("keeps producers' event ids apart: the same eventId from two producers is two events", async () => {
    const a = await (await post(ingest.url, JSON.stringify([event('same-id')]), web)).json();
    const b = await (await post(ingest.url, JSON.stringify([event('same-id')]), app)).json();
    const again = await (await post(ingest.url, JSON.stringify([event('same-id')]), app)).json();
    expect([a.accepted, b.accepted, again.duplicates]).toEqual([1, 1, 1]);
  });
});
