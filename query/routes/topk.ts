// GET /v1/topk: the k entities with the most events of one type in the last minute, hour or day, read
// from the top-K store the workers maintain in Redis (see shared/topk-store.ts for its accuracy).
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { classify } from '../../shared/errors.js';
import { readTopK } from '../../shared/topk-store.js';
import { parseTopKParams } from '../params.js';

export interface TopKRouteDeps {
  redis: Redis;
  redisPrefix: string;
  now: () => number;
}

export function registerTopKRoute(app: FastifyInstance, deps: TopKRouteDeps): void {
  app.get('/v1/topk', async (req) => {
    const r = parseTopKParams(req.query);
    let items: { entityId: string; count: number }[];
    try {
      items = await readTopK(deps.redis, deps.redisPrefix, r.eventType, r.window, r.k, deps.now());
    } catch (err) {
      throw classify(err, 'Redis top-K read');
    }
    return { eventType: r.eventType, window: r.window, k: r.k, items: items.map((i) => ({ entityId: i.entityId, count: i.count })) };
  });
}
