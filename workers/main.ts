// A worker process: SLUICE_WORKER_CONCURRENCY independent SQS consumers (one batch each in flight), each
// batch handed to the MessageHandler, plus /healthz, /readyz and /metrics. close() stops receiving, lets
// in-flight batches finish for SLUICE_WORKER_SHUTDOWN_GRACE, releases the rest (and anything a last poll
// brings) with visibility 0, then closes the clients.
import type { Message } from '@aws-sdk/client-sqs';
import Fastify from 'fastify';
import path from 'node:path';
import { Consumer } from 'sqs-consumer';
import type { Config } from '../shared/config.js';
import { createS3, createSqs, queueUrl } from '../shared/clients/aws.js';
import { createInflux, ensureDatabase, foldedSource, MEASUREMENT_1D, MEASUREMENT_1M, RP_1D } from '../shared/clients/influx.js';
import { createRedis } from '../shared/clients/redis.js';
import { classify, errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { addOpsRoutes, createRegistry } from '../shared/metrics.js';
import { openEngine } from '../shared/parquet.js';
import { BACKOFF, backoffMs, RETRY, sleep, withRetry } from '../shared/retry.js';
import type { Service } from '../shared/service.js';
import { BatchProcessor, type StepHook } from './batch-processor.js';
import { EventDedup } from './event-dedup.js';
import { InfluxSink } from './influx-sink.js';
import { MessageHandler } from './message-handler.js';
import { QuarantineSink } from './quarantine-sink.js';
import { TopKUpdater } from './topk.js';
import { EntityTotalsUpdater } from './entity-totals.js';
import { WorkerMetrics } from './worker-metrics.js';

export interface WorkerOptions {
  /** Fault injection between batch steps (tests of crash recovery). */
  onStep?: StepHook;
  /** Name recorded on dead letters; defaults to SLUICE_NODE_ID and the process id. */
  workerId?: string;
}

/** How long close() waits for attempts that kept running after their message was released. */
const BACKGROUND_DRAIN_MS = 5_000;
const PING_TIMEOUT_MS = 1_000;

export async function startWorker(cfg: Config, log: Logger, opts: WorkerOptions = {}): Promise<Service> {
  const workerId = opts.workerId ?? `${cfg.SLUICE_NODE_ID}-${process.pid}`;
  const wlog = log.child({ worker: workerId });
  const sqs = createSqs(cfg);
  const s3 = createS3(cfg);
  const redis = createRedis(cfg);
  let redisDown = false; // log a lost connection once, not on every reconnect attempt
  redis.on('error', (err: Error) => {
    if (!redisDown) wlog.warn({ err: err.message }, 'Redis connection lost');
    redisDown = true;
  });
  redis.on('ready', () => {
    if (redisDown) wlog.info('Redis connection restored');
    redisDown = false;
  });
  const influx = createInflux(cfg);
  const registry = createRegistry('worker');
  const metrics = new WorkerMetrics(registry);
  const stop = new AbortController();
  let stopping = false;

  const closeClients = async () => {
    await redis.quit().catch(() => redis.disconnect());
    sqs.destroy();
    s3.destroy();
  };

  let handler: MessageHandler;
  let consumers: Consumer[];
  try {
    await withRetry(
      () =>
        ensureDatabase(influx, cfg.SLUICE_INFLUX_DB).catch((err: unknown) => {
          throw classify(err, `InfluxDB ${cfg.SLUICE_INFLUX_URL}`);
        }),
      RETRY.influx,
    );
    await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp'), memoryLimit: '256MB', threads: 2 });
    const [mainUrl, dlqUrl] = await Promise.all([queueUrl(sqs, cfg.SLUICE_QUEUE_NAME), queueUrl(sqs, cfg.SLUICE_DLQ_NAME)]);
    const totals = new EntityTotalsUpdater(redis, cfg.SLUICE_REDIS_PREFIX);
    // Points counted so far, minutes and daily rollups (minutes may have aged out); a missing rollup policy means none.
    const countPoints = async (from: string) => {
      try {
        return (await influx.query<{ n: number }>(`SELECT count("count") AS "n" FROM ${from}`))[0]?.n ?? 0;
      } catch (err) {
        if (/retention policy not found/i.test(errorMessage(err))) return 0;
        throw classify(err, `InfluxDB ${cfg.SLUICE_INFLUX_URL}`);
      }
    };
    // Checked before consuming (so a new pipeline is marked before its first batch); when Redis or InfluxDB is down
    // it is retried in the background instead: a worker starts (and reports not ready) without them.
    const checkTotals = () =>
      totals.markCompleteIfEmpty(
        async () => (await countPoints(MEASUREMENT_1M)) + (await countPoints(foldedSource(cfg.SLUICE_INFLUX_DB, RP_1D, MEASUREMENT_1D))),
      );
    const incomplete = () => wlog.warn('all-time totals in Redis do not cover every counted event: the query API computes totals from InfluxDB');
    const complete = await checkTotals().catch(() => undefined);
    if (complete === false) incomplete();
    if (complete === undefined) {
      void withRetry(checkTotals, RETRY.slowCheck).then(
        (ok) => (ok ? undefined : incomplete()),
        (err: unknown) => wlog.warn({ err: errorMessage(err) }, 'could not check whether the all-time totals are complete; totals are computed from InfluxDB'),
      );
    }
    const processor = new BatchProcessor({
      s3,
      dedup: new EventDedup(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_DEDUP_WINDOW),
      sink: new InfluxSink({
        url: cfg.SLUICE_INFLUX_URL,
        database: cfg.SLUICE_INFLUX_DB,
        observeLatency: (s) => metrics.influxWriteSeconds.observe(s),
        onDroppedBeyondRetention: (detail) => wlog.warn({ detail }, 'InfluxDB dropped points older than the hot retention; rollups and the archive keep them'),
      }),
      pointsPerRequest: cfg.SLUICE_INFLUX_BATCH_POINTS,
      topk: new TopKUpdater(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_TOPK_CAPACITY),
      totals,
      quarantine: new QuarantineSink(s3, cfg.SLUICE_RAW_BUCKET),
      rawBucket: cfg.SLUICE_RAW_BUCKET,
      onQuarantined: (q) => {
        for (const [reason, n] of q.events) metrics.quarantinedEvents.inc({ reason }, n);
        for (const [reason, n] of q.rejectedPoints) metrics.influxRejectedPoints.inc({ reason }, n);
      },
      tempDir: path.join(cfg.SLUICE_DATA_DIR, 'worker-tmp'),
      log: wlog,
      onStep: opts.onStep,
    });
    handler = new MessageHandler({
      sqs,
      queueUrl: mainUrl,
      deadLetterQueueUrl: dlqUrl,
      processor,
      metrics,
      log: wlog,
      workerId,
      visibilityTimeoutMs: cfg.SLUICE_VISIBILITY_TIMEOUT,
      maxTransientRetryMs: cfg.SLUICE_MAX_TRANSIENT_RETRY,
      releaseBackoffMs: cfg.SLUICE_RELEASE_BACKOFF,
      draining: () => stopping,
      stopSignal: stop.signal,
    });
    consumers = Array.from({ length: cfg.SLUICE_WORKER_CONCURRENCY }, () => {
      const c = Consumer.create({
        queueUrl: mainUrl,
        sqs,
        batchSize: 1,
        waitTimeSeconds: Math.round(cfg.SLUICE_WORKER_POLL_WAIT / 1000),
        visibilityTimeout: Math.max(1, Math.ceil(cfg.SLUICE_VISIBILITY_TIMEOUT / 1000)),
        shouldDeleteMessages: false,
        messageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
        // The handler settles every message itself (delete, release or dead-letter) and never throws.
        handleMessage: async (m: Message) => {
          await handler
            .handle(m)
            .catch((err: unknown) => wlog.error({ err: errorMessage(err), messageId: m.MessageId }, 'unexpected failure handling a batch'));
          return undefined;
        },
      });
      // sqs-consumer polls again at once after a failed receive; back off instead (BACKOFF.sqsReceive).
      let failures = 0;
      c.on('error', (err) => {
        failures++;
        c.updateOption('pollingWaitTimeMs', backoffMs(failures, BACKOFF.sqsReceive));
        if (failures === 1 || failures % 20 === 0) wlog.warn({ err: errorMessage(err), failures }, 'SQS receive failed');
      });
      const recovered = () => {
        if (failures === 0) return;
        wlog.info({ failures }, 'SQS receive recovered');
        failures = 0;
        c.updateOption('pollingWaitTimeMs', 0);
      };
      c.on('empty', recovered);
      c.on('message_received', recovered);
      c.on('processing_error', (err) => wlog.error({ err: errorMessage(err) }, 'batch handler failed'));
      return c;
    });
  } catch (err) {
    await closeClients();
    throw err;
  }

  const ping = async (): Promise<string | undefined> => {
    const timeout = <T>(p: Promise<T>) =>
      Promise.race([
        p,
        sleep(PING_TIMEOUT_MS).then(() => {
          throw new Error('timed out');
        }),
      ]);
    try {
      await timeout(redis.ping());
    } catch (err) {
      return `Redis unreachable: ${errorMessage(err)}`;
    }
    try {
      const hosts = await timeout(influx.ping(PING_TIMEOUT_MS));
      if (!hosts.some((h) => h.online)) return 'InfluxDB unreachable';
    } catch (err) {
      return `InfluxDB unreachable: ${errorMessage(err)}`;
    }
    return undefined;
  };
  const app = Fastify({ logger: false });
  addOpsRoutes(app, registry, async () => (stopping ? 'worker is stopping' : ping()));
  let url: string;
  try {
    url = await app.listen({ host: cfg.SLUICE_WORKER_HOST, port: cfg.SLUICE_WORKER_PORT });
  } catch (err) {
    await closeClients();
    throw err;
  }
  for (const c of consumers) c.start();
  wlog.info({ url, concurrency: cfg.SLUICE_WORKER_CONCURRENCY, queue: cfg.SLUICE_QUEUE_NAME }, 'worker started');

  let closing: Promise<void> | undefined;
  const inFlight = async () => (await metrics.inFlight.get()).values[0]?.value ?? 0;
  const close = async () => {
    stopping = true;
    // Receives are not aborted: SQS may hand a message to a receive whose connection was dropped, hiding it
    // for a whole visibility timeout. Polls end within SLUICE_WORKER_POLL_WAIT; what they bring is released.
    for (const c of consumers) c.stop();
    const pollsDone = (async () => {
      const until = Date.now() + cfg.SLUICE_WORKER_POLL_WAIT + 2_000;
      while (Date.now() < until && consumers.some((c) => c.status.isPolling)) await sleep(50);
    })();
    // Grace: in-flight batches may finish; whatever is still running afterwards is released (visibility 0).
    const deadline = Date.now() + cfg.SLUICE_WORKER_SHUTDOWN_GRACE;
    while (Date.now() < deadline && (await inFlight()) > 0) await sleep(50);
    stop.abort();
    await pollsDone;
    while ((await inFlight()) > 0) await sleep(20);
    await Promise.race([Promise.all(handler.background), sleep(BACKGROUND_DRAIN_MS)]);
    await app.close();
    await closeClients();
    wlog.info('worker stopped');
  };
  return { url, close: () => (closing ??= close()) };
}
