// An ingest node: wires the clients, the WAL and its delivery, and the HTTP server whose POST /v1/events runs
// admission (ingest/admission.ts) then parse → validate → reserve ids → WAL (fsync) → confirm → 202 (ingest/events-route.ts).
// Sealed WAL segments are delivered to S3 + SQS in the background (ingest/delivery.ts) and released by the WAL.
// The node holds the lock of its WAL folder while it runs (ingest/wal-lock.ts) and adopts the folders of dead nodes
// (ingest/wal-adoption.ts). Shutdown stops accepting, seals the WAL, delivers everything, then releases the lock.
import path from 'node:path';
import { unlinkSync } from 'node:fs';
import { prom } from '../shared/metrics.js';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { Service } from '../shared/service.js';
import { addOpsRoutes, createRegistry, shareWithClusterPrimary } from '../shared/metrics.js';
import { createS3, createSqs } from '../shared/clients/aws.js';
import { createRedis } from '../shared/clients/redis.js';
import { openEngine } from '../shared/parquet.js';
import { INGEST_ENGINE } from './parquet-batch-writer.js';
import { breakerIsOpen } from '../shared/retry.js';
import { assertBindAllowed } from '../shared/bind-policy.js';
import { ingestEvents, type IngestEvents } from './ingest-events.js';
import { WriteAheadLog } from './wal.js';
import { lockOwnWal } from './wal-lock.js';
import { WalAdoption } from './wal-adoption.js';
import { SegmentDelivery } from './delivery.js';
import { createIngestMetrics, type IngestMetrics } from './metrics.js';
import { EventReservations } from './event-reservations.js';
import { resolveSegment, SegmentConfirmations } from './segment-resolution.js';
import type { Segment } from './wal-segments.js';
import { SeriesBudget } from './series-budget.js';
import { RateLimiter } from './rate-limit.js';
import { Admission } from './admission.js';
import { addEventsRoute } from './events-route.js';
import { createIngestServer } from './http-server.js';

export async function startIngest(cfg: Config, log: Logger): Promise<Service & { delivery: SegmentDelivery; wal: WriteAheadLog }> {
  assertBindAllowed({
    service: 'ingest',
    hostSetting: 'SLUICE_INGEST_HOST',
    host: cfg.SLUICE_INGEST_HOST,
    authenticated: cfg.SLUICE_API_KEYS.size > 0,
    keysSetting: 'SLUICE_API_KEYS',
    allowAnonymous: cfg.SLUICE_ALLOW_ANONYMOUS,
  });
  const ingestDir = path.resolve(cfg.SLUICE_DATA_DIR, 'ingest');
  const nodeDir = path.join(ingestDir, cfg.SLUICE_NODE_ID);
  const registry = createRegistry('ingest');
  // A process of `sluice ingest --processes N`: its primary sums every process's registry, /metrics answers with the sum.
  shareWithClusterPrimary(registry, { service: 'ingest', process: cfg.SLUICE_NODE_ID, log });
  const metrics = createIngestMetrics(registry);
  const events = ingestEvents(log, registry);
  // Before anything in the folder is touched: refused if a live node holds it, waits while another node adopts it.
  const lock = await lockOwnWal(nodeDir, cfg.SLUICE_NODE_ID, (holder) => events.emit({ type: 'WalLockWaiting', node: cfg.SLUICE_NODE_ID, holder }));
  // One engine thread: Parquet conversion runs beside the request path and must not starve it of CPU.
  await openEngine({ tempDir: path.join(nodeDir, 'duckdb-tmp'), ...INGEST_ENGINE });
  const clients = { s3: createS3(cfg), sqs: createSqs(cfg), redis: createRedis(cfg) };
  const { redis } = clients;
  redis.on('error', () => undefined); // state is read from redis.status; errors are logged by the users
  const reservations = new EventReservations(redis, cfg.SLUICE_REDIS_PREFIX, {
    windowMs: cfg.SLUICE_DEDUP_WINDOW,
    leaseMs: cfg.SLUICE_DEDUP_LEASE,
    shards: cfg.SLUICE_DEDUP_SHARDS || (cfg.SLUICE_REDIS_CLUSTER ? 16 : 1),
  });
  // Requests need Redis (their ids are reserved there): give the connection a moment before listening; a node started
  // while Redis is down still starts, and reports not ready until it connects.
  if (reservations.enabled) await reservations.ready(5_000);
  const confirmations = new SegmentConfirmations();
  const resolve = segmentResolver(reservations, confirmations, events);
  const { wal, delivery } = startWalDelivery(cfg, nodeDir, { ...clients, log, events, metrics, resolve });
  const adoption = new WalAdoption({
    ingestDir,
    self: cfg.SLUICE_NODE_ID,
    intervalMs: cfg.SLUICE_WAL_ADOPT_INTERVAL,
    deliveryFor: (node) => adoptedDelivery(cfg, nodeDir, node, { ...clients, log, events, metrics, resolve }),
    events,
    log,
  });
  void adoption.start();

  let accepting = true;
  const app = createIngestServer(cfg, log);
  const dedupDown = () =>
    reservations.enabled && redis.status !== 'ready' ? `Redis is unavailable (${redis.status}): event ids cannot be deduplicated` : undefined;
  addOpsRoutes(app, registry, () => (!accepting ? 'shutting down' : (delivery.notReadyReason() ?? dedupDown())));
  const burst = cfg.SLUICE_RATE_LIMIT_BURST || cfg.SLUICE_RATE_LIMIT_EVENTS * 10;
  const admission = new Admission(cfg, {
    limiter: new RateLimiter(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_RATE_LIMIT_EVENTS, burst),
    accepting: () => accepting,
    backlogBytes: () => delivery.backlogBytes + wal.openSegment.bytes,
    walPressure: () => wal.pressure(),
  });
  admission.install(app);
  addEventsRoute(app, {
    cfg,
    admission,
    reservations,
    confirmations,
    seriesBudget: new SeriesBudget({ redis, prefix: cfg.SLUICE_REDIS_PREFIX, maxNewPerMinute: cfg.SLUICE_MAX_NEW_SERIES_PER_MIN, log, metrics }),
    wal,
    events,
  });

  await app.listen({ host: cfg.SLUICE_INGEST_HOST, port: cfg.SLUICE_INGEST_PORT });
  const addr = app.server.address();
  const url = `http://${cfg.SLUICE_INGEST_HOST}:${typeof addr === 'object' && addr ? addr.port : cfg.SLUICE_INGEST_PORT}`;
  log.info({ url, node: cfg.SLUICE_NODE_ID }, 'ingest listening');

  return {
    url,
    delivery,
    wal,
    async close() {
      accepting = false;
      await app.close();
      await wal.close();
      log.info({ segments: delivery.pendingSegments }, 'delivering remaining WAL segments before exit');
      await delivery.drain();
      await adoption.close();
      lock.release();
      redis.disconnect();
      clients.s3.destroy();
      clients.sqs.destroy();
    },
  };
}

