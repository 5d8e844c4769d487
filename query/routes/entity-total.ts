// GET /v1/entities/:entityId/total: all-time count and sum of one entity's event type. The most frequent
// read: answered from the totals workers keep in Redis (one round trip, exact, see workers/entity-totals.ts);
// only when Redis has nothing for the entity (or is down) is it computed from InfluxDB and the cold tier,
// cached briefly, with concurrent misses sharing one computation. The reply is serialised from a schema.
import type { FastifyInstance } from 'fastify';
import type { RedisClient } from '../../shared/clients/redis.js';
import { readEntityTotal } from '../../shared/entity-totals-store.js';
import { RECENT_TTL_MS, cacheKey, type QueryCache } from '../cache.js';
import type { FederatedReader } from '../federated-reader.js';
import type { InfluxReader } from '../influx-reader.js';
import { parseTotalParams } from '../params.js';

export interface EntityTotalRouteDeps {
  /** Redis holding the workers' all-time totals (shared/entity-totals-store.ts). */
  redis?: RedisClient;
  reader: InfluxReader;
  /** Adds daily rollups (hot and cold) so totals survive minute retention; without it totals sum minutes only. */
  federated?: FederatedReader;
  cache: QueryCache;
  redisPrefix: string;
}

/** How long an all-time total may be served from the cache (new data keeps arriving). */
export const TOTAL_TTL_MS = RECENT_TTL_MS;
const CACHE_VERSION = 2;

const replySchema = {
  type: 'object',
  required: ['entityId', 'eventType', 'count', 'sum'],
  properties: { entityId: { type: 'string' }, eventType: { type: 'string' }, count: { type: 'number' }, sum: { type: 'number' } },
} as const;

export function registerEntityTotalRoute(app: FastifyInstance, deps: EntityTotalRouteDeps): void {
  app.get('/v1/entities/:entityId/total', { schema: { response: { 200: replySchema } } }, async (req, reply) => {
    const r = parseTotalParams(req.params, req.query);
    if (deps.redis?.status === 'ready') {
      const kept = await readEntityTotal(deps.redis, deps.redisPrefix, r.entityId, r.eventType).catch(() => undefined);
      if (kept) {
        void reply.header('x-sluice-cache', 'totals');
        return { entityId: r.entityId, eventType: r.eventType, count: kept.count, sum: kept.sum };
      }
    }
    const key = cacheKey(deps.redisPrefix, { v: CACHE_VERSION, kind: 'total', entityId: r.entityId, eventType: r.eventType });
    const compute = () => (deps.federated ?? deps.reader).total(r);
    // `Cache-Control: no-cache` (audits, benchmarks) answers from the stores, never from the answer cache.
    const { value, cache } = /\bno-cache\b/i.test(req.headers['cache-control'] ?? '')
      ? { value: await compute(), cache: 'bypass' }
      : await deps.cache.getOrCompute('total', key, TOTAL_TTL_MS, compute);
    void reply.header('x-sluice-cache', cache);
    return { entityId: r.entityId, eventType: r.eventType, count: value.count, sum: value.sum };
  });
}
