// The ingest node's HTTP server: fastify with the request timeouts that cut slow clients, bodies left as streams
// (read only after admission, within budget, by the events route), and errors answered without internals.
import Fastify, { type FastifyInstance } from 'fastify';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';

type ServerConfig = Pick<Config, 'SLUICE_MAX_BODY_BYTES' | 'SLUICE_INGEST_REQUEST_TIMEOUT' | 'SLUICE_INGEST_IDLE_TIMEOUT' | 'SLUICE_INGEST_KEEPALIVE_TIMEOUT'>;

export function createIngestServer(cfg: ServerConfig, log: Logger): FastifyInstance {
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
  // The body stays a stream: the events route reads it after authentication, within the budget (readEventsBody).
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
  return app;
}
