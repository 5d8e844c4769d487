// GET /v1/topk: the k entities with the most events of one type in the last minute, hour or day, with bounds on each
// count and whether the list is certainly the true top-k, read from the Space-Saving summaries the workers keep in
// Redis (shared/topk-store.ts for the layout and accuracy) through the in-process window cache (query/topk-cache.ts).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RedisClient } from '../../shared/clients/redis.js';
import { classify } from '../../shared/errors.js';
import { answerTopK, type RankedSummary } from '../../shared/topk-summary.js';
import type { EntityScope } from '../auth.js';
import { parseTopKParams, TOPK_K_MAX } from '../params.js';
import { TopKWindowCache, type TopKCacheResult } from '../topk-cache.js';

export interface TopKRouteDeps {
  redis: RedisClient;
  redisPrefix: string;
  now: () => number;
  /** Defaults to a cache of its own on `redis`. */
  cache?: TopKWindowCache;
  /** The caller's key scope (query/auth.ts): the answer then ranks only its entities and says so. */
  scopeOf?: (req: FastifyRequest) => EntityScope | undefined;
}

/** Items every merged window keeps: one more than the largest k, for the (k+1)-th upper bound. */
const KEEP = TOPK_K_MAX + 1;

export function registerTopKRoute(app: FastifyInstance, deps: TopKRouteDeps): void {
  const cache = deps.cache ?? new TopKWindowCache(deps.redis, deps.redisPrefix, { keep: KEEP });
  app.get('/v1/topk', async (req, reply) => {
    const r = parseTopKParams(req.query);
    const scope = deps.scopeOf?.(req);
    let ranked: RankedSummary;
    let result: TopKCacheResult;
    try {
      // `Cache-Control: no-cache` (audits, benchmarks) checks every bucket of the window, not only the version. A key
      // scope's entities may rank anywhere in the window: they are ranked among themselves from its whole merged sum.
      const revalidate = /\bno-cache\b/i.test(req.headers['cache-control'] ?? '');
      ({ ranked, result } = await cache.read(r.eventType, r.window, deps.now(), revalidate, scope && ((id) => scope.allows(id))));
    } catch (err) {
      throw classify(err, 'Redis top-K read');
    }
    void reply.header('x-sluice-cache', result);
    const a = answerTopK(ranked, r.k);
    const answer = {
      eventType: r.eventType,
      window: r.window,
      k: r.k,
      items: a.items,
      guaranteed: a.guaranteed,
      unlistedUpperBound: a.unlistedUpperBound,
      maxError: a.maxError,
      events: a.total,
    };
    return scope ? scope.annotate(answer) : answer;
  });
}
