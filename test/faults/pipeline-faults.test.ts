// The fault suite: while `sluice load` runs, ingest and workers are SIGKILLed at random moments and restarted,
// InfluxDB and Redis are restarted, manifests are delivered twice, a corrupt object is announced, and the HTTP
// API is fuzzed. At the end the strong audit compares the ground truth, the query API and DuckDB over the
// archive: nothing lost, nothing counted twice, every poison input in the DLQ or answered with a 4xx.
import { describe, expect, it } from 'vitest';
import net from 'node:net';
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { createInflux, ensureDatabase, MEASUREMENT_1M } from '../../shared/clients/influx.js';
import { createS3 } from '../../shared/clients/aws.js';
import { encodeManifest } from '../../shared/contracts/manifest.js';
import { PARQUET_SCHEMA_VERSION } from '../../shared/contracts/parquet-schema.js';
import { headObject } from '../../shared/clients/object-store.js';
import { createLogger } from '../../shared/logger.js';
import { openEngine, parquetFiles, queryParquet } from '../../shared/parquet.js';
import { ensureInflux, ensureRedis, type RunningService } from '../../localstack/services.js';
import { listDeadLetters } from '../../workers/dead-letters.js';
import { runLoad } from '../../bench/load-generator.js';
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
    const env = {
      ...base.env,
      ...FAST_WORKER_ENV,
      SLUICE_INFLUX_URL: influxUrl,
      SLUICE_REDIS_URL: redisUrl,
      SLUICE_INGEST_PORT: String(ingestPort),
      SLUICE_FLUSH_MAX_EVENTS: '20000',
      SLUICE_FLUSH_MAX_AGE: '1s',
      SLUICE_NODE_ID: 'faults-1',
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
            await influxSvc.stop();
            await sleep(1_000);
            influxSvc = await ensureInflux(influxUrl, svcDir, log);
            faults.push('restart InfluxDB');
          } else {
            await redisSvc.stop();
            await sleep(500);
            redisSvc = await ensureRedis(redisUrl, svcDir, log);
            faults.push('restart Redis');
          }
        }
      })();

      // Fuzz the HTTP API while everything else happens: every malformed request gets a 4xx, never a 5xx.
      const fuzzStatuses: number[] = [];
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
          try {
            const r = await fetch(`${url}/v1/events`, {
              method: 'POST',
              body: new Uint8Array(body),
              headers: { 'content-type': i % 2 ? 'application/x-ndjson' : 'application/json' },
            });
            fuzzStatuses.push(r.status);
          } catch {
            /* the node may be down for a restart */
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
      chaos = false;
      await Promise.all([chaosLoop, fuzz]);

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

      // 2. The query API agrees on a sample of entities (the heaviest hitters and a few from the tail).
      for (const k of [...truth.keys()].slice(0, 20)) {
        const [entity, type] = k.split('|') as [string, string];
        const r = (await (
          await fetch(`${query.url}/v1/entities/${encodeURIComponent(entity)}/total?eventType=${type}`, { headers: { 'cache-control': 'no-cache' } })
        ).json()) as { count: number; sum: number };
        expect({ k, count: r.count }).toEqual({ k, count: truth.get(k)!.count });
      }

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
    } finally {
      chaos = false;
      await Promise.all([ingest, ...workers, query].map((w) => w.kill('SIGTERM')));
      await Promise.all([influxSvc.stop(), redisSvc.stop()]);
    }
  }, 420_000);
});
