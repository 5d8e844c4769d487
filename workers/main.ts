// A worker process: SLUICE_WORKER_CONCURRENCY independent SQS consumers (one batch each in flight), each
// batch handed to the MessageHandler, plus /healthz, /readyz and /metrics. close() stops receiving, lets
// in-flight batches finish for SLUICE_WORKER_SHUTDOWN_GRACE, releases the rest (and anything a last poll
// brings) with visibility 0, then closes the clients. Its parts: worker-clients.ts, totals-check.ts,
// consumers.ts, ops-server.ts, worker-shutdown.ts; this file only puts them together.
import path from 'node:path';
import type { Consumer } from 'sqs-consumer';
import { queueUrl } from '../shared/clients/aws.js';
import { ensureDatabase, InfluxLineWriter } from '../shared/clients/influx.js';
import type { Config } from '../shared/config.js';
import { classify } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { createRegistry } from '../shared/metrics.js';
import { openEngine } from '../shared/parquet.js';
import { RETRY, withRetry } from '../shared/retry.js';
import type { Service } from '../shared/service.js';
import { BatchProcessor, type StepHook } from './batch-processor.js';
import { BatchLedger } from './reconcile/ledger.js';
import { createConsumers } from './consumers.js';
import { EntityTotalsUpdater } from './entity-totals.js';
import { InfluxSink } from './influx-sink.js';
import { MessageHandler } from './message-handler.js';
import { startOpsServer } from './ops-server.js';
import { QuarantineSink } from './quarantine-sink.js';
import { TopKUpdater } from './topk.js';
import { checkTotalsComplete } from './totals-check.js';
import { createWorkerClients, type WorkerClients } from './worker-clients.js';
import { WorkerMetrics } from './worker-metrics.js';
import { closeWorker } from './worker-shutdown.js';
import { startWorkerDimensions } from './dimensions/worker-dimensions.js';
import type { BatchEnrichment } from './dimensions/batch-enrichment.js';

export interface WorkerOptions {
  /** Fault injection between batch steps (tests of crash recovery). */
  onStep?: StepHook;
  /** Name recorded on dead letters; defaults to SLUICE_NODE_ID and the process id. */
  workerId?: string;
}

/** What the message handler needs besides the clients. */
interface HandlerParts {
  cfg: Config;
  clients: WorkerClients;
  metrics: WorkerMetrics;
  log: Logger;
  workerId: string;
  queueUrls: { main: string; dlq: string };
  totals: EntityTotalsUpdater;
  enrichment?: BatchEnrichment;
  draining(): boolean;
  stopSignal: AbortSignal;
  onStep?: StepHook;
}

/** The stages of one batch (BatchProcessor) and the owner of each message (MessageHandler). */
function createHandler(p: HandlerParts): MessageHandler {
  const { cfg, clients, metrics, log } = p;
  const processor = new BatchProcessor({
    s3: clients.s3,
    sink: new InfluxSink({
      writer: new InfluxLineWriter({
        url: cfg.SLUICE_INFLUX_URL,
        database: cfg.SLUICE_INFLUX_DB,
        observeLatency: (s) => metrics.influxWriteSeconds.observe(s),
      }),
      onDroppedBeyondRetention: (detail) => log.warn({ detail }, 'InfluxDB dropped points older than the hot retention; rollups and the archive keep them'),
    }),
    pointsPerRequest: cfg.SLUICE_INFLUX_BATCH_POINTS,
    topk: new TopKUpdater(clients.redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_TOPK_CAPACITY),
    totals: p.totals,
    enrichment: p.enrichment,
    quarantine: new QuarantineSink(clients.s3, cfg.SLUICE_RAW_BUCKET),
    rawBucket: cfg.SLUICE_RAW_BUCKET,
    tempDir: path.join(cfg.SLUICE_DATA_DIR, 'worker-tmp'),
    log,
    onStep: p.onStep,
  });
  return new MessageHandler({
    sqs: clients.sqs,
    queueUrl: p.queueUrls.main,
    deadLetterQueueUrl: p.queueUrls.dlq,
    processor,
    metrics,
    log,
    workerId: p.workerId,
    visibilityTimeoutMs: cfg.SLUICE_VISIBILITY_TIMEOUT,
    maxTransientRetryMs: cfg.SLUICE_MAX_TRANSIENT_RETRY,
    releaseBackoffMs: cfg.SLUICE_RELEASE_BACKOFF,
    draining: p.draining,
    stopSignal: p.stopSignal,
    ledger: new BatchLedger(clients.redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_LEDGER_RETENTION),
  });
}

