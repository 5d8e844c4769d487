// The fault suite: while `sluice load` runs, ingest and workers are SIGKILLed at random moments and restarted,
// private InfluxDB and Redis instances are SIGKILLed and restarted, manifests are delivered twice, a corrupt object
// is announced, and the HTTP API is fuzzed; batches are split into many InfluxDB write requests. At the end the
// strong audit compares the ground truth with InfluxDB, the query API (/v1/stats counts and sums per minute, and
// the all-time totals, for every entity) and DuckDB over the archive: nothing lost, nothing counted twice, no valid
// event refused, every poison input in the DLQ or answered with a 4xx.
import { describe, expect, it } from 'vitest';
import net from 'node:net';
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { createInflux, ensureDatabase } from '../../shared/clients/influx.js';
import { MEASUREMENT_1M } from '../../shared/contracts/influx-series.js';
import { createS3 } from '../../shared/clients/aws.js';
import { encodeManifest } from '../../shared/contracts/manifest.js';
import { PARQUET_SCHEMA_VERSION } from '../../shared/contracts/parquet-schema.js';
import { headObject } from '../../shared/clients/object-store.js';
import { createLogger } from '../../shared/logger.js';
import { openEngine, parquetFiles, queryParquet } from '../../shared/parquet.js';
import { ensureInflux, ensureRedis, type RunningService } from '../../localstack/services.js';
import { listDeadLetters } from '../../workers/dead-letters.js';
import { runLoad } from '../../cli/load-generator.js';
import { testConfig } from '../support/config.js';
import { startProcess, type ChildService } from '../support/processes.js';
import { FAST_WORKER_ENV, pastHour, queueDepth, randomEvents, sendManifests, uploadBatches, waitUntil } from '../support/batches.js';
import { downloadTo, listKeys } from '../support/sqs.js';
import { loadConfig } from '../../shared/config.js';

const log = createLogger('faults', 'warn');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });

