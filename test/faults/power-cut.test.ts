// A power cut: a whole local stack of its own (InfluxDB, Redis, the S3+SQS emulator, ingest, two workers, the query API)
// takes a steady load from two producers and every one of its processes is SIGKILLed at the same moment, while some
// batches are counted, some wait in the queue (fauxqs keeps it in memory: lost) and some sit in the WAL. Started again
// from the same data folders, with the ingest node under another id (the dead node's WAL is adopted) and one
// `sluice reconcile --grace 0s` (what `sluice start` runs at start) for the lost manifests: every acknowledged event is
// counted exactly once in InfluxDB, in /v1/stats and in the all-time totals, the archive read with DuckDB holds each
// event id once per producer, and InfluxDB, Redis and the S3 store came back with what they held before the cut.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureEmulator, ensureInflux, ensureRedis, nodeEntry, type RunningService } from '../../localstack/services.js';
import { createS3, createSqs } from '../../shared/clients/aws.js';
import { createInflux, ensureDatabase } from '../../shared/clients/influx.js';
import { createRedis } from '../../shared/clients/redis.js';
import { loadConfig, type Config } from '../../shared/config.js';
import type { Event } from '../../shared/contracts/event.js';
import { createLogger } from '../../shared/logger.js';
import { openEngine, parquetFiles, queryParquet } from '../../shared/parquet.js';
import { queueBacklog } from '../../shared/queue-stats.js';
import { setupResources } from '../../shared/setup-resources.js';
import { diffAggregates, FAST_WORKER_ENV, groundTruth, influxAggregates, queueDepth, testEvent, totalCount, waitUntil } from '../support/batches.js';
import { testEnv } from '../support/config.js';
import { startProcess, type ChildService } from '../support/processes.js';
import { downloadTo, listKeys } from '../support/sqs.js';

const log = createLogger('power-cut', 'warn');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });

const PRODUCERS = [
  { name: 'web', key: 'k-web-power-cut' },
  { name: 'app', key: 'k-app-power-cut' },
] as const;
/** Each producer sends one request of EVENTS_PER_REQUEST events every PACE_MS: 2 × 500 events/s. */
const PACE_MS = 100;
const EVENTS_PER_REQUEST = 50;

/** Sends a steady load, recording exactly which events got a 202 and which requests were never answered. */
class SteadyLoad {
  readonly acked = new Map<string, Event & { producer: string }>();
  /** Events of requests still in flight when the power went: maybe durable, never acknowledged. */
  readonly unanswered = new Map<string, Event & { producer: string }>();
  readonly refused: string[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private cut = false;
  private loops: Promise<void>[] = [];
  private next = 0;

  constructor(
    private readonly url: string,
    private readonly t0: number,
  ) {}

  start(): void {
    this.loops = PRODUCERS.map((p) => this.producerLoop(p));
  }

  /** Stops sending at once (called in the same tick as the kills); requests in flight then fail, unanswered. */
  powerCut(): void {
    this.cut = true;
  }

  async settled(): Promise<void> {
    await Promise.all(this.loops);
    await Promise.all([...this.inFlight]);
  }

  private async producerLoop(p: (typeof PRODUCERS)[number]): Promise<void> {
    const begin = Date.now();
    for (let k = 0; !this.cut; k++) {
      const wait = begin + k * PACE_MS - Date.now();
      if (wait > 0) await sleep(wait);
      if (this.cut) break;
      const events = Array.from({ length: EVENTS_PER_REQUEST }, () => {
        const i = this.next++;
        // Values in quarters: every sum is exact in a double. Event times over the last four minutes.
        const e = testEvent(`${p.name}-${i}`, `pc-e${i % 11}`, this.t0 - (i % 4) * 60_000 - (i % 50) * 1_000, (i % 7) + 0.25, i % 4 === 0 ? 'like' : 'view');
        return { ...e, producer: p.name };
      });
      const req = this.send(p.key, events);
      this.inFlight.add(req);
      void req.finally(() => this.inFlight.delete(req));
    }
  }

  private async send(key: string, events: (Event & { producer: string })[]): Promise<void> {
    try {
      const r = await fetch(`${this.url}/v1/events`, {
        method: 'POST',
        body: JSON.stringify(events.map(({ eventId, entityId, eventType, timestamp, value }) => ({ eventId, entityId, eventType, timestamp, value }))),
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        signal: AbortSignal.timeout(10_000),
      });
      const body = (await r.json()) as { rejected?: unknown[] };
      if (r.status !== 202 || body.rejected?.length) {
        this.refused.push(`HTTP ${r.status} ${JSON.stringify(body).slice(0, 200)}`);
        return;
      }
      for (const e of events) this.acked.set(e.eventId, e);
    } catch (err) {
      if (!this.cut) this.refused.push(`request failed before the cut: ${String(err)}`);
      for (const e of events) this.unanswered.set(e.eventId, e);
    }
  }
}

/** The private stack's three services, on fixed ports and data folders so a restart finds its data again. */
class PrivateServices {
  running: RunningService[] = [];
  constructor(
    readonly influxUrl: string,
    readonly redisUrl: string,
    readonly awsEndpoint: string,
    private readonly dir: string,
  ) {}

