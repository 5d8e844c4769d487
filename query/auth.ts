// Read access to the query API. With SLUICE_QUERY_API_KEYS set, every route but /healthz, /readyz and /metrics (open
// for probes and scrapers) and the sign-in form needs a key — `Authorization: Bearer <key>`, or the HttpOnly cookie the
// dashboard's sign-in form sets (query/dashboard-sign-in.ts, installed from here) — else 401 with
// `WWW-Authenticate: Bearer`, or 403 for a key that is not recognised.
// A key scoped in SLUICE_QUERY_KEY_SCOPES reads only entities whose id starts with one of its prefixes: a route naming
// another entity answers 403, /v1/topk filters its answer (through scopeOf), and a route that cannot apply a scope
// refuses scoped keys. Requests and refusals are counted per key name; a key is never logged, counted or echoed.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiKeys, bearerKey } from '../shared/api-keys.js';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { RankedSummary } from '../shared/topk-summary.js';
import {
  BEARER_CHALLENGE,
  cookieKey,
  KEY_NOT_RECOGNISED,
  keyCookie,
  LOGIN_PATH,
  LOGOUT_PATH,
  registerSignIn,
  type SignInAttempt,
  sendLoginPage,
} from './dashboard-sign-in.js';
import type { QueryMetrics } from './metrics.js';

/** Routes anyone may reach: liveness, readiness and metrics (operators' probes and scrapers), and signing in and out. */
export const OPEN_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics', LOGIN_PATH, LOGOUT_PATH]);

/** Metric labels of callers without a configured name; parentheses never occur in a key name. */
export const NO_KEY = '(none)';
export const UNKNOWN_KEY = '(unrecognised)';
export const OPERATOR_KEY = '(operator)';
export type RefusalReason = 'missing_key' | 'unknown_key' | 'outside_scope' | 'route_not_scoped' | 'cross_site_sign_in';

/**
 * How a route treats a scoped key: `entity` routes name entities (path or query `entityId`), each checked against the
 * scope; `filtered` routes cut their answer to the scope themselves (scopeOf); `no-entity-data` routes show none.
 * Any other route refuses scoped keys, so a new route stays closed to them until it says how it applies a scope.
 */
type ScopePolicy = 'entity' | 'filtered' | 'no-entity-data';
const SCOPE_POLICY: ReadonlyMap<string, ScopePolicy> = new Map<string, ScopePolicy>([
  ['/v1/stats', 'entity'],
  ['/v1/entities/:entityId/total', 'entity'],
  ['/v1/topk', 'filtered'],
  ['/v1/ops/summary', 'no-entity-data'],
]);
/** The dashboard's page and files hold no data (their data calls are checked on their own). */
const policyOf = (route: string): ScopePolicy | undefined =>
  SCOPE_POLICY.get(route) ?? (route === '/' || route.startsWith('/dashboard/') ? 'no-entity-data' : undefined);

/** What a top-K answer says when it was cut to a key's scope. */
export interface TopKFilter {
  key: string;
  entityPrefixes: string[];
}

/** A key's entity scope: which entity ids it may read. */
export class EntityScope {
  /**
   * How many top-K entries a scoped read asks for: all of the window, since the scope's entities may rank anywhere
   * (the window holds at most SLUICE_TOPK_CAPACITY entities per bucket, which an unscoped read scans as well).
   */
  static readonly READ_ALL = 2 ** 31 - 1;

  constructor(
    readonly key: string,
    readonly entityPrefixes: readonly string[],
  ) {}

  allows(entityId: string): boolean {
    return this.entityPrefixes.some((p) => entityId.startsWith(p));
  }

  /**
   * A merged top-K window (read with READ_ALL) holding only this scope's entities, so the answer ranks them among
   * themselves; its bounds stay valid (an entity not kept has at most missingBound events, in the scope or not).
   */
  restrictWindow(window: RankedSummary): RankedSummary {
    return { ...window, items: window.items.filter((i) => this.allows(i.entityId)), truncated: false };
  }

  /** A top-K answer of a restricted window: says it was filtered and by what, and drops `events` (the event type's total over all entities). */
  annotate<T extends { events?: unknown }>(answer: T): Omit<T, 'events'> & { filtered: TopKFilter } {
    const { events: _all, ...rest } = answer;
    return { ...rest, filtered: { key: this.key, entityPrefixes: [...this.entityPrefixes] } };
  }
}

export interface QueryAuthOptions {
  cfg: Pick<Config, 'SLUICE_QUERY_API_KEYS' | 'SLUICE_QUERY_KEY_SCOPES' | 'SLUICE_OPERATOR_KEYS'>;
  metrics: Pick<QueryMetrics, 'keyRequests' | 'keyRefusals'>;
  log: Logger;
}

interface Caller {
  /** The key's name (or OPERATOR_KEY). */
  name: string;
  scope?: EntityScope;
}
interface Refusal {
  status: 401 | 403;
  reason: RefusalReason;
  error: string;
  /** The refused credential came from the cookie: it is cleared, so the dashboard signs in again. */
  clearCookie?: boolean;
}

/** Entity ids a request names, in its path or its query (repeated parameters included). */
function entityIdsOf(req: FastifyRequest): string[] {
  const out: string[] = [];
  for (const source of [req.params, req.query] as unknown[]) {
    const v = (source as Record<string, unknown> | undefined)?.entityId;
    for (const id of Array.isArray(v) ? v : [v]) if (id !== undefined) out.push(String(id));
  }
  return out;
}

export class QueryAuth {
  private readonly keys: ApiKeys;
  private readonly operators: ApiKeys;
  private readonly scopes = new Map<string, EntityScope>();
  private readonly callers = new WeakMap<FastifyRequest, Caller>();

