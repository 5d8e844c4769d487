// GET /v1/topk?…&dimension=<attribute>&value=<value>: the top entities of one event type within one attribute value.
// Workers keep no top-K per attribute value: the event type's whole window of Space-Saving summaries (shared/topk-store.ts)
// is ranked among the entities having that value in the query API's own copy of the current dimension table version
// (shared/dimension-store.ts, the store the workers use), which keeps the bounds valid: an entity not in the summaries
// has at most their missing bound. So the answer is exact while the window's buckets hold every entity (at most
// SLUICE_TOPK_CAPACITY each), and otherwise says by `guaranteed` and `unlistedUpperBound` whether the long tail could
// still hide a member. Attributes are those of the current table version (not those a batch was counted with, as
// /v1/stats?dimension=…), one version per answer (`dimVersion`).
//
// The window comes from the /v1/topk route's window cache (query/topk-cache.ts: never older than the last batch merged
// before the request began; `x-sluice-cache` says hit, miss, coalesced or revalidated, and `Cache-Control: no-cache`
// revalidates), ranked from its whole sum; entities' values from a memo per table version (query/dimension-values-memo.ts).
// Cost per request while no batch and no table version came: 1 Redis GET, O(entities of the window) Map lookups and the
// ranking, no store query. Entities the memo does not hold yet (a batch's new ones, a new table version's) cost one
// store query over them, shared by concurrent requests; an answer takes at most LOOKUP_ROUNDS rankings (see rankCached),
// else the request merges the window and looks up all of it itself (`x-sluice-cache: bypass`).
// Registered as a preHandler of /v1/topk so the top-K route itself stays as it is: requests without `dimension` pass on.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RedisClient } from '../../shared/clients/redis.js';
import { ATTRIBUTE_VALUE_MAX } from '../../shared/contracts/dimensions.js';
import type { DimensionStore } from '../../shared/dimension-store.js';
import { classify } from '../../shared/errors.js';
import { readTopKWindow } from '../../shared/topk-store.js';
import { answerTopK, type RankedSummary, restrictRanked } from '../../shared/topk-summary.js';
import type { EntityScope } from '../auth.js';
import { type AttributeValues, DimensionValueMemo } from '../dimension-values-memo.js';
import { InvalidParamsError, type ParamProblem, parseTopKParams, TOPK_K_MAX, textProblem } from '../params.js';
import { type TopKCacheResult, TopKWindowCache } from '../topk-cache.js';
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
  /** The window cache of the /v1/topk route (shared: one refresh serves both); defaults to one of its own. */
  cache?: TopKWindowCache;
  /** Defaults to a memo of its own on `store`. */
  values?: DimensionValueMemo;
}

/**
 * Items a merged window keeps for this route: one more than the largest k, for the (k+1)-th upper bound. The ranking
 * among an attribute value's entities is taken from the window's whole sum, so this is enough for every k.
 */
export const DIMENSION_TOPK_KEEP = TOPK_K_MAX + 1;

/**
 * Rank-and-look-up rounds before a request merges the window itself (see rankCached): two answer every request but
 * those whose table version changes (or whose entities are evicted by other requests' lookups) during each lookup.
 * A window with more entities to look up than the memo holds is merged by the request at once.
 */
export const LOOKUP_ROUNDS = 3;

/** Every entity of the merged window is a candidate (the top-K store keeps at most SLUICE_TOPK_CAPACITY per bucket). */
const WHOLE_WINDOW = 2 ** 31 - 1;

type DimensionTopKParams = ReturnType<typeof parseDimensionParams>;

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

interface Ranked {
  ranked: RankedSummary;
  /** The dimension table version every entity's value came from. */
  version: number;
  /** Entities of the window. */
  entities: number;
  result: TopKCacheResult | 'bypass';
}

/**
 * The ranked entities of `value` from the window cache and the memo; undefined when LOOKUP_ROUNDS ran out. An entity
 * the memo does not know yet is ranked as if it had the value, and looked up: once it is known, dropping those without
 * it leaves the members in their true order — a prefix of every member's ranking, so it answers k while it lists more
 * than k of them (or all of them). A first round that ranked too few (many unknown entities, as on a cold memo) ranks
 * again with every value known but those of batches merged meanwhile, keeping all its candidates, which always answers.
 */
