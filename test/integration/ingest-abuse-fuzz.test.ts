// Property-based fuzzing of POST /v1/events on a real ingest node (real Redis, S3/SQS emulator): for any JSON
// value or any bytes the answer is 202 with per-event reasons, 4xx or 503 — never 500 — and every event is
// accounted for (accepted + duplicates + rejected). Then every accepted event, including ones with hostile but
// valid strings, reaches S3 exactly once, and workers count the hostile ones into the query API.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import path from 'node:path';
import { startIngest } from '../../ingest/main.js';
import { startWorker } from '../../workers/main.js';
import { startQuery } from '../../query/main.js';
import { createLogger } from '../../shared/logger.js';
import { createS3 } from '../../shared/clients/aws.js';
import { openEngine, queryParquet } from '../../shared/parquet.js';
import { testConfig } from '../support/config.js';
import { downloadTo, listKeys } from '../support/sqs.js';

const log = createLogger('test', 'warn');

async function post(url: string, body: string | Uint8Array, ctype = 'application/json') {
  const r = await fetch(`${url}/v1/events`, {
    method: 'POST',
    body: typeof body === 'string' ? body : new Uint8Array(body),
    headers: { 'content-type': ctype },
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

const hostileText = fc
  .array(
    fc.oneof(
      { arbitrary: fc.constantFrom('"', '\\', '\\u0041', '\ud83d\ude00', '\u2028', ',', '=', ' ', '{', 'é', 'x'), weight: 20 },
      { arbitrary: fc.constantFrom('\ud800', '\u0000', '\n', '\u007f', '\ufeff'), weight: 1 },
      { arbitrary: fc.string({ unit: 'binary', maxLength: 2 }), weight: 1 },
    ),
    { minLength: 1, maxLength: 10 },
  )
  .map((p) => p.join(''));
/** Event-shaped values with hostile fields: some valid, most not. */
const eventLike = fc.record(
  {
    eventId: fc.oneof(hostileText, fc.uuid(), fc.jsonValue()),
    entityId: fc.oneof(hostileText, fc.constantFrom('video-1', 'video-2'), fc.jsonValue()),
    eventType: fc.oneof(fc.constantFrom('view', 'like', 'View', ''), fc.jsonValue()),
    timestamp: fc.oneof(fc.constant(Date.now()), fc.integer(), fc.double(), fc.string(), fc.constant(new Date().toISOString())),
    value: fc.oneof(fc.double(), fc.constantFrom(1e308, -1e308, 1e15, 0, -0), fc.jsonValue()),
    dims: fc.oneof(fc.dictionary(hostileText, fc.oneof(hostileText, fc.jsonValue()), { maxKeys: 3 }), fc.jsonValue()),
  },
  { requiredKeys: [] },
);

describe('ingest under fuzzed requests', () => {
  let cfg: Awaited<ReturnType<typeof testConfig>>;
  let ingest: Awaited<ReturnType<typeof startIngest>>;
  let accepted = 0;
  beforeAll(async () => {
    cfg = await testConfig({ SLUICE_FLUSH_MAX_AGE: '300ms', SLUICE_MAX_EVENTS_PER_REQUEST: '500', SLUICE_WORKER_POLL_WAIT: '1s' });
    ingest = await startIngest(cfg, log);
  });
  afterAll(async () => {
    await ingest?.close();
  });

  const check = (res: { status: number; body: Record<string, unknown> }, events: number | undefined) => {
    expect([202, 400, 413, 415, 429, 503], JSON.stringify(res)).toContain(res.status);
    if (res.status !== 202) {
      expect(res.body.error).toEqual(expect.any(String));
      return;
    }
    const b = res.body as { accepted: number; duplicates: number; rejectedCount: number; rejected: { index: number; reason: string }[] };
    if (events !== undefined) expect(b.accepted + b.duplicates + b.rejectedCount).toBe(events);
    expect(b.rejected.length).toBe(Math.min(100, b.rejectedCount));
    for (const r of b.rejected) expect(r.reason).not.toMatch(/undefined undefined|internal error/);
    accepted += b.accepted;
  };

  it('answers any JSON value with 202 and per-event reasons, 4xx or 503, never 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue(), fc.array(eventLike, { maxLength: 30 }), fc.array(fc.jsonValue(), { maxLength: 30 })), async (v) => {
        const text = JSON.stringify(v) ?? 'null';
        const events = Array.isArray(v) ? v.length : 1;
        check(await post(ingest.url, text), events);
        // The same values as NDJSON: one line per element.
        if (Array.isArray(v) && v.length > 0)
          check(await post(ingest.url, v.map((x) => JSON.stringify(x) ?? 'null').join('\n'), 'application/x-ndjson'), v.length);
      }),
      { numRuns: 300 },
    );
  });

  it('answers any bytes with a 4xx or a 202, never 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), fc.constantFrom('application/json', 'application/x-ndjson'), async (bytes, ctype) => {
        check(await post(ingest.url, bytes, ctype), undefined);
      }),
      { numRuns: 200 },
    );
  });

  it('delivers every accepted event to S3 exactly once, hostile-but-valid strings intact, and workers count them', async () => {
    const base = Math.floor((Date.now() - 2 * 60_000) / 60_000) * 60_000;
    const hostile = ['q"uote', 'back\\slash\\x', 'emoji \ud83d\ude00', 'line\u2028sep', 'comma,eq=sp ace', '\\u0041 literal', 'é{"json":1}'];
    const events = hostile.map((entityId, i) => ({
      eventId: `hostile-${i}-"\\`,
      entityId,
      eventType: 'view',
      timestamp: base + i * 1_000,
      value: i + 0.5,
      dims: { [`k"\\${i}`]: `${entityId} \ud83d\ude00` },
    }));
    const res = await post(ingest.url, JSON.stringify(events));
    expect(res.body).toMatchObject({ accepted: hostile.length, rejectedCount: 0 });
    accepted += hostile.length;

    // S3: the archived batches hold every accepted event of this file's requests once, with exact strings.
    const s3 = createS3(cfg);
    await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duck') });
    const files: string[] = [];
    const count = async () => {
      for (const k of await listKeys(s3, cfg.SLUICE_RAW_BUCKET, 'events/')) {
        const f = path.join(cfg.SLUICE_DATA_DIR, k.replaceAll('/', '_'));
        if (files.includes(f)) continue;
        await downloadTo(s3, cfg.SLUICE_RAW_BUCKET, k, f);
        files.push(f);
      }
      if (!files.length) return 0;
      return Number((await queryParquet(`SELECT count(*)::INT AS n FROM read_parquet([${files.map((f) => `'${f}'`).join(',')}])`))[0]!.n);
    };
    for (const deadline = Date.now() + 20_000; (await count()) < accepted && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 300));
    const rows = await queryParquet(
      `SELECT event_id, entity_id, value, to_json(dims)::VARCHAR AS dims FROM read_parquet([${files.map((f) => `'${f}'`).join(',')}]) WHERE event_id LIKE 'hostile-%' ORDER BY value`,
    );
    expect(rows.map((r) => ({ eventId: r.event_id, entityId: r.entity_id, value: r.value, dims: JSON.parse(r.dims as string) }))).toEqual(
      events.map((e) => ({ eventId: e.eventId, entityId: e.entityId, value: e.value, dims: e.dims })),
    );
    const total = await queryParquet(
      `SELECT count(*)::INT AS n, count(DISTINCT event_id || producer)::INT AS d FROM read_parquet([${files.map((f) => `'${f}'`).join(',')}])`,
    );
    expect(total[0]).toEqual({ n: accepted, d: accepted });

    // Workers: each hostile entity is counted once with its value, read back through the query API.
    const worker = await startWorker(cfg, log);
    const query = await startQuery(cfg, log);
    try {
      const deadline = Date.now() + 60_000;
      const want = hostile.map((_, i) => i + 0.5);
      let got: (number | null)[] = [];
      while (Date.now() < deadline) {
        got = await Promise.all(
          hostile.map(async (entity) => {
            const q = new URLSearchParams({
              entityId: entity,
              eventType: 'view',
              fn: 'sum',
              from: String(base - 60_000),
              to: String(base + 5 * 60_000),
              step: '1m',
            });
            const r = await fetch(`${query.url}/v1/stats?${q}`);
            return r.status === 200 ? (((await r.json()) as { total: number | null }).total ?? null) : null;
          }),
        );
        if (got.every((v, i) => v === want[i])) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(got).toEqual(want);
    } finally {
      await query.close();
      await worker.close();
    }
  });
});