  constructor(private readonly o: QueryAuthOptions) {
    this.keys = new ApiKeys(o.cfg.SLUICE_QUERY_API_KEYS);
    this.operators = new ApiKeys(new Map(o.cfg.SLUICE_OPERATOR_KEYS.map((k) => [k, OPERATOR_KEY])));
    for (const [name, s] of o.cfg.SLUICE_QUERY_KEY_SCOPES) this.scopes.set(name, new EntityScope(name, s.entityPrefixes));
  }

  /** Whether keys are required (SLUICE_QUERY_API_KEYS is set). */
  get enabled(): boolean {
    return !this.keys.empty;
  }

  /** The entity scope of the request's key, or undefined when it reads everything (or keys are off). */
  readonly scopeOf = (req: FastifyRequest): EntityScope | undefined => this.callers.get(req)?.scope;

  /** Checks every request and adds the sign-in routes; call before the routes are registered. Does nothing when off. */
  install(app: FastifyInstance): void {
    if (!this.enabled) return;
    this.o.log.info(
      {
        keyNames: this.keys.names,
        scoped: Object.fromEntries([...this.scopes].map(([name, s]) => [name, s.entityPrefixes])),
      },
      'query API requires a key (SLUICE_QUERY_API_KEYS); /healthz, /readyz and /metrics stay open',
    );
    app.addHook('onRequest', async (req, reply) => this.check(req, reply));
    app.register(async (scope) =>
      registerSignIn(scope, { nameOf: (key) => this.keys.nameOf(key), signedInAs: (req) => this.callers.get(req), count: this.countSignIn }),
    );
  }

  private async check(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    const route = req.routeOptions.url;
    if (route !== undefined && OPEN_ROUTES.has(route)) return;
    const who = this.identify(req, route);
    if ('status' in who) return this.refuse(req, reply, who.status === 401 ? NO_KEY : UNKNOWN_KEY, who);
    this.o.metrics.keyRequests.inc({ key: who.name });
    const scope = who.scope;
    if (scope && route !== undefined) {
      const policy = policyOf(route);
      if (policy === undefined) {
        return this.refuse(req, reply, who.name, {
          status: 403,
          reason: 'route_not_scoped',
          error: `key "${who.name}" is limited to entities starting with ${scope.entityPrefixes.join(', ')}, and ${req.method} ${route} cannot apply that limit; use an unrestricted key`,
        });
      }
      if (policy === 'entity') {
        const outside = entityIdsOf(req).find((id) => !scope.allows(id));
        if (outside !== undefined) {
          return this.refuse(req, reply, who.name, {
            status: 403,
            reason: 'outside_scope',
            error: `key "${who.name}" may read only entities whose id starts with ${scope.entityPrefixes.join(', ')}; ${JSON.stringify(outside.slice(0, 80))} is not one of them`,
          });
        }
      }
    }
    this.callers.set(req, who);
  }

  /**
   * The caller, by the first credential that is a known key: the bearer key, else the dashboard's cookie (the
   * dashboard sends an operator key as its bearer, beside the cookie); an operator key also opens /v1/ops/summary.
   */
  private identify(req: FastifyRequest, route: string | undefined): Caller | Refusal {
    const bearer = bearerKey(req.headers.authorization);
    const cookie = cookieKey(req.headers.cookie);
    const name = (typeof bearer === 'string' ? this.keys.nameOf(bearer) : undefined) ?? (cookie !== undefined ? this.keys.nameOf(cookie) : undefined);
    if (name !== undefined) return { name, scope: this.scopes.get(name) };
    if (route === '/v1/ops/summary' && typeof bearer === 'string' && this.operators.nameOf(bearer) !== undefined) return { name: OPERATOR_KEY };
    if (bearer === undefined && cookie === undefined) {
      return {
        status: 401,
        reason: 'missing_key',
        error: `this query API requires a key: send Authorization: Bearer <key> with a key of SLUICE_QUERY_API_KEYS, or sign in at ${LOGIN_PATH}`,
      };
    }
    return { status: 403, reason: 'unknown_key', error: 'API key not recognised', clearCookie: cookie !== undefined };
  }

  private refuse(req: FastifyRequest, reply: FastifyReply, key: string, r: Refusal): FastifyReply {
    const { metrics } = this.o;
    if (key === NO_KEY || key === UNKNOWN_KEY) metrics.keyRequests.inc({ key });
    metrics.keyRefusals.inc({ key, reason: r.reason });
    req.log.debug({ key, reason: r.reason, route: req.routeOptions.url ?? 'unmatched' }, 'query request refused');
    if (r.status === 401) void reply.header('www-authenticate', BEARER_CHALLENGE);
    if (r.clearCookie) void reply.header('set-cookie', keyCookie(req, '', 0));
    // The dashboard's page itself answers with the sign-in form, so a browser shows it.
    if (req.routeOptions.url === '/' && r.reason !== 'outside_scope') {
      return sendLoginPage(reply, r.status, r.status === 401 ? '' : KEY_NOT_RECOGNISED);
    }
    return reply.code(r.status).send({ error: r.error });
  }

  /** A sign-in form's attempt, counted like a request: a refused one under NO_KEY (no key given) or UNKNOWN_KEY. */
  private readonly countSignIn = (attempt: SignInAttempt): void => {
    const { metrics } = this.o;
    if ('accepted' in attempt) {
      metrics.keyRequests.inc({ key: attempt.accepted });
      return;
    }
    const key = attempt.refused === 'missing_key' ? NO_KEY : UNKNOWN_KEY;
    metrics.keyRequests.inc({ key });
    metrics.keyRefusals.inc({ key, reason: attempt.refused });
  };
}