  async start(): Promise<void> {
    this.running = await Promise.all([
      ensureInflux(this.influxUrl, this.dir, log),
      ensureRedis(this.redisUrl, this.dir, log),
      ensureEmulator(this.awsEndpoint, path.join(this.dir, 'emulator'), log),
    ]);
    // Each must be this test's own process (never the shared test services): they are SIGKILLed below.
    expect(this.running.map((s) => [s.name, s.started, typeof s.kill])).toEqual([
      ['influxdb', true, 'function'],
      ['redis', true, 'function'],
      ['s3+sqs', true, 'function'],
    ]);
  }
}

/** Counts and sums per entity|type from InfluxDB, as the query API folds them. */
async function influxTotals(cfg: Config): Promise<Map<string, { count: number; sum: number }>> {
  const out = new Map<string, { count: number; sum: number }>();
  for (const [k, a] of await influxAggregates(cfg, 0, Date.now() + 3_600_000)) {
    const [entity, type] = k.split('|');
    const t = out.get(`${entity}|${type}`) ?? { count: 0, sum: 0 };
    t.count += a.count;
    t.sum += a.sum;
    out.set(`${entity}|${type}`, t);
  }
  return out;
}

async function ledgerKeys(cfg: Config): Promise<Set<string>> {
  const redis = createRedis(cfg);
  try {
    const keys = new Set<string>();
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${cfg.SLUICE_REDIS_PREFIX}ledger:*`, 'COUNT', 1_000);
      for (const k of batch) keys.add(k);
      cursor = next;
    } while (cursor !== '0');
    return keys;
  } finally {
    redis.disconnect();
  }
}

/** Runs `sluice reconcile --grace 0s` (asynchronously: the children keep running); returns its stdout. */
function reconcileNow(env: Record<string, string>): Promise<string> {
  const [cmd, ...pre] = nodeEntry('cli/sluice.ts');
  const child = spawn(cmd!, [...pre, 'reconcile', '--grace', '0s'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) =>
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`sluice reconcile exited with ${code}: ${err.slice(-2_000)}`)))),
  );
}

const logOf = (dataDir: string, name: string) => {
  const f = path.join(dataDir, `${name}.log`);
  return existsSync(f) ? readFileSync(f, 'utf8') : '';
};
const walSegments = (dataDir: string, node: string) => {
  const dir = path.join(dataDir, 'ingest', node, 'wal');
  return existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.ndjson')) : [];
};

describe('a power cut of the whole local stack', () => {
  it('counts every acknowledged event exactly once after SIGKILL of every process and a restart from the same data folders', async () => {
    const [influxPort, redisPort, awsPort] = await Promise.all([freePort(), freePort(), freePort()]);
    const base = testEnv(); // fresh names and data folder; the endpoints are this test's own
    const dataDir = base.SLUICE_DATA_DIR!;
    const services = new PrivateServices(
      `http://127.0.0.1:${influxPort}`,
      `redis://127.0.0.1:${redisPort}`,
      `http://127.0.0.1:${awsPort}`,
      path.join(dataDir, 'services'),
    );
    const env = {
      ...base,
      ...FAST_WORKER_ENV,
      SLUICE_INFLUX_URL: services.influxUrl,
      SLUICE_REDIS_URL: services.redisUrl,
      AWS_ENDPOINT_URL: services.awsEndpoint,
      SLUICE_API_KEYS: PRODUCERS.map((p) => `${p.name}:${p.key}`).join(','),
      SLUICE_FLUSH_MAX_EVENTS: '1500',
      SLUICE_FLUSH_MAX_AGE: '700ms',
      SLUICE_WAL_ADOPT_INTERVAL: '1s',
      SLUICE_LOG_LEVEL: 'info',
    };
    const cfg = loadConfig({ ...process.env, ...env });
    const children: ChildService[] = [];
    const startAll = async (node: string, tag: string) => {
      const ingest = await startProcess('ingest', { ...env, SLUICE_NODE_ID: node }, `ingest-${tag}`);
      children.push(ingest);
      const rest = await Promise.all([
        startProcess('worker', env, `worker-a-${tag}`),
        startProcess('worker', env, `worker-b-${tag}`),
        startProcess('query', { ...env, SLUICE_INGEST_URL: ingest.url }, `query-${tag}`),
      ]);
      children.push(...rest);
      return { ingest, query: rest[2] };
    };

    try {
      await services.start();
      await setupResources(cfg);
      await ensureDatabase(createInflux(cfg), cfg.SLUICE_INFLUX_DB);
      const before = await startAll('pc-1', '1');
      const load = new SteadyLoad(before.ingest.url, Date.now());
      load.start();

      // The cut comes in the middle of the load, once batches are counted and the WAL holds more, at a moment when a
      // manifest is queued or a worker holds one (its effects not yet recorded in the ledger).
      const s3 = createS3(cfg);
      const sqs = createSqs(cfg);
      await waitUntil(
        'counted batches and 3,000 acknowledged events',
        async () => load.acked.size >= 3_000 && totalCount(await influxAggregates(cfg, 0, Date.now() + 3_600_000)) > 0,
        40_000,
      );
      const keysBefore = await listKeys(s3, cfg.SLUICE_RAW_BUCKET, 'events/');
      const countedBefore = totalCount(await influxAggregates(cfg, 0, Date.now() + 3_600_000));
      const ledgerBefore = await ledgerKeys(cfg);
      s3.destroy();
      let queuedAtCut = 0;
      await waitUntil(
        'a manifest queued or in flight',
        async () => {
          queuedAtCut = await queueBacklog(sqs, cfg.SLUICE_QUEUE_NAME);
          return queuedAtCut > 0;
        },
        20_000,
      );

      // The power goes: every process of the stack at once, services included.
      load.powerCut();
      const all = [...services.running, ...children.splice(0)];
      await Promise.all(all.map((p) => p.kill!('SIGKILL')));
      sqs.destroy();
      await load.settled();
      const ackedAtCut = load.acked.size;
      const walLeft = walSegments(dataDir, 'pc-1');
      expect(load.refused).toEqual([]);
      expect(walLeft.length).toBeGreaterThan(0); // acknowledged events left in the dead node's WAL

      // Power back: the services come up from their data folders with what they held before the cut.
      await services.start();
      const s3b = createS3(cfg);
      const keysAfter = new Set(await listKeys(s3b, cfg.SLUICE_RAW_BUCKET, 'events/'));
      expect(keysBefore.filter((k) => !keysAfter.has(k))).toEqual([]);
      expect(keysBefore.length).toBeGreaterThan(0);
      expect(totalCount(await influxAggregates(cfg, 0, Date.now() + 3_600_000))).toBeGreaterThanOrEqual(countedBefore);
      const ledgerAfter = await ledgerKeys(cfg);
      expect([...ledgerBefore].filter((k) => !ledgerAfter.has(k))).toEqual([]);
      expect(ledgerBefore.size).toBeGreaterThan(0);

      // The queues lived in the emulator's memory: created again, as `sluice start` does. Ingest under another id.
      await setupResources(cfg);
      const after = await startAll('pc-2', '2');
      await waitUntil('pc-2 adopted the WAL folder of pc-1', () => /"type":"WalAdopted"/.test(logOf(dataDir, 'ingest-2')), 60_000);
      const adopted = logOf(dataDir, 'ingest-2')
        .split('\n')
        .filter((l) => l.includes('"type":"WalAdopted"'))
        .map((l) => JSON.parse(l) as { node: string; by: string; events: number });
      expect(adopted).toEqual([expect.objectContaining({ node: 'pc-1', by: 'pc-2' })]);
      expect(adopted[0]!.events).toBeGreaterThan(0);
      expect(walSegments(dataDir, 'pc-1')).toEqual([]);
      const reconciled = await reconcileNow(env);
      const announced = Number(/(\d+) announced again/.exec(reconciled)?.[1] ?? Number.NaN);
      expect(announced).toBeGreaterThan(0); // the manifests lost with the emulator's queue

      // The archive is the record: every acknowledged event once per producer, nothing stored twice, and nothing
      // there that was not sent (an unanswered request may have been made durable before the cut).
      await waitUntil('the queue is drained', async () => (await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)) === 0, 60_000);
      const keys = await listKeys(s3b, cfg.SLUICE_RAW_BUCKET, 'events/');
      const dir = path.join(dataDir, 'archive');
      mkdirSync(dir, { recursive: true });
      const files: string[] = [];
      for (const k of keys) {
        const f = path.join(dir, `${files.length}.parquet`);
        await downloadTo(s3b, cfg.SLUICE_RAW_BUCKET, k, f);
        files.push(f);
      }
      s3b.destroy();
      await openEngine({ tempDir: path.join(dir, 'tmp') });
      const rows = await queryParquet(`SELECT producer, event_id, count(*)::INT AS n FROM read_parquet(${parquetFiles(files)}) GROUP BY ALL`);
      const stored = new Map(rows.map((r) => [`${r.producer as string}/${r.event_id as string}`, r.n as number]));
      const ackedKeys = [...load.acked.values()].map((e) => `${e.producer}/${e.eventId}`);
      expect(ackedKeys.filter((k) => stored.get(k) !== 1).slice(0, 10)).toEqual([]);
      expect(rows.filter((r) => r.n !== 1).slice(0, 10)).toEqual([]);
      const sent = new Set([...load.acked.values(), ...load.unanswered.values()].map((e) => `${e.producer}/${e.eventId}`));
      expect([...stored.keys()].filter((k) => !sent.has(k)).slice(0, 10)).toEqual([]);

      // Ground truth: the acknowledged events plus the unanswered ones the archive holds.
      const durable = [...load.acked.values(), ...[...load.unanswered.values()].filter((e) => stored.has(`${e.producer}/${e.eventId}`))];
      const truth = groundTruth(durable);
      let diff: string[] = [];
      await waitUntil(
        'InfluxDB counts every durable event exactly once',
        async () => {
          diff = diffAggregates(await influxAggregates(cfg, 0, Date.now() + 3_600_000), truth);
          return diff.length === 0;
        },
        60_000,
      ).catch(() => undefined);
      expect(diff.slice(0, 10)).toEqual([]);

      // The query API agrees per entity and type: /v1/stats count and sum over the range, and the all-time totals.
      const want = new Map<string, { count: number; sum: number }>();
      for (const e of durable) {
        const t = want.get(`${e.entityId}|${e.eventType}`) ?? { count: 0, sum: 0 };
        t.count++;
        t.sum += e.value;
        want.set(`${e.entityId}|${e.eventType}`, t);
      }
      expect(await influxTotals(cfg)).toEqual(want);
      const from = Math.floor((Math.min(...durable.map((e) => e.timestamp)) - 60_000) / 60_000) * 60_000;
      const to = Date.now() + 120_000;
      const apiDiff: string[] = [];
      for (const [k, w] of want) {
        const [entity, type] = k.split('|') as [string, string];
        for (const fn of ['count', 'sum'] as const) {
          const r = await fetch(`${after.query.url}/v1/stats?entityId=${entity}&eventType=${type}&fn=${fn}&from=${from}&to=${to}&step=1m`, {
            headers: { 'cache-control': 'no-cache' },
          });
          const total = ((await r.json()) as { total?: number | null }).total;
          if (r.status !== 200 || total !== w[fn]) apiDiff.push(`${k} ${fn}: HTTP ${r.status}, got ${total}, want ${w[fn]}`);
        }
        const t = (await (
          await fetch(`${after.query.url}/v1/entities/${entity}/total?eventType=${type}`, { headers: { 'cache-control': 'no-cache' } })
        ).json()) as { count: number; sum: number };
        if (t.count !== w.count || t.sum !== w.sum) apiDiff.push(`${k} all-time total: got ${JSON.stringify(t)}, want ${JSON.stringify(w)}`);
      }
      expect(apiDiff).toEqual([]);

      process.stdout.write(
        `power cut: ${ackedAtCut} events acknowledged (${load.unanswered.size} unanswered, ${durable.length - ackedAtCut} of those durable); ` +
          `at the cut ${countedBefore} counted, ${queuedAtCut} manifest(s) queued, ${walLeft.length} WAL segment(s) left; ` +
          `after: ${adopted[0]!.events} event(s) adopted, ${announced} batch(es) announced again, ${keys.length} batch object(s)\n`,
      );
    } finally {
      await Promise.all(children.map((c) => c.kill('SIGKILL')));
      await Promise.all(services.running.map((s) => s.stop()));
    }
  }, 180_000);
});
