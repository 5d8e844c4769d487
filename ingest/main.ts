// An ingest node: POST /v1/events → authenticate → backpressure → parse → rate limit → validate → dedup →
// WAL (fsync) → 202. Sealed WAL segments are delivered to S3 + SQS in the background (ingest/delivery.ts).
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
import { encodeEventLine, validateEvent } from '../shared/contracts/event.js';
import { BodyError, parseEventsBody } from './parse-body.js';
import { WriteAheadLog } from './wal.js';
import { SegmentDelivery } from './delivery.js';
import { createIngestMetrics } from './metrics.js';
import { ProducerDedup } from './producer-dedup.js';
import { RateLimiter } from './rate-limit.js';

export interface EventsResponse {
  accepted: number;
  duplicates: number;
  rejected: { index: number; reason: string }[];
}

const ANONYMOUS = 'anonymous';

export async function startIngest(cfg: Config, log: Logger): Promise<Service & { delivery: SegmentDelivery; wal: WriteAheadLog }> {
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
  const app = Fastify({ logger: false, bodyLimit: cfg.SLUICE_MAX_BODY_BYTES });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
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

  const authenticate = (req: FastifyRequest, reply: FastifyReply): string | undefined => {
    if (cfg.SLUICE_API_KEYS.size === 0) return ANONYMOUS;
    const h = req.headers.authorization;
    if (!h) {
      void reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'missing Authorization header: send Authorization: Bearer <api key>' });
      return undefined;
    }
    const m = /^Bearer\s+(.+)$/i.exec(h);
    const producer = m ? cfg.SLUICE_API_KEYS.get(m[1]!.trim()) : undefined;
    if (!producer) {
      void reply.code(403).send({ error: 'API key not recognised' });
      return undefined;
    }
    return producer;
  };

  const retryAfterSeconds = () => Math.max(1, Math.ceil(cfg.SLUICE_FLUSH_MAX_AGE / 1000));

  // Memory bound: bodies being read and parsed are counted before they are read (by Content-Length, or the
  // body limit when it is absent); past SLUICE_MAX_INFLIGHT_BYTES a request is turned away at once.
  let inflightBytes = 0;
  const held = new WeakMap<FastifyRequest, number>();
  const release = (req: FastifyRequest) => {
    const n = held.get(req);
    if (n !== undefined) {
      inflightBytes -= n;
      held.delete(req);
    }
  };
  app.addHook('onRequest', async (req, reply) => {
    if (req.method !== 'POST' || req.routeOptions.url !== '/v1/events') return;
    const declared = Number(req.headers['content-length']);
    const bytes = Number.isFinite(declared) && declared >= 0 ? Math.min(declared, cfg.SLUICE_MAX_BODY_BYTES) : cfg.SLUICE_MAX_BODY_BYTES;
    if (inflightBytes > 0 && inflightBytes + bytes > cfg.SLUICE_MAX_INFLIGHT_BYTES) {
      metrics.requests.inc({ status: '503' });
      return reply
        .code(503)
        .header('retry-after', '1')
        .send({
          error: `ingest node is busy (${inflightBytes} bytes of requests in progress, limit SLUICE_MAX_INFLIGHT_BYTES=${cfg.SLUICE_MAX_INFLIGHT_BYTES}); retry after 1s`,
        });
    }
    inflightBytes += bytes;
    held.set(req, bytes);
  });
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
    if (!accepting) return finish(503, { error: 'ingest node is shutting down; retry on another node' });
    if (delivery.backlogBytes + wal.openSegment.bytes > cfg.SLUICE_BACKLOG_MAX_BYTES) {
      reply.header('retry-after', String(retryAfterSeconds()));
      return finish(503, { error: `delivery backlog is over ${cfg.SLUICE_BACKLOG_MAX_BYTES} bytes (S3/SQS slow or unavailable); retry later` });
    }
    let parsed: ReturnType<typeof parseEventsBody>;
    try {
      const raw = req.body;
      if (!Buffer.isBuffer(raw)) return finish(400, { error: 'body is empty: send a JSON array of events or NDJSON' });
      const ctype = String(req.headers['content-type'] ?? '');
      parsed = parseEventsBody(raw, {
        gzip: /gzip/i.test(String(req.headers['content-encoding'] ?? '')),
        maxBytes: cfg.SLUICE_MAX_BODY_BYTES,
        ndjson: /ndjson|jsonl|json-seq/i.test(ctype),
      });
    } catch (err) {
      if (err instanceof BodyError) return finish(err.status, { error: err.message });
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
    const rejected: EventsResponse['rejected'] = [];
    const valid = [];
    const ids: string[] = [];
    const inRequest = new Set<string>();
    let duplicates = 0;
    for (let i = 0; i < values.length; i++) {
      const lineErr = lineErrors.get(i);
      if (lineErr) {
        rejected.push({ index: i, reason: lineErr });
        continue;
      }
      const e = validateEvent(values[i], bounds);
      if (typeof e === 'string') {
        rejected.push({ index: i, reason: e });
        continue;
      }
      if (inRequest.has(e.eventId)) {
        duplicates++;
        continue;
      }
      inRequest.add(e.eventId);
      valid.push(e);
      ids.push(e.eventId);
    }
    const seen = await dedup.seen(ids);
    let lines = '';
    const fresh: string[] = [];
    const ingestTime = Date.now();
    for (let i = 0; i < valid.length; i++) {
      if (seen[i]) {
        duplicates++;
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
      await dedup.mark(fresh);
    }
    metrics.events.inc({ outcome: 'accepted', producer }, fresh.length);
    if (rejected.length) metrics.events.inc({ outcome: 'rejected', producer }, rejected.length);
    if (duplicates) metrics.events.inc({ outcome: 'duplicate', producer }, duplicates);
    const body: EventsResponse = { accepted: fresh.length, duplicates, rejected };
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
