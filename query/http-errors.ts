// Turns every failure into the query API's error shape `{error[, details]}`: 400 naming each wrong
// parameter, 503 with Retry-After while a dependency is unavailable, 500 otherwise. No stack trace or
// internal message ever reaches a client; the full error goes to the log.
import type { FastifyInstance } from 'fastify';
import { SluiceError } from '../shared/errors.js';
import { InvalidParamsError } from './params.js';

/** Seconds a client is told to wait after a 503 (about how long the InfluxDB breaker stays open). */
export const RETRY_AFTER_SECONDS = 5;

export function installErrorHandling(app: FastifyInstance): void {
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: `no route for ${req.method} ${req.url.split('?')[0]}; see /v1/stats, /v1/entities/:entityId/total, /v1/topk` });
  });

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof InvalidParamsError) {
      return reply.code(400).send({ error: 'invalid query parameters', details: err.details });
    }
    if (err instanceof SluiceError && err.retryable) {
      req.log.warn({ code: err.code, reason: err.message, route: req.routeOptions.url }, 'dependency unavailable; answering 503');
      return reply.code(503).header('retry-after', String(RETRY_AFTER_SECONDS)).send({ error: 'a data store is temporarily unavailable; retry later' });
    }
    // Fastify's own request errors (malformed URL, unsupported media type, …) keep their 4xx status.
    const status = (err as { statusCode?: number }).statusCode;
    if (!(err instanceof SluiceError) && status !== undefined && status >= 400 && status < 500) {
      return reply.code(status).send({ error: err instanceof Error ? err.message : 'bad request' });
    }
    req.log.error({ err, route: req.routeOptions.url }, 'query failed');
    return reply.code(500).send({ error: 'internal error; the query service logged the details' });
  });
}
