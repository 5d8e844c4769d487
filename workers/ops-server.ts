// The worker's ops HTTP server: /healthz, /metrics, and /readyz — 503 while the worker stops or while Redis or
// InfluxDB does not answer a ping within 1 s (a worker without its stores would only release batches).
import Fastify, { type FastifyInstance } from 'fastify';
import type { InfluxDB } from 'influx';
import type { RedisClient } from '../shared/clients/redis.js';
import type { Registry } from 'prom-client';
import { errorMessage } from '../shared/errors.js';
import { addOpsRoutes } from '../shared/metrics.js';
import { sleep } from '../shared/retry.js';

const PING_TIMEOUT_MS = 1_000;

function withinPingTimeout<T>(p: Promise<T>): Promise<T> {
  return Promise.race([
    p,
    sleep(PING_TIMEOUT_MS).then(() => {
      throw new Error('timed out');
    }),
  ]);
}

/** Why the worker is not ready (undefined when both stores answer). */
export async function storesUnready(redis: RedisClient, influx: InfluxDB): Promise<string | undefined> {
  try {
    await withinPingTimeout(redis.ping());
  } catch (err) {
    return `Redis unreachable: ${errorMessage(err)}`;
  }
  try {
    const hosts = await withinPingTimeout(influx.ping(PING_TIMEOUT_MS));
    if (!hosts.some((h) => h.online)) return 'InfluxDB unreachable';
  } catch (err) {
    return `InfluxDB unreachable: ${errorMessage(err)}`;
  }
  return undefined;
}

export interface OpsServerOptions {
  host: string;
  port: number;
  registry: Registry;
  redis: RedisClient;
  influx: InfluxDB;
  stopping(): boolean;
}

/** Listens and resolves with the server and its URL. */
export async function startOpsServer(o: OpsServerOptions): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({ logger: false });
  addOpsRoutes(app, o.registry, async () => (o.stopping() ? 'worker is stopping' : storesUnready(o.redis, o.influx)));
  const url = await app.listen({ host: o.host, port: o.port });
  return { app, url };
}