/** Start-up before consuming: the database, the Parquet engine, the queue URLs and the totals check. */
async function prepare(cfg: Config, clients: WorkerClients, totals: EntityTotalsUpdater, log: Logger): Promise<{ main: string; dlq: string }> {
  await withRetry(
    () =>
      ensureDatabase(clients.influx, cfg.SLUICE_INFLUX_DB).catch((err: unknown) => {
        throw classify(err, `InfluxDB ${cfg.SLUICE_INFLUX_URL}`);
      }),
    RETRY.influx,
  );
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp'), memoryLimit: '256MB', threads: 2 });
  const [main, dlq] = await Promise.all([queueUrl(clients.sqs, cfg.SLUICE_QUEUE_NAME), queueUrl(clients.sqs, cfg.SLUICE_DLQ_NAME)]);
  await checkTotalsComplete(totals, clients.influx, cfg, log);
  return { main, dlq };
}

export async function startWorker(cfg: Config, log: Logger, opts: WorkerOptions = {}): Promise<Service> {
  const workerId = opts.workerId ?? `${cfg.SLUICE_NODE_ID}-${process.pid}`;
  const wlog = log.child({ worker: workerId });
  const clients = createWorkerClients(cfg, wlog);
  const registry = createRegistry('worker');
  const metrics = new WorkerMetrics(registry);
  const stop = new AbortController();
  let stopping = false;
  let handler: MessageHandler;
  let consumers: Consumer[];
  let ops: Awaited<ReturnType<typeof startOpsServer>>;
  let dimensions: Awaited<ReturnType<typeof startWorkerDimensions>>;
  try {
    const totals = new EntityTotalsUpdater(clients.redis, cfg.SLUICE_REDIS_PREFIX);
    const queueUrls = await prepare(cfg, clients, totals, wlog);
    dimensions = await startWorkerDimensions(cfg, clients, wlog, (s) => metrics.influxWriteSeconds.observe(s));
    handler = createHandler({
      cfg,
      clients,
      metrics,
      log: wlog,
      workerId,
      queueUrls,
      totals,
      enrichment: dimensions?.enrichment,
      draining: () => stopping,
      stopSignal: stop.signal,
      onStep: opts.onStep,
    });
    consumers = createConsumers(cfg, clients.sqs, queueUrls.main, handler, wlog);
    ops = await startOpsServer({
      host: cfg.SLUICE_WORKER_HOST,
      port: cfg.SLUICE_WORKER_PORT,
      registry,
      redis: clients.redis,
      influx: clients.influx,
      stopping: () => stopping,
    });
  } catch (err) {
    await dimensions?.close();
    await clients.close();
    throw err;
  }
  for (const c of consumers) c.start();
  wlog.info({ url: ops.url, concurrency: cfg.SLUICE_WORKER_CONCURRENCY, queue: cfg.SLUICE_QUEUE_NAME }, 'worker started');

  let closing: Promise<void> | undefined;
  const close = () =>
    closeWorker({
      cfg,
      consumers,
      handler,
      metrics,
      app: ops.app,
      clients,
      markStopping: () => {
        stopping = true;
      },
      releaseInFlight: () => stop.abort(),
      log: wlog,
    });
  return { url: ops.url, close: () => (closing ??= close().finally(() => dimensions?.close())) };
}