interface Durability {
  s3: ReturnType<typeof createS3>;
  sqs: ReturnType<typeof createSqs>;
  log: Logger;
  events: IngestEvents;
  metrics: IngestMetrics;
  resolve: (seg: Segment) => Promise<void>;
}

/**
 * Before a segment is delivered: nothing to do when this process wrote it and confirmed every request in it; otherwise
 * (recovered, adopted, or a confirm that failed) its lines are checked against the reservations (ingest/segment-resolution.ts).
 */
function segmentResolver(reservations: EventReservations, confirmations: SegmentConfirmations, events: IngestEvents) {
  return async (seg: Segment): Promise<void> => {
    if (!(await confirmations.allConfirmed(seg.id))) {
      const r = await resolveSegment(seg, reservations);
      if (r.tokens) events.emit({ type: 'SegmentResolved', segment: seg.id, tokens: r.tokens, dropped: r.dropped });
    }
    confirmations.forget(seg.id);
  };
}

/**
 * The WAL and the delivery of its sealed segments: the WAL hands each sealed segment to delivery, delivery hands it
 * back (WriteAheadLog.release) once its manifests are in SQS. Segments left by a previous run are delivered first.
 */
function startWalDelivery(cfg: Config, nodeDir: string, d: Durability): { wal: WriteAheadLog; delivery: SegmentDelivery } {
  const { events, log, metrics } = d;
  const delivery: SegmentDelivery = new SegmentDelivery({
    s3: d.s3,
    sqs: d.sqs,
    bucket: cfg.SLUICE_RAW_BUCKET,
    queueName: cfg.SLUICE_QUEUE_NAME,
    node: cfg.SLUICE_NODE_ID,
    tmpDir: path.join(nodeDir, 'parquet-tmp'),
    concurrency: cfg.SLUICE_UPLOAD_CONCURRENCY,
    log,
    events,
    metrics,
    release: (seg) => wal.release(seg),
    resolve: d.resolve,
  });
  const wal: WriteAheadLog = new WriteAheadLog({
    dir: path.join(nodeDir, 'wal'),
    maxEvents: cfg.SLUICE_FLUSH_MAX_EVENTS,
    maxBytes: cfg.SLUICE_FLUSH_MAX_BYTES,
    maxAgeMs: cfg.SLUICE_FLUSH_MAX_AGE,
    fsync: cfg.SLUICE_WAL_FSYNC,
    maxTotalBytes: cfg.SLUICE_WAL_MAX_BYTES,
    onSealed: (seg) => {
      events.emit({ type: 'SegmentSealed', segment: seg.id, events: seg.events, bytes: seg.bytes });
      delivery.enqueue(seg);
    },
    onCommit: ({ bytes, requests, fsyncMs }) => events.emit({ type: 'WalCommitted', bytes, requests, fsyncSeconds: fsyncMs / 1000 }),
  });
  const leftovers = wal.recover();
  if (leftovers.length)
    log.info({ segments: leftovers.length, events: leftovers.reduce((n, s) => n + s.events, 0) }, 'replaying WAL segments left by a previous run');
  for (const seg of leftovers) delivery.enqueue(seg);

  for (const [dep, b] of [
    ['s3', delivery.s3Breaker],
    ['sqs', delivery.sqsBreaker],
  ] as const) {
    b.onStateChange(() => metrics.breakerOpen.set({ dependency: dep }, breakerIsOpen(b) ? 1 : 0));
  }
  return { wal, delivery };
}

/**
 * The delivery of an adopted folder's segments: keys and manifests under the original `node`, conversion files in
 * this node's folder, each segment released by removing its file. Its backlog is not this node's (a gauge of its own).
 */
function adoptedDelivery(cfg: Config, nodeDir: string, node: string, d: Durability): SegmentDelivery {
  return new SegmentDelivery({
    s3: d.s3,
    sqs: d.sqs,
    bucket: cfg.SLUICE_RAW_BUCKET,
    queueName: cfg.SLUICE_QUEUE_NAME,
    node,
    tmpDir: path.join(nodeDir, 'parquet-tmp', `adopted-${node}`),
    concurrency: cfg.SLUICE_UPLOAD_CONCURRENCY,
    log: d.log,
    events: d.events,
    metrics: { backlogBytes: new prom.Gauge({ name: 'sluice_ingest_adopted_backlog_bytes', help: 'unregistered', registers: [] }) },
    release: (seg) => unlinkSync(seg.path),
    resolve: d.resolve,
  });
}
