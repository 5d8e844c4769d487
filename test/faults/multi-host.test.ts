// The pipeline spread over hosts — network namespaces on one private /24 (test/support/netns.ts): "shared" runs Redis,
// InfluxDB and the S3+SQS emulator, "lb" runs haproxy health-checking /readyz in front of two ingest hosts, and three
// worker hosts run one `sluice worker` each; the producer (this process) reaches them only over that network. Under a
// few thousand events/s through the load balancer, re-sending every request without a 202 (honouring Retry-After),
// with copies sent at once and re-sends after a 202, one ingest host is SIGKILLed, one worker host is SIGKILLed and
// another worker host is cut off the network for 30 s. The killed ingest host comes back at the end and delivers its
// WAL. Afterwards the archive, read with DuckDB, holds every acknowledged event exactly once and nothing else, and
// InfluxDB's per-minute counts, sums, minima and maxima equal the acknowledged events'.
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SEGMENT_FILE } from '../../ingest/wal-segments.js';
import { type LoadBalancer, startLoadBalancer } from '../../localstack/load-balancer.js';
import { ensureDebianPackages } from '../../localstack/services.js';
import { createInflux, ensureDatabase } from '../../shared/clients/influx.js';
import { createS3 } from '../../shared/clients/aws.js';
import { loadConfig } from '../../shared/config.js';
import type { Event } from '../../shared/contracts/event.js';
import { createLogger } from '../../shared/logger.js';
import { setupResources } from '../../shared/setup-resources.js';
import { archiveEventIdCounts } from '../support/archive.js';
import {
  diffAggregates,
  FAST_WORKER_ENV,
  groundTruth,
  influxAggregates,
  metricValueOrZero,
  queueDepth,
  testEvent,
  totalCount,
  waitUntil,
} from '../support/batches.js';
import { testEnv } from '../support/config.js';
import { netnsUnavailable, removeNetnsLeftovers, type SharedServices, startSharedServices, VirtualNetwork } from '../support/netns.js';
import { type ChildService, startProcess } from '../support/processes.js';
import { listKeys } from '../support/sqs.js';

