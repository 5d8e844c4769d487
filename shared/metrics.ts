// Prometheus metrics: one registry per process with default Node metrics, and the small HTTP surface
// every service shares (/healthz, /readyz, /metrics).
import client from 'prom-client';
import type { FastifyInstance } from 'fastify';

export { client as prom };

export function createRegistry(service: string): client.Registry {
  const registry = new client.Registry();
  registry.setDefaultLabels({ service });
  client.collectDefaultMetrics({ register: registry });
  return registry;
}

/** Undefined when ready, otherwise the reason the service should not receive traffic. */
export type Readiness = () => Promise<string | undefined> | string | undefined;

/** Adds /healthz (process alive), /readyz (dependencies usable) and /metrics to a fastify app. */
export function addOpsRoutes(app: FastifyInstance, registry: client.Registry, readiness: Readiness = () => undefined): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const reason = await readiness();
    if (reason) return reply.code(503).send({ status: 'not_ready', reason });
    return { status: 'ready' };
  });
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });
}
