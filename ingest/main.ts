// An ingest node: POST /v1/events → authenticate → per-producer concurrency → backpressure → read (budgeted,
// bounded) → parse → rate limit → validate → dedup → WAL (fsync) → 202. Sealed WAL segments are delivered to S3 + SQS in the background (ingest/delivery.ts).
// Shutdown stops accepting, seals the WAL, delivers everything, then exits.
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import path from 'node:path';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { Service } from '../shared/service.js';
import { addOpsRoutes, createRegistry } from '../shared/metrics.js';
import { createS3, createSqs } from '../shared/clients/aws.js';
import { createRedis } from '../shared/clients/redis.js';
import { openEngine } from '../shared/parquet.js';
import { breakerIsOpen } from '../shared/retry.js';
import { encodeEventLine, validateEvent, type RejectionKind } from '../shared/contracts/event.js';
import { assertBindAllowed } from '../shared/bind-policy.js';
import type { Readable } from 'node:stream';
import { BodyError, parseEventsBody, readEventsBody } from './parse-body.js';
import { ApiKeys } from './api-keys.js';
import { RejectionList, type Rejected } from './rejections.js';
import { WriteAheadLog } from './wal.js';
import { SegmentDelivery } from './delivery.js';
import { createIngestMetrics } from './metrics.js';
import { ProducerDedup } from './producer-dedup.js';
import { SeriesBudget, seriesKey } from './series-budget.js';
import { ConcurrencyLimit, InflightBudget, RateLimiter } from './rate-limit.js';

export interface EventsResponse {
  accepted: number;
  duplicates: number;
  /** The first REJECTIONS_LISTED rejections. */
  rejected: Rejected[];
  /** All rejections of the request. */
  rejectedCount: number;
  /** Rejections per "field:rule" (e.g. "entityId:length", "event:json"). */
  rejectedByReason: Record<string, number>;
}

/** Rejections listed one by one in an answer; the rest are only counted (rejectedCount, rejectedByReason). */
export const REJECTIONS_LISTED = 100;

const ANONYMOUS = 'anonymous';