const log = createLogger('multi-host-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Why this machine cannot run the test (no network namespaces), or undefined. */
const unavailable = netnsUnavailable();
if (unavailable) process.stderr.write(`multi-host.test.ts skipped: ${unavailable}\n`);

const SUBNET = '10.213.0';
const HOSTS = [
  { name: 'shared', octet: 2 },
  { name: 'lb', octet: 3 },
  { name: 'ingest-a', octet: 11 },
  { name: 'ingest-b', octet: 12 },
  { name: 'worker-1', octet: 21 },
  { name: 'worker-2', octet: 22 },
  { name: 'worker-3', octet: 23 },
] as const;
const INGEST_PORT = 8080;
const WORKER_PORT = 9100;
const LB_PORT = 8080;

/** The load: RATE events/s in requests of REQUEST_EVENTS for LOAD_MS, at most CONNECTIONS requests in flight. */
const RATE = 2_500;
const REQUEST_EVENTS = 200;
const LOAD_MS = 24_000;
const CONNECTIONS = 12;
const REQUESTS = Math.round((RATE * LOAD_MS) / 1000 / REQUEST_EVENTS);
/** Fault times after the load starts, and how long the worker host stays cut off. */
const KILL_INGEST_AT = 4_000;
const KILL_WORKER_AT = 7_000;
const CUT_AT = 9_000;
const CUT_MS = 30_000;

interface Answer {
  accepted: number;
  duplicates: number;
  rejectedCount?: number;
}

describe('the pipeline over several hosts', () => {
  let network: VirtualNetwork | undefined;
  let shared: SharedServices | undefined;
  let lb: LoadBalancer | undefined;
  const children: ChildService[] = [];
  let aborted = false;
  afterAll(async () => {
    aborted = true;
    await lb?.stop();
    for (const c of children) await c.kill('SIGKILL');
    await shared?.stop();
    network?.destroy();
  }, 120_000);

  it.skipIf(unavailable !== undefined)(
    `counts every acknowledged event exactly once through an ingest host SIGKILL, a worker host SIGKILL and a 30 s network cut${unavailable ? ` (skipped: ${unavailable})` : ''}`,
    async () => {
      await removeNetnsLeftovers(); // namespaces and processes of a run that crashed before its clean-up
      ensureDebianPackages(log, { influxdb: true, redis: true, haproxy: true });
      const net = VirtualNetwork.create({ subnet: SUBNET, rootOctet: 1, hosts: HOSTS });
      network = net;
      const host = (name: string) => net.host(name);

      const env = testEnv({ ...FAST_WORKER_ENV, SLUICE_FLUSH_MAX_AGE: '2s', SLUICE_DEDUP_LEASE: '2s', SLUICE_ALLOW_ANONYMOUS: 'true' });
      const hostDir = (name: string) => {
        const d = path.join(env.SLUICE_DATA_DIR!, 'hosts', name);
        mkdirSync(d, { recursive: true });
        return d;
      };
      shared = await startSharedServices(host('shared'), hostDir('shared'));
      Object.assign(env, { SLUICE_REDIS_URL: shared.redisUrl, SLUICE_INFLUX_URL: shared.influxUrl, AWS_ENDPOINT_URL: shared.awsEndpoint });
      const cfg = loadConfig({ ...process.env, ...env });
      await setupResources(cfg);
      await ensureDatabase(createInflux(cfg), cfg.SLUICE_INFLUX_DB);

      // Each host has its own data folder (no shared disk: a dead ingest host's WAL waits for that host).
      const ingestEnv = (name: string) => ({
        ...env,
        SLUICE_DATA_DIR: hostDir(name),
        SLUICE_NODE_ID: name,
        SLUICE_INGEST_HOST: host(name).address,
        SLUICE_INGEST_PORT: String(INGEST_PORT),
        SLUICE_INGEST_PROCESSES: '1',
      });
      const workerEnv = (name: string) => ({
        ...env,
        SLUICE_DATA_DIR: hostDir(name),
        SLUICE_NODE_ID: name,
        SLUICE_WORKER_HOST: host(name).address,
        SLUICE_WORKER_PORT: String(WORKER_PORT),
      });
      const startIngestHost = async (name: string) => {
        const c = await startProcess('ingest', ingestEnv(name), name, host(name).exec);
        children.push(c);
        return c;
      };
      const startWorkerHost = async (name: string) => {
        const c = await startProcess('worker', workerEnv(name), name, host(name).exec);
        children.push(c);
        return c;
      };
      const [ingestA, ingestB, worker1] = await Promise.all([
        startIngestHost('ingest-a'),
        startIngestHost('ingest-b'),
        startWorkerHost('worker-1'),
        startWorkerHost('worker-2'),
        startWorkerHost('worker-3'),
      ]);
      lb = await startLoadBalancer(
        {
          host: host('lb').address,
          port: LB_PORT,
          backends: [
            { name: 'ingest-a', url: ingestA.url },
            { name: 'ingest-b', url: ingestB.url },
          ],
          dir: hostDir('lb'),
          checkIntervalMs: 500,
          fall: 2,
          rise: 2,
          requestTimeoutMs: cfg.SLUICE_INGEST_REQUEST_TIMEOUT,
          idleTimeoutMs: cfg.SLUICE_INGEST_IDLE_TIMEOUT,
          keepAliveTimeoutMs: cfg.SLUICE_INGEST_KEEPALIVE_TIMEOUT,
          commandPrefix: host('lb').exec,
        },
        log,
      );
      const front = lb;
      const state = async (server: string) => (await front.serverStates())[server] ?? 'missing';
      await waitUntil('haproxy sees both ingest hosts UP', async () => (await state('ingest-a')) === 'UP' && (await state('ingest-b')) === 'UP', 30_000);

      // The producer's events: request r holds REQUEST_EVENTS ids of its own, over 23 entities, 2 types and 5 minutes.
      const now = Date.now();
      const requests: Event[][] = Array.from({ length: REQUESTS }, (_, r) =>
        Array.from({ length: REQUEST_EVENTS }, (_, k) =>
          testEvent(
            `mh-${r}-${k}`,
            `video-${(r * 7 + k) % 23}`,
            now - ((r + k) % 5) * 60_000 - ((k * 7_919) % 60_000),
            ((r * 31 + k) % 97) / 4 - 3,
            k % 4 === 0 ? 'like' : 'view',
          ),
        ),
      );
      const bodies = requests.map((events) =>
        JSON.stringify(events.map((e) => ({ eventId: e.eventId, entityId: e.entityId, eventType: e.eventType, timestamp: e.timestamp, value: e.value }))),
      );
      const acked = new Set<number>();
      const answers = new Map<string, number>();
      const refusedForGood: string[] = [];
      const resendsStored: string[] = [];
      let duplicatesAnswered = 0;

      /** Sends one body through the load balancer until it is answered 202; only 429 and 5xx (nothing stored) are retried. */
      const sendUntilAcked = async (body: string, what: string): Promise<Answer> => {
        for (let attempt = 0; !aborted; attempt++) {
          if (attempt > 400) throw new Error(`${what} was never acknowledged`);
          let status: number;
          let text: string;
          let retryAfter: string | null = null;
          try {
            const r = await fetch(`${front.url}/v1/events`, {
              method: 'POST',
              body,
              headers: { 'content-type': 'application/json' },
              signal: AbortSignal.timeout(15_000),
            });
            status = r.status;
            retryAfter = r.headers.get('retry-after');
            text = await r.text();
          } catch {
            answers.set('no answer', (answers.get('no answer') ?? 0) + 1);
            await sleep(200);
            continue;
          }
          answers.set(String(status), (answers.get(String(status)) ?? 0) + 1);
          if (status === 202) {
            const a = JSON.parse(text) as Answer;
            if (a.rejectedCount) refusedForGood.push(`${what}: ${a.rejectedCount} events rejected: ${text.slice(0, 300)}`);
            return a;
          }
          if (status !== 429 && status < 500) {
            refusedForGood.push(`${what}: ${status} ${text.slice(0, 300)}`);
            throw new Error(`${what} was refused with ${status}: ${text.slice(0, 300)}`);
          }
          // 503 + Retry-After from a node (ids in flight elsewhere, a node going away); 502/504 from haproxy.
          await sleep(retryAfter ? Number(retryAfter) * 1000 * (0.5 + Math.random()) : 200 + Math.random() * 300);
        }
        throw new Error(`${what}: stopped`);
      };

      // Requests are due at an even pace; a connection takes the next one once its own is acknowledged.
      const t0 = Date.now();
      let next = 0;
      const connection = async () => {
        for (let r = next++; r < REQUESTS && !aborted; r = next++) {
          await sleep(t0 + (r * LOAD_MS) / REQUESTS - Date.now());
          // Every tenth request is sent twice at once (an impatient producer's second connection).
          const copies = r % 10 === 5 ? 2 : 1;
          const got = await Promise.all(Array.from({ length: copies }, (_, c) => sendUntilAcked(bodies[r]!, `request ${r} (copy ${c})`)));
          for (const a of got) duplicatesAnswered += a.duplicates;
          acked.add(r);
          // Every tenth request is sent again after its 202 (an answer the producer did not get): all duplicates.
          if (r % 10 === 0) {
            const again = await sendUntilAcked(bodies[r]!, `re-send of request ${r}`);
            duplicatesAnswered += again.duplicates;
            if (again.accepted !== 0) resendsStored.push(`request ${r} re-sent after its 202: ${again.accepted} accepted, ${again.duplicates} duplicates`);
          }
        }
      };
      const load = Promise.all(Array.from({ length: CONNECTIONS }, connection));
      load.catch(() => {
        aborted = true;
      });

      // The faults, on their own schedule while the load runs.
      const walA = path.join(hostDir('ingest-a'), 'ingest', 'ingest-a', 'wal');
      const segmentsOf = (dir: string) => readdirSync(dir).filter((n) => SEGMENT_FILE.test(n));
      let segmentsAtKill: string[] = [];
      const faults = (async () => {
        await sleep(t0 + KILL_INGEST_AT - Date.now());
        // ingest-a dies (no drain) with acknowledged events in its WAL and requests in flight.
        await waitUntil('events in the WAL of ingest-a', () => segmentsOf(walA).some((n) => statSync(path.join(walA, n)).size > 0), 10_000);
        segmentsAtKill = segmentsOf(walA).map((n) => n.replace(/\.ndjson$/, ''));
        await ingestA.kill('SIGKILL');
        await waitUntil('haproxy takes ingest-a out', async () => (await state('ingest-a')).startsWith('DOWN'), 10_000);
        await sleep(t0 + KILL_WORKER_AT - Date.now());
        // worker-1 dies, preferably holding batches.
        await waitUntil('worker-1 holds a batch', async () => (await metricValueOrZero(worker1.url, 'sluice_worker_batches_in_flight')) > 0, 5_000).catch(
          () => undefined,
        );
        await worker1.kill('SIGKILL');
        await sleep(t0 + CUT_AT - Date.now());
        // worker-3's cable is pulled: its connections stall, its heartbeats fail, its batches go to other workers.
        net.disconnect('worker-3');
        await sleep(CUT_MS);
        net.reconnect('worker-3');
      })();
      faults.catch(() => undefined); // awaited below

      await load;
      expect(acked.size).toBe(REQUESTS);

      // ingest-a comes back on its own WAL and delivers it; then both ingest hosts drain (SIGTERM delivers everything).
      const s3 = createS3(cfg);
      const rawKeys = () => listKeys(s3, cfg.SLUICE_RAW_BUCKET, 'events/');
      const keyOfSegment = (keys: string[], seg: string) => keys.some((k) => k.endsWith(`/ingest-a-${seg}.parquet`));
      const keysBefore = await rawKeys();
      const ingestA2 = await startIngestHost('ingest-a');
      await waitUntil('haproxy puts ingest-a back', async () => (await state('ingest-a')) === 'UP', 30_000);
      expect(await ingestA2.kill('SIGTERM')).toBe(0);
      expect(await ingestB.kill('SIGTERM')).toBe(0);
      const walLeft = readdirSync(walA);
      const keysAfter = await rawKeys();
      s3.destroy();
      const deliveredOnRestart = segmentsAtKill.filter((seg) => !keyOfSegment(keysBefore, seg) && keyOfSegment(keysAfter, seg));

      // The cut ends; the remaining workers drain the queue (a batch is deleted only once its effects are durable).
      await faults;
      let emptyPolls = 0;
      await waitUntil(
        'the batch queue drained',
        async () => {
          emptyPolls = (await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)) === 0 ? emptyPolls + 1 : 0;
          return emptyPolls >= 3;
        },
        120_000,
      );

      const ackedEvents = [...acked].flatMap((r) => requests[r]!);
      const ackedIds = new Set(ackedEvents.map((e) => e.eventId));
      const counts = await archiveEventIdCounts(cfg);
      const influx = await influxAggregates(cfg, now - 3_600_000, now + 3_600_000);
      process.stdout.write(
        `multi-host: ${ackedIds.size} events acknowledged in ${REQUESTS} requests; answers ${JSON.stringify(Object.fromEntries(answers))}; ` +
          `${duplicatesAnswered} duplicates answered; ingest-a's WAL at the kill: ${segmentsAtKill.length} segments, ${deliveredOnRestart.length} delivered on restart\n`,
      );
      expect({
        missing: ackedEvents
          .filter((e) => !counts.has(e.eventId))
          .map((e) => e.eventId)
          .slice(0, 10),
        storedTwice: [...counts]
          .filter(([, n]) => n > 1)
          .map(([id, n]) => `${id}×${n}`)
          .slice(0, 10),
        neverAcknowledged: [...counts.keys()].filter((id) => !ackedIds.has(id)).slice(0, 10),
        influxDiff: diffAggregates(influx, groundTruth(ackedEvents)).slice(0, 10),
        resendsStored: resendsStored.slice(0, 10),
        refusedForGood,
        deadLetters: await queueDepth(cfg, cfg.SLUICE_DLQ_NAME),
        walLeft,
      }).toEqual({ missing: [], storedTwice: [], neverAcknowledged: [], influxDiff: [], resendsStored: [], refusedForGood: [], deadLetters: 0, walLeft: [] });
      expect(counts.size).toBe(ackedIds.size);
      expect(totalCount(influx)).toBe(ackedIds.size);
      expect(duplicatesAnswered).toBeGreaterThan(0); // the copies and re-sends really met their originals
      expect(deliveredOnRestart.length).toBeGreaterThan(0); // ingest-a's WAL reached the archive only once it came back
    },
    300_000,
  );
});
