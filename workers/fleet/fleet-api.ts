// The fleet supervisor's HTTP server: /healthz, /readyz (503 while stopping or while the queue cannot be read),
// /metrics, and GET /v1/fleet — the policy, the intended and desired sizes, the queue as last read, every worker
// with its state, and the recent history.
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { addOpsRoutes } from '../../shared/metrics.js';
import type { FleetHistory } from './history.js';
import type { Scaler } from './scaler.js';
import type { ScalingOptions } from './scaling-policy.js';
import type { WorkerPool } from './worker-pool.js';

export interface FleetApiOptions {
  registry: Registry;
  policy: ScalingOptions;
  scaler: Scaler;
  pool: WorkerPool;
  history: FleetHistory;
  stopping(): boolean;
}

export function fleetApi(o: FleetApiOptions): FastifyInstance {
  const app = Fastify({ logger: false });
  addOpsRoutes(app, o.registry, () => (o.stopping() ? 'fleet is stopping' : o.scaler.queueError));
  app.get('/v1/fleet', async () => ({
    min: o.policy.min,
    max: o.policy.max,
    targetPerWorker: o.policy.targetPerWorker,
    cooldownMs: o.policy.cooldownMs,
    maxAgeMs: o.policy.maxAgeMs,
    desired: o.scaler.desired,
    target: o.scaler.target,
    queue: o.scaler.lastQueue ?? null,
    workers: o.pool.info(),
    events: o.history.events,
  }));
  return app;
}