export async function startIngest(cfg: Config, log: Logger): Promise<Service & { delivery: SegmentDelivery; wal: WriteAheadLog }> {
  assertBindAllowed({
    service: 'ingest',
    hostSetting: 'SLUICE_INGEST_HOST',
    host: cfg.SLUICE_INGEST_HOST,
    authenticated: cfg.SLUICE_API_KEYS.size > 0,
    keysSetting: 'SLUICE_API_KEYS',
    allowAnonymous: cfg.SLUICE_ALLOW_ANONYMOUS,
  });
  const nodeDir = path.resolve(cfg.SLUICE_DATA_DIR, 'ingest', cfg.SLUICE_NODE_ID);
  // One engine thread: Parquet conversion runs beside the request path and must not starve it of CPU.
  await openEngine({ tempDir: path.join(nodeDir, 'duckdb-tmp'), memoryLimit: '128MB', threads: 1 });
  const registry = createRegistry('ingest');
  const metrics = createIngestMetrics(registry);
  const s3 = createS3(cfg);
  const sqs = createSqs(cfg);
  const redis = createRedis(cfg);
  redis.on('error', () => undefined); // state is read from redis.status; errors are logged by the users
  const dedup = new ProducerDedup(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_DEDUP_WINDOW, log);
  const seriesBudget = new SeriesBudget({ redis, prefix: cfg.SLUICE_REDIS_PREFIX, maxNewPerMinute: cfg.SLUICE_MAX_NEW_SERIES_PER_MIN, log, metrics });
  const limiter = new RateLimiter(
    redis,
    cfg.SLUICE_REDIS_PREFIX,
    cfg.SLUICE_RATE_LIMIT_EVENTS,
    cfg.SLUICE_RATE_LIMIT_BURST || cfg.SLUICE_RATE_LIMIT_EVENTS * 10,
  );

  const delivery = new SegmentDelivery({
    s3,
    sqs,
    bucket: cfg.SLUICE_RAW_BUCKET,
    queueName: cfg.SLUICE_QUEUE_NAME,
    node: cfg.SLUICE_NODE_ID,
    tmpDir: path.join(nodeDir, 'parquet-tmp'),
    concurrency: cfg.SLUICE_UPLOAD_CONCURRENCY,
    log,
    metrics,
  });
  const wal = new WriteAheadLog({
    dir: path.join(nodeDir, 'wal'),
    maxEvents: cfg.SLUICE_FLUSH_MAX_EVENTS,
    maxBytes: cfg.SLUICE_FLUSH_MAX_BYTES,
    maxAgeMs: cfg.SLUICE_FLUSH_MAX_AGE,
    fsync: cfg.SLUICE_WAL_FSYNC,
    onSealed: (seg) => delivery.enqueue(seg),
    onCommit: ({ bytes, requests, fsyncMs }) => {
      metrics.walBytes.inc(bytes);
      metrics.fsyncSeconds.observe(fsyncMs / 1000);
      metrics.groupRequests.observe(requests);
    },
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

  let accepting = true;
  const app = Fastify({
    logger: false,
    bodyLimit: cfg.SLUICE_MAX_BODY_BYTES,
    // A slow client is cut: the whole request within requestTimeout (408), no silence longer than connectionTimeout.
    requestTimeout: cfg.SLUICE_INGEST_REQUEST_TIMEOUT,
    connectionTimeout: cfg.SLUICE_INGEST_IDLE_TIMEOUT,
    keepAliveTimeout: cfg.SLUICE_INGEST_KEEPALIVE_TIMEOUT,
    // Node reads requestTimeout only when the server is created, and checks it on connectionsCheckingInterval
    // (30s by default, which would let a slow upload run 30s over).
    http: { requestTimeout: cfg.SLUICE_INGEST_REQUEST_TIMEOUT, connectionsCheckingInterval: 1_000 },
  });
  app.removeAllContentTypeParsers();
  // The body stays a stream: the handler reads it after authentication, within the budget (readEventsBody).
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    const status = err.statusCode ?? 500;
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply
        .code(413)
        .send({ error: `request body exceeds the limit of ${cfg.SLUICE_MAX_BODY_BYTES} bytes (SLUICE_MAX_BODY_BYTES); split it into smaller requests` });
    }
    if (status >= 500) log.error({ err }, 'request failed');
    return reply.code(status).send({ error: status >= 500 ? 'internal error' : err.message });
  });
  addOpsRoutes(app, registry, () => (!accepting ? 'shutting down' : delivery.notReadyReason()));

  const apiKeys = new ApiKeys(cfg.SLUICE_API_KEYS);
  const authenticate = (req: FastifyRequest, reply: FastifyReply): string | undefined => {
    if (apiKeys.empty) return ANONYMOUS;
    const h = req.headers.authorization;
    if (!h) {
      void reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'missing Authorization header: send Authorization: Bearer <api key>' });
      return undefined;
    }
    const m = /^Bearer\s+(.+)$/i.exec(h);
    const producer = m ? apiKeys.producerOf(m[1]!.trim()) : undefined;
    if (!producer) {
      void reply.code(403).send({ error: 'API key not recognised' });
      return undefined;
    }
    return producer;
  };

  const retryAfterSeconds = () => Math.max(1, Math.ceil(cfg.SLUICE_FLUSH_MAX_AGE / 1000));

  // Memory bound: decompressed body bytes are charged as they are read, only after authentication, and held
  // until the answer is sent; past SLUICE_MAX_INFLIGHT_BYTES a request is turned away with 503 (see InflightBudget).
  const budget = new InflightBudget(cfg.SLUICE_MAX_INFLIGHT_BYTES);
  const concurrency = new ConcurrencyLimit(cfg.SLUICE_MAX_CONCURRENT_REQUESTS_PER_PRODUCER);
  const held = new WeakMap<FastifyRequest, { bytes: number; slot?: string }>();
  const release = (req: FastifyRequest) => {
    const h = held.get(req);
    if (h === undefined) return;
    held.delete(req);
    budget.release(h.bytes);
    if (h.slot !== undefined) concurrency.release(h.slot);
  };
  app.addHook('onResponse', async (req) => release(req));
  app.addHook('onRequestAbort', async (req) => release(req));

  app.post('/v1/events', async (req, reply) => {
    const t0 = performance.now();
    const finish = (status: number, body: unknown) => {
      metrics.requests.inc({ status: String(status) });
      metrics.requestSeconds.observe((performance.now() - t0) / 1000);
      return reply.code(status).send(body);
    };
    const producer = authenticate(req, reply);
    if (!producer) {
      metrics.requests.inc({ status: String(reply.statusCode) });
      return reply;
    }
    // Anonymous requests are limited per client address, authenticated ones per producer.
    const slot = producer === ANONYMOUS ? `ip:${req.ip}` : producer;
    if (!concurrency.acquire(slot)) {
      reply.header('retry-after', '1');
      return finish(429, {
        error: `${producer === ANONYMOUS ? `client ${req.ip}` : `producer ${producer}`} already has ${cfg.SLUICE_MAX_CONCURRENT_REQUESTS_PER_PRODUCER} requests in progress (SLUICE_MAX_CONCURRENT_REQUESTS_PER_PRODUCER); wait for an answer before sending more, retry after 1s`,
      });
    }
    const holding = { bytes: 0, slot };
    held.set(req, holding);
    if (!accepting) return finish(503, { error: 'ingest node is shutting down; retry on another node' });
    if (delivery.backlogBytes + wal.openSegment.bytes > cfg.SLUICE_BACKLOG_MAX_BYTES) {
      reply.header('retry-after', String(retryAfterSeconds()));
      return finish(503, { error: `delivery backlog is over ${cfg.SLUICE_BACKLOG_MAX_BYTES} bytes (S3/SQS slow or unavailable); retry later` });
    }
    let parsed: ReturnType<typeof parseEventsBody>;
    try {
      const stream = req.body as Readable | undefined;
      if (!stream || typeof stream.on !== 'function') return finish(400, { error: 'body is empty: send a JSON array of events or NDJSON' });
      const ctype = String(req.headers['content-type'] ?? '');
      const gzip = /gzip/i.test(String(req.headers['content-encoding'] ?? ''));
      const ndjson = /ndjson|jsonl|json-seq/i.test(ctype);
      if (!gzip && Number(req.headers['content-length']) > cfg.SLUICE_MAX_BODY_BYTES) {
        throw new BodyError(
          413,
          `request body exceeds the limit of ${cfg.SLUICE_MAX_BODY_BYTES} bytes (SLUICE_MAX_BODY_BYTES); split it into smaller requests`,
        );
      }
      const body = await readEventsBody(stream, {
        gzip,
        ndjson,
        maxBytes: cfg.SLUICE_MAX_BODY_BYTES,
        maxEvents: cfg.SLUICE_MAX_EVENTS_PER_REQUEST,
        reserve: (n) => {
          if (budget.charge(holding.bytes, n)) {
            holding.bytes += n;
            return undefined;
          }
          return `ingest node is busy (${budget.bytes} bytes of requests in progress, limit SLUICE_MAX_INFLIGHT_BYTES=${cfg.SLUICE_MAX_INFLIGHT_BYTES}); retry after 1s`;
        },
      });
      parsed = parseEventsBody(body, { gzip: false, maxBytes: cfg.SLUICE_MAX_BODY_BYTES, ndjson });
    } catch (err) {
      if (err instanceof BodyError) {
        if (err.status === 503) reply.header('retry-after', '1');
        return finish(err.status, { error: err.message });
      }
      throw err;
    }
    const { values, lineErrors } = parsed;
    const wait = await limiter.take(producer, values.length);
    if (wait > 0) {
      reply.header('retry-after', String(Math.max(1, Math.ceil(wait / 1000))));
      return finish(429, {
        error: `rate limit of ${cfg.SLUICE_RATE_LIMIT_EVENTS} events/s for producer ${producer} exceeded; retry after ${Math.ceil(wait / 1000)}s`,
      });
    }

    const bounds = { nowMs: Date.now(), maxAgeMs: cfg.SLUICE_MAX_EVENT_AGE };
    const rejected = new RejectionList(REJECTIONS_LISTED);
    const why: RejectionKind = { field: 'event', rule: 'type' };
    const valid = [];
    const validAt: number[] = []; // each valid event's index in the request
    const ids: string[] = [];
    const inRequest = new Set<string>();
    let duplicates = 0;
    for (let i = 0; i < values.length; i++) {
      const lineErr = lineErrors.get(i);
      if (lineErr) {
        rejected.push({ index: i, reason: lineErr }, 'event:json');
        continue;
      }
      const e = validateEvent(values[i], bounds, why);
      if (typeof e === 'string') {
        rejected.push({ index: i, reason: e }, `${why.field}:${why.rule}`);
        continue;
      }
      if (inRequest.has(e.eventId)) {
        duplicates++;
        continue;
      }
      inRequest.add(e.eventId);
      valid.push(e);
      validAt.push(i);
      ids.push(e.eventId);
    }
    // Dedup and the new-series budget are asked at once: one Redis round trip of latency each request.
    const [seen, series] = await Promise.all([
      dedup.seen(producer, ids),
      seriesBudget.admit(
        producer,
        valid.map((e) => seriesKey(e.entityId, e.eventType)),
      ),
    ]);
    let lines = '';
    const fresh: string[] = [];
    const ingestTime = Date.now();
    for (let i = 0; i < valid.length; i++) {
      if (seen[i]) {
        duplicates++;
        continue;
      }
      if (!series.admitted[i]) {
        rejected.push({ index: validAt[i]!, reason: series.reason }, 'series:budget');
        continue;
      }
      lines += encodeEventLine(valid[i]!, ingestTime, producer);
      fresh.push(ids[i]!);
    }
    if (fresh.length) {
      try {
        await wal.append(lines, fresh.length);
      } catch (err) {
        log.error({ err }, 'WAL append failed');
        reply.header('retry-after', '1');
        return finish(503, { error: 'could not make the events durable (WAL write failed); nothing from this request was acknowledged, retry' });
      }
      // Marked after the fsync (never before: a crash must not hide an unstored event) and before the ack,
      // so a retry of an acknowledged request is recognised.
      await dedup.mark(producer, fresh);
    }
    metrics.events.inc({ outcome: 'accepted', producer }, fresh.length);
    if (rejected.length) metrics.events.inc({ outcome: 'rejected', producer }, rejected.length);
    if (duplicates) metrics.events.inc({ outcome: 'duplicate', producer }, duplicates);
    const body: EventsResponse = {
      accepted: fresh.length,
      duplicates,
      rejected: rejected.listed,
      rejectedCount: rejected.length,
      rejectedByReason: rejected.byReason,
    };
    return finish(202, body);
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
      redis.disconnect();
      s3.destroy();
      sqs.destroy();
    },
  };
}
