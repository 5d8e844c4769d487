// GET /v1/topk?…&dimension=<attribute>&value=<value>: the top entities of one event type within one attribute value.
// Workers keep no top-K per attribute value: the whole window of the event type's Space-Saving summaries is merged
// (shared/topk-store.ts), its entities looked up in the query API's own copy of the current dimension table version
// (shared/dimension-store.ts, the store the workers use), and the window cut to the entities with that value
// (restrictRanked), which keeps the bounds valid: an entity not in the summaries has at most their missing bound.
// So the answer is exact while the window's buckets hold every entity (at most SLUICE_TOPK_CAPACITY each), and
// otherwise says by `guaranteed` and `unlistedUpperBound` whether the long tail could still hide a member.
// Attributes are those of the current table version (not those a batch was counted with, as /v1/stats?dimension=…).
// Registered as a preHandler of /v1/topk so the top-K route itself stays as it is: requests without `dimension` pass on.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RedisClient } from '../../shared/clients/redis.js';
import { ATTRIBUTE_VALUE_MAX } from '../../shared/contracts/dimensions.js';
import type { DimensionStore } from '../../shared/dimension-store.js';
import { classify } from '../../shared/errors.js';
import { readTopKWindow } from '../../shared/topk-store.js';
import { answerTopK, restrictRanked } from '../../shared/topk-summary.js';
import type { EntityScope } from '../auth.js';
import { InvalidParamsError, type ParamProblem, parseTopKParams, textProblem } from '../params.js';
import { dimensionAccepts } from './dimension-stats.js';

export interface DimensionTopKDeps {
  redis: RedisClient;
  redisPrefix: string;
  /** SLUICE_DIMENSIONS. */
  configured: readonly string[];
  /** The current dimension table version (undefined when SLUICE_DIMENSIONS is empty). */
  store: DimensionStore | undefined;
  now: () => number;
  scopeOf?: (req: FastifyRequest) => EntityScope | undefined;
}

/** Every entity of the merged window is a candidate (the top-K store keeps at most SLUICE_TOPK_CAPACITY per bucket). */
const WHOLE_WINDOW = 2 ** 31 - 1;

/** Validates `dimension` and `value`; the rest goes to the top-K route's own parser. */
function parseDimensionParams(q: Record<string, unknown>, configured: readonly string[]) {
  const { dimension, value, ...rest } = q;
  const problems: ParamProblem[] = [];
  if (typeof dimension !== 'string' || !configured.includes(dimension))
    problems.push({
      param: 'dimension',
      message: `must be ${dimensionAccepts(configured)}, got ${JSON.stringify(typeof dimension === 'string' ? dimension.slice(0, 60) : dimension)}`,
    });
  if (typeof value !== 'string' || value.length === 0 || value.length > ATTRIBUTE_VALUE_MAX)
    problems.push({
      param: 'value',
      message: `${value === undefined ? 'is required with dimension:' : 'must be'} the attribute value, a string of 1–${ATTRIBUTE_VALUE_MAX} characters`,
    });
  else {
    const p = textProblem(value);
    if (p) problems.push({ param: 'value', message: p });
  }
  let r: ReturnType<typeof parseTopKParams> | undefined;
  try {
    r = parseTopKParams(rest);
  } catch (err) {
    if (!(err instanceof InvalidParamsError)) throw err;
    problems.push(...err.details);
  }
  if (problems.length || !r) throw new InvalidParamsError(problems);
  return { ...r, dimension: dimension as string, value: value as string };
}

async function answer(deps: DimensionTopKDeps, req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const r = parseDimensionParams((req.query ?? {}) as Record<string, unknown>, deps.configured);
  const scope = deps.scopeOf?.(req);
  let window: Awaited<ReturnType<typeof readTopKWindow>>;
  try {
    window = await readTopKWindow(deps.redis, deps.redisPrefix, r.eventType, r.window, WHOLE_WINDOW, deps.now());
  } catch (err) {
    throw classify(err, 'Redis top-K read');
  }
  const { version, values } = await deps.store!.valuesOf(
    r.dimension,
    window.items.map((i) => i.entityId),
  );
  const ranked = restrictRanked(window, (id) => values.get(id) === r.value && (!scope || scope.allows(id)));
  const a = answerTopK(ranked, r.k);
  void reply.header('x-sluice-cache', 'bypass');
  const out = {
    eventType: r.eventType,
    window: r.window,
    k: r.k,
    dimension: r.dimension,
    value: r.value,
    /** The dimension table version the entities were looked up in. */
    dimVersion: version,
    items: a.items,
    guaranteed: a.guaranteed,
    unlistedUpperBound: a.unlistedUpperBound,
    maxError: a.maxError,
    /** Entities of the window that were looked up. */
    candidates: window.items.length,
  };
  return scope ? { ...out, filtered: { key: scope.key, entityPrefixes: [...scope.entityPrefixes] } } : out;
}

/** Answers /v1/topk requests that name `dimension`; register before the top-K route. */
export function registerDimensionTopK(app: FastifyInstance, deps: DimensionTopKDeps): void {
  app.addHook('preHandler', async (req, reply) => {
    if (req.routeOptions.url !== '/v1/topk' || (req.query as Record<string, unknown> | undefined)?.dimension === undefined) return;
    const body = await answer(deps, req, reply);
    return reply.send(body);
  });
}