async function rankCached(
  r: DimensionTopKParams,
  cache: TopKWindowCache,
  memo: DimensionValueMemo,
  nowMs: number,
  revalidate: boolean,
  scope: EntityScope | undefined,
): Promise<Ranked | undefined> {
  let first: TopKCacheResult | undefined;
  for (let round = 0; round < LOOKUP_ROUNDS; round++) {
    // One table version for the whole round (taken with no await before the ranking uses it).
    const values = memo.values(r.dimension);
    const unknown: string[] = [];
    const allows = (id: string) => {
      if (scope && !scope.allows(id)) return false;
      const v = values.valueOf(id);
      if (v !== undefined) return v === r.value;
      unknown.push(id);
      return true;
    };
    let read: Awaited<ReturnType<TopKWindowCache['read']>>;
    try {
      // Later rounds need no revalidation: the first one read every bucket, and the version check keeps that promise.
      read = await cache.read(r.eventType, r.window, nowMs, revalidate && round === 0, allows, round === 0 ? undefined : WHOLE_WINDOW);
    } catch (err) {
      throw classify(err, 'Redis top-K read');
    }
    first ??= read.result;
    if (!memo.fits(unknown.length)) return undefined; // a window larger than the memo: every round would evict it
    if (unknown.length) await memo.lookUp(r.dimension, unknown);
    const ranked = membersOf(read.ranked, values, r.value, r.k);
    if (ranked) return { ranked, version: values.version, entities: read.entities, result: first };
  }
  return undefined;
}

/**
 * The items of `w` having `value`; undefined while one's value is unknown in `values` (a new table version, or an
 * eviction, came during the lookup) or when they are too few to answer k from a truncated ranking.
 */
function membersOf(w: RankedSummary, values: AttributeValues, value: string, k: number): RankedSummary | undefined {
  const items: RankedSummary['items'] = [];
  for (const it of w.items) {
    const v = values.valueOf(it.entityId);
    if (v === undefined) return undefined;
    if (v === value) items.push(it);
  }
  if (w.truncated && items.length <= k) return undefined;
  return { ...w, items };
}

/** The window merged whole from Redis and all its entities looked up: what a request falls back to. */
async function rankUncached(deps: DimensionTopKDeps, r: DimensionTopKParams, nowMs: number, scope: EntityScope | undefined): Promise<Ranked> {
  let window: RankedSummary;
  try {
    window = await readTopKWindow(deps.redis, deps.redisPrefix, r.eventType, r.window, WHOLE_WINDOW, nowMs);
  } catch (err) {
    throw classify(err, 'Redis top-K read');
  }
  const { version, values } = await deps.store!.valuesOf(
    r.dimension,
    window.items.map((i) => i.entityId),
  );
  const ranked = restrictRanked(window, (id) => values.get(id) === r.value && (!scope || scope.allows(id)));
  return { ranked, version, entities: window.items.length, result: 'bypass' };
}

async function answer(deps: DimensionTopKDeps, cache: TopKWindowCache, memo: DimensionValueMemo, req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const r = parseDimensionParams((req.query ?? {}) as Record<string, unknown>, deps.configured);
  const scope = deps.scopeOf?.(req);
  const revalidate = /\bno-cache\b/i.test(req.headers['cache-control'] ?? '');
  const nowMs = deps.now();
  const { ranked, version, entities, result } = (await rankCached(r, cache, memo, nowMs, revalidate, scope)) ?? (await rankUncached(deps, r, nowMs, scope));
  const a = answerTopK(ranked, r.k);
  void reply.header('x-sluice-cache', result);
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
    /** Entities of the window: the candidates, ranked by their values in `dimVersion`. */
    candidates: entities,
  };
  return scope ? { ...out, filtered: { key: scope.key, entityPrefixes: [...scope.entityPrefixes] } } : out;
}

/** Answers /v1/topk requests that name `dimension`; register before the top-K route. */
export function registerDimensionTopK(app: FastifyInstance, deps: DimensionTopKDeps): void {
  const cache = deps.cache ?? new TopKWindowCache(deps.redis, deps.redisPrefix, { keep: DIMENSION_TOPK_KEEP });
  // Without a store SLUICE_DIMENSIONS is empty, and every request is refused before it would need the memo.
  const memo = deps.values ?? (deps.store && new DimensionValueMemo(deps.store));
  app.addHook('preHandler', async (req, reply) => {
    if (req.routeOptions.url !== '/v1/topk' || (req.query as Record<string, unknown> | undefined)?.dimension === undefined) return;
    const body = await answer(deps, cache, memo!, req, reply);
    return reply.send(body);
  });
}