describe('fault suite', () => {
  it('loses nothing and counts nothing twice through kills, restarts, duplicates, poison and fuzzing', async () => {
    // Private InfluxDB and Redis, so restarting them cannot disturb other test files.
    const [influxPort, redisPort, ingestPort] = await Promise.all([freePort(), freePort(), freePort()]);
    const base = await testConfig();
    const svcDir = path.join(base.SLUICE_DATA_DIR, 'services');
    const influxUrl = `http://127.0.0.1:${influxPort}`;
    const redisUrl = `redis://127.0.0.1:${redisPort}`;
    let influxSvc: RunningService = await ensureInflux(influxUrl, svcDir, log);
    let redisSvc: RunningService = await ensureRedis(redisUrl, svcDir, log);
    // Both must be this test's own processes (never the shared test services): they are SIGKILLed below.
    expect([influxSvc.started, redisSvc.started, typeof influxSvc.kill, typeof redisSvc.kill]).toEqual([true, true, 'function', 'function']);
    const env = {
      ...base.env,
      ...FAST_WORKER_ENV,
      SLUICE_INFLUX_URL: influxUrl,
      SLUICE_REDIS_URL: redisUrl,
      SLUICE_INGEST_PORT: String(ingestPort),
      SLUICE_FLUSH_MAX_EVENTS: '20000',
      SLUICE_FLUSH_MAX_AGE: '1s',
      SLUICE_NODE_ID: 'faults-1',
      // The smallest write request: a batch of a few thousand events becomes many InfluxDB write chunks.
      SLUICE_INFLUX_BATCH_POINTS: '100',
    };
    const cfg = loadConfig({ ...process.env, ...env });
    await ensureDatabase(createInflux(cfg), cfg.SLUICE_INFLUX_DB);

    let ingest = await startProcess('ingest', env, 'ingest');
    const workers: ChildService[] = [await startProcess('worker', env, 'worker-0'), await startProcess('worker', env, 'worker-1')];
    const query = await startProcess('query', env, 'query');
    const url = `http://127.0.0.1:${ingestPort}`;
    let chaos = true;
    try {
      // Chaos runs beside the load: kills and restarts at random moments.
      const faults: string[] = [];
      const chaosLoop = (async () => {
        let round = 0;
        while (chaos) {
          await sleep(1_500 + Math.random() * 2_000);
          if (!chaos) break;
          const kind = round++ % 4;
          if (kind === 0) {
            await ingest.kill('SIGKILL');
            ingest = await startProcess('ingest', env, 'ingest');
            faults.push('SIGKILL ingest');
          } else if (kind === 1) {
            const i = Math.floor(Math.random() * workers.length);
            await workers[i]!.kill('SIGKILL');
            workers[i] = await startProcess('worker', env, `worker-${i}`);
            faults.push('SIGKILL worker');
          } else if (kind === 2) {
            await influxSvc.kill!('SIGKILL');
            await sleep(1_000);
            influxSvc = await ensureInflux(influxUrl, svcDir, log);
            faults.push('SIGKILL InfluxDB');
          } else {
            await redisSvc.kill!('SIGKILL');
            await sleep(500);
            redisSvc = await ensureRedis(redisUrl, svcDir, log);
            faults.push('SIGKILL Redis');
          }
        }
      })();

      // Fuzz the HTTP API while everything else happens: every malformed request gets a 4xx, never a 5xx.
      const fuzzStatuses: number[] = [];
      // Events in fuzz requests that the node legitimately refused (per-event reasons in a 202), and any it accepted.
      let fuzzRefusedEvents = 0;
      let fuzzAcceptedEvents = 0;
      const fuzz = (async () => {
        const bodies = [
          '[{"eventId":',
          '{"a":1}\n{"b"',
          '\u0000\u0001',
          '[1,2,3]',
          '[' + '['.repeat(10_000),
          '[{"eventId":"x","entityId":"' + 'y'.repeat(300) + '","eventType":"view","timestamp":1}]',
          'null',
          '"string"',
          '{}',
        ];
        for (let i = 0; i < 60; i++) {
          const body = i % 10 === 9 ? Buffer.from(Array.from({ length: 200 }, () => Math.floor(Math.random() * 256))) : Buffer.from(bodies[i % bodies.length]!);
          // The node may be down for a restart (longer on a loaded machine): the request is sent again until answered.
          for (let attempt = 0; attempt < 40; attempt++) {
            try {
              const r = await fetch(`${url}/v1/events`, {
                method: 'POST',
                body: new Uint8Array(body),
                headers: { 'content-type': i % 2 ? 'application/x-ndjson' : 'application/json' },
              });
              fuzzStatuses.push(r.status);
              if (r.status === 202) {
                const j = (await r.json()) as { accepted: number; rejected: unknown[] };
                fuzzAcceptedEvents += j.accepted;
                fuzzRefusedEvents += j.rejected.length;
              }
              break;
            } catch {
              await sleep(250);
            }
          }
          await sleep(150);
        }
      })();

      const load = await runLoad({
        url,
        rate: 3_000,
        durationMs: 25_000,
        entities: 500,
        skew: 1.1,
        types: { view: 0.8, like: 0.2 },
        duplicateRatio: 0.02,
        lateRatio: 0.02,
        burstEveryMs: 10_000,
        burstForMs: 1_000,
        burstFactor: 5,
        seed: 9,
        idPrefix: `f${Date.now().toString(36)}`,
        concurrency: 2,
      });
      // Every kind of fault (ingest, worker, InfluxDB, Redis) happens at least once, even on a slow machine.
      await waitUntil('one fault of each kind', () => faults.length >= 4, 120_000);
      chaos = false;
      await Promise.all([chaosLoop, fuzz]);
      // No valid event may be refused, whatever failed meanwhile: every one the load sent was acknowledged in the
      // end (the ground truth drops refused events, so a refusal would otherwise go unnoticed).
      expect({ failedEvents: load.failedEvents, rejected: load.clientStats.rejected, failed: load.clientStats.failed }).toEqual({
        failedEvents: 0,
        rejected: 0,
        failed: 0,
      });
      // What the fuzz sent is refused, counted apart from the load: none of it accepted.
      expect(fuzzAcceptedEvents).toBe(0);

      // Manifests delivered twice: re-announce two archived objects, twice each.
      const s3 = createS3(cfg);
      await waitUntil('ingest delivered its WAL', async () => (await listKeys(s3, cfg.SLUICE_RAW_BUCKET, 'events/')).length > 0, 60_000);
      const keys = await listKeys(s3, cfg.SLUICE_RAW_BUCKET, 'events/');
      const again: string[] = [];
      for (const key of keys.slice(0, 2)) {
        const h = (await headObject(s3, cfg.SLUICE_RAW_BUCKET, key))!;
        const body = encodeManifest({
          bucket: cfg.SLUICE_RAW_BUCKET,
          key,
          eventCount: Number(h.metadata['sluice-event-count']),
          minEventTime: new Date(0).toISOString(),
          maxEventTime: new Date(0).toISOString(),
          byteSize: h.bytes,
          checksum: { algorithm: 'sha256', value: h.metadata['sluice-sha256']! },
          schemaVersion: PARQUET_SCHEMA_VERSION,
          producer: 'faults-1',
          createdAt: new Date().toISOString(),
        });
        again.push(body, body);
      }
      await sendManifests(cfg, again);
      // A corrupt object, announced like a real batch.
      const [poison] = await uploadBatches(cfg, randomEvents(10, { start: pastHour() }), { bytes: Buffer.from('PAR1 definitely not parquet PAR1') });
      await sendManifests(cfg, [poison!.body]);

      expect(await ingest.kill('SIGTERM')).toBe(0); // a graceful stop delivers every WAL segment first
      await waitUntil('the queue is drained', async () => (await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)) === 0, 180_000);

      // 1. Ground truth vs InfluxDB (what the query API reads).
      const truth = new Map<string, { count: number; sum: number }>();
      for (const [k, v] of load.perMinute) {
        const [e, t] = k.split('\u0000');
        const x = truth.get(`${e}|${t}`) ?? { count: 0, sum: 0 };
        x.count += v.count;
        x.sum += v.sum;
        truth.set(`${e}|${t}`, x);
      }
      const rows = await createInflux(cfg).query<{ entity_id: string; event_type: string; c: number; s: number }>(
        `SELECT sum("count") AS c, sum("sum") AS s FROM ${MEASUREMENT_1M} GROUP BY entity_id, event_type`,
      );
      const counted = new Map(rows.map((r) => [`${r.entity_id}|${r.event_type}`, { count: r.c, sum: r.s }]));
      const diff = [...new Set([...truth.keys(), ...counted.keys()])].filter(
        (k) => truth.get(k)?.count !== counted.get(k)?.count || Math.abs((truth.get(k)?.sum ?? 0) - (counted.get(k)?.sum ?? 0)) > 1e-6,
      );
      const show = (k: string) => `${k}: truth ${JSON.stringify(truth.get(k))} counted ${JSON.stringify(counted.get(k))}`;
      expect({ faults: faults.length >= 4, diff: diff.slice(0, 5).map(show) }).toEqual({ faults: true, diff: [] });

      // 2. The query API agrees for every entity and type: /v1/stats counts and sums per minute and over the range,
      //    and the all-time totals.
      const truthMinutes = new Map<string, Map<number, { count: number; sum: number }>>();
      let firstMinute = Infinity;
      let lastMinute = -Infinity;
      for (const [k, v] of load.perMinute) {
        const [e, t, m] = k.split('\u0000') as [string, string, string];
        const minute = Number(m);
        firstMinute = Math.min(firstMinute, minute);
        lastMinute = Math.max(lastMinute, minute);
        const per = truthMinutes.get(`${e}|${t}`) ?? new Map<number, { count: number; sum: number }>();
        per.set(minute, v);
        truthMinutes.set(`${e}|${t}`, per);
      }
      const from = firstMinute;
      const to = lastMinute + 60_000;
      const apiDiff: string[] = [];
      const apiKeys = [...truth.keys()];
      const checkEntity = async (k: string) => {
        const [entity, type] = k.split('|') as [string, string];
        const want = truth.get(k)!;
        const perMinute = truthMinutes.get(k)!;
        for (const fn of ['count', 'sum'] as const) {
          const res = await fetch(`${query.url}/v1/stats?entityId=${encodeURIComponent(entity)}&eventType=${type}&fn=${fn}&from=${from}&to=${to}&step=1m`, {
            headers: { 'cache-control': 'no-cache' },
          });
          if (res.status !== 200) {
            apiDiff.push(`${k} ${fn}: HTTP ${res.status}`);
            continue;
          }
          const r = (await res.json()) as { points: { t: string; value: number }[]; total: number | null };
          const got = new Map(r.points.map((p) => [Date.parse(p.t), p.value]));
          for (const minute of new Set([...got.keys(), ...perMinute.keys()])) {
            const w = perMinute.get(minute)?.[fn];
            const g = got.get(minute);
            if (w === undefined || g === undefined || Math.abs(w - g) > 1e-6) apiDiff.push(`${k} ${fn} @${new Date(minute).toISOString()}: got ${g} want ${w}`);
          }
          if (Math.abs((r.total ?? Number.NaN) - want[fn]) > 1e-6) apiDiff.push(`${k} ${fn} total: got ${r.total} want ${want[fn]}`);
        }
        const t = (await (
          await fetch(`${query.url}/v1/entities/${encodeURIComponent(entity)}/total?eventType=${type}`, { headers: { 'cache-control': 'no-cache' } })
        ).json()) as { count: number; sum: number };
        if (t.count !== want.count || Math.abs(t.sum - want.sum) > 1e-6)
          apiDiff.push(`${k} all-time total: got ${JSON.stringify(t)} want ${JSON.stringify(want)}`);
      };
      for (let i = 0; i < apiKeys.length; i += 8) await Promise.all(apiKeys.slice(i, i + 8).map(checkEntity));
      expect({ checked: apiKeys.length, diff: apiDiff.slice(0, 10) }).toEqual({ checked: truth.size, diff: [] });

      // 3. DuckDB over the archive: every acknowledged event is there (each id once after dedup).
      const dir = path.join(cfg.SLUICE_DATA_DIR, 'archive');
      mkdirSync(dir, { recursive: true });
      const files: string[] = [];
      for (const k of keys.concat((await listKeys(s3, cfg.SLUICE_RAW_BUCKET, 'events/')).filter((x) => !keys.includes(x)))) {
        if (k === poison!.manifest.key) continue;
        const f = path.join(dir, `${files.length}.parquet`);
        await downloadTo(s3, cfg.SLUICE_RAW_BUCKET, k, f);
        files.push(f);
      }
      await openEngine({ tempDir: path.join(dir, 'tmp') });
      const arch = await queryParquet(
        `SELECT entity_id, event_type, count(*)::INT AS c FROM (SELECT DISTINCT ON (event_id) * FROM read_parquet(${parquetFiles(files)})) GROUP BY ALL`,
      );
      const archDiff = arch.filter((r) => truth.get(`${r.entity_id}|${r.event_type}`)?.count !== r.c);
      expect(archDiff.slice(0, 5)).toEqual([]);
      expect(arch.length).toBe(truth.size);

      // 4. Every poison input is accounted for: the corrupt batch in the DLQ with its reason, fuzz answered 4xx.
      const dead = await listDeadLetters(cfg, { max: 10 });
      expect(dead.map((d) => [d.key, d.reason])).toEqual([[poison!.manifest.key, 'batch_corrupt']]);
      expect(fuzzStatuses.length).toBeGreaterThan(20);
      expect(fuzzStatuses.filter((s) => s >= 500 && s !== 503)).toEqual([]);
      // The refusals that should happen did: the over-long entity id with its far-past timestamp, each time it was sent.
      expect(fuzzRefusedEvents).toBeGreaterThan(0);
    } finally {
      chaos = false;
      await Promise.all([ingest, ...workers, query].map((w) => w.kill('SIGTERM')));
      await Promise.all([influxSvc.stop(), redisSvc.stop()]);
    }
  }, 420_000);
});
