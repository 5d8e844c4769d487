// GET /v1/stats: one function (count, sum, avg, min, max) of one entity's event type per time bucket over
// a range, plus the same function over the whole range. Answers are cached per range and step (not per
// function: all five come from the same buckets), long for settled ranges and briefly for recent ones.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { project } from '../buckets.js';
import { cacheKey, statsTtlMs, type QueryCache } from '../cache.js';
import type { FederatedReader } from '../federated-reader.js';
import type { InfluxReader } from '../influx-reader.js';
import { parseStatsParams } from '../params.js';

export interface StatsRouteDeps {
  reader: InfluxReader;
  /** Reads 1h/1d steps from rollups (hot and cold) where they exist; without it every step folds minutes. */
  federated?: FederatedReader;
  cache: QueryCache;
  redisPrefix: string;
  now: () => number;
  /** Answers requests that name `dimension` (the attribute series: query/routes/dimension-stats.ts). */
  byDimension?: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
}

/** Bump when the cached bucket layout changes, so old entries are never read as new ones. */
const CACHE_VERSION = 2;

export function registerStatsRoute(app: FastifyInstance, deps: StatsRouteDeps): void {
  app.get('/v1/stats', async (req, reply) => {
    if (deps.byDimension && (req.query as Record<string, unknown> | undefined)?.dimension !== undefined) return deps.byDimension(req, reply);
    const nowMs = deps.now();
    const r = parseStatsParams(req.query, nowMs);
    const key = cacheKey(deps.redisPrefix, {
      v: CACHE_VERSION,
      kind: 'stats',
      entityId: r.entityId,
      eventType: r.eventType,
      from: r.fromMs,
      to: r.toMs,
      step: r.step,
    });
    const answer = await cachedStats(req, reply, deps.cache, key, { ...r, nowMs }, () => (deps.federated ?? deps.reader).stats(r));
    return { entityId: r.entityId, eventType: r.eventType, ...answer };
  });
}

/**
 * The buckets of a stats request from the answer cache (or computed; `Cache-Control: no-cache`, what audits send,
 * answers from the stores, never from the cache), projected on the request's function: the part of the answer every
 * /v1/stats variant shares (entity series here, attribute series in dimension-stats.ts).
 */
export async function cachedStats(
  req: FastifyRequest,
  reply: FastifyReply,
  cache: QueryCache,
  key: string,
  r: { fn: Parameters<typeof project>[0]; fromMs: number; toMs: number; step: string; nowMs: number },
  compute: () => Promise<Parameters<typeof project>[1]>,
) {
  const { value: buckets, cache: how } = /\bno-cache\b/i.test(req.headers['cache-control'] ?? '')
    ? { value: await compute(), cache: 'bypass' }
    : await cache.getOrCompute('stats', key, statsTtlMs(r.toMs, r.nowMs), compute);
  const { points, total } = project(r.fn, buckets);
  void reply.header('x-sluice-cache', how);
  return { fn: r.fn, from: new Date(r.fromMs).toISOString(), to: new Date(r.toMs).toISOString(), step: r.step, points, total };
}
