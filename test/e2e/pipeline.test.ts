// The whole path on real services: 10,000 events over HTTP (100 entities, 3 event types, 3 minutes) →
// ingest WAL → Parquet on S3 → SQS → two worker processes → InfluxDB → query API. The API must return exactly
// the expected counts and sums, and DuckDB reading the archived Parquet objects must agree.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { createS3 } from '../../shared/clients/aws.js';
import { openEngine, parquetFiles, queryParquet } from '../../shared/parquet.js';
import { testConfig } from '../support/config.js';
import { startProcess, type ChildService } from '../support/processes.js';
import { downloadTo, listKeys } from '../support/sqs.js';

const TYPES = ['view', 'like', 'share'];
const N = 10_000;

describe('end to end', () => {
  let cfg: Awaited<ReturnType<typeof testConfig>>;
  let procs: ChildService[] = [];
  let ingestUrl = '';
  let queryUrl = '';
  beforeAll(async () => {
    cfg = await testConfig({ SLUICE_FLUSH_MAX_EVENTS: '4000', SLUICE_FLUSH_MAX_AGE: '1s' });
    const [ingest, w1, w2, query] = await Promise.all([
      startProcess('ingest', cfg.env),
      startProcess('worker', cfg.env, 'worker-1'),
      startProcess('worker', cfg.env, 'worker-2'),
      startProcess('query', cfg.env),
    ]);
    procs = [ingest!, w1!, w2!, query!];
    ingestUrl = ingest!.url;
    queryUrl = query!.url;
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGTERM')));
  });

  it('counts exactly what was sent, and the archive agrees', async () => {
    const base = Math.floor((Date.now() - 10 * 60_000) / 60_000) * 60_000;
    const expected = new Map<string, { count: number; sum: number }>();
    const events = Array.from({ length: N }, (_, i) => {
      const e = {
        eventId: `e2e-${i}`,
        entityId: `video-${i % 100}`,
        eventType: TYPES[Math.floor(i / 100) % 3]!,
        timestamp: base + (i % 180) * 1_000,
        value: (i % 5) + 1,
      };
      const k = `${e.entityId}|${e.eventType}`;
      const x = expected.get(k) ?? { count: 0, sum: 0 };
      x.count++;
      x.sum += e.value;
      expected.set(k, x);
      return e;
    });
    for (let i = 0; i < N; i += 1_000) {
      const r = await fetch(`${ingestUrl}/v1/events`, {
        method: 'POST',
        body: JSON.stringify(events.slice(i, i + 1_000)),
        headers: { 'content-type': 'application/json' },
      });
      expect(r.status).toBe(202);
      expect((await r.json()).accepted).toBe(1_000);
    }
    const from = base - 60_000;
    const to = base + 5 * 60_000;
    const stat = async (entity: string, type: string, fn: string) => {
      const r = await fetch(`${queryUrl}/v1/stats?entityId=${entity}&eventType=${type}&fn=${fn}&from=${from}&to=${to}&step=1m`);
      expect(r.status).toBe(200);
      return (await r.json()) as { total: number; points: { t: string; value: number }[] };
    };

    // Wait until every series is complete (the pipeline is asynchronous), then compare exactly.
    const deadline = Date.now() + 90_000;
    let complete = false;
    while (!complete && Date.now() < deadline) {
      const totals = await Promise.all([...expected.keys()].map((k) => stat(k.split('|')[0]!, k.split('|')[1]!, 'count')));
      complete = totals.reduce((n, t) => n + (t.total ?? 0), 0) >= N;
      if (!complete) await new Promise((r) => setTimeout(r, 500));
    }
    expect(complete).toBe(true);
    for (const [k, want] of expected) {
      const [entity, type] = k.split('|') as [string, string];
      const [count, sum] = await Promise.all([stat(entity, type, 'count'), stat(entity, type, 'sum')]);
      expect({ k, count: count.total, sum: sum.total }).toEqual({ k, count: want.count, sum: want.sum });
      expect(count.points.reduce((n, p) => n + p.value, 0)).toBe(want.count);
      // The all-time total, the most frequent read, comes from the totals the workers keep in Redis.
      const total = await fetch(`${queryUrl}/v1/entities/${entity}/total?eventType=${type}`);
      expect(total.headers.get('x-sluice-cache')).toBe('totals');
      expect(await total.json()).toEqual({ entityId: entity, eventType: type, count: want.count, sum: want.sum });
    }

    // The archive, read by DuckDB, holds the same totals.
    const s3 = createS3(cfg);
    const keys = await listKeys(s3, cfg.SLUICE_RAW_BUCKET, 'events/');
    const dir = path.join(cfg.SLUICE_DATA_DIR, 'download');
    mkdirSync(dir, { recursive: true });
    const files: string[] = [];
    for (const k of keys) {
      const f = path.join(dir, k.replaceAll('/', '_'));
      await downloadTo(s3, cfg.SLUICE_RAW_BUCKET, k, f);
      files.push(f);
    }
    await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duck') });
    const rows = await queryParquet(`SELECT entity_id, event_type, count(*)::INT AS n, sum(value) AS s FROM read_parquet(${parquetFiles(files)}) GROUP BY ALL`);
    expect(rows).toHaveLength(expected.size);
    for (const r of rows)
      expect({ n: r.n, s: r.s }).toEqual({ n: expected.get(`${r.entity_id}|${r.event_type}`)!.count, s: expected.get(`${r.entity_id}|${r.event_type}`)!.sum });
  });
});
