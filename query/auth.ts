// Read access to the query API. With SLUICE_QUERY_API_KEYS set, every route but /healthz, /readyz and /metrics (open
// for probes and scrapers) and the sign-in form needs a key — `Authorization: Bearer <key>`, or the HttpOnly cookie the
// dashboard's sign-in form sets — else 401 with `WWW-Authenticate: Bearer`, or 403 for a key that is not recognised.
// A key scoped in SLUICE_QUERY_KEY_SCOPES reads only entities whose id starts with one of its prefixes: a route naming
// another entity answers 403, /v1/topk filters its answer (through scopeOf), and a route that cannot apply a scope
// refuses scoped keys. Requests and refusals are counted per key name; a key is never logged, counted or echoed.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiKeys, bearerKey } from '../shared/api-keys.js';
import { PROJECT_ROOT, type Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import type { RankedSummary } from '../shared/topk-summary.js';
import type { QueryMetrics } from './metrics.js';

/** The cookie holding the dashboard's key (HttpOnly: page scripts never see it). */
export const KEY_COOKIE = 'sluice_query_key';
export const LOGIN_PATH = '/dashboard/login';
export const LOGOUT_PATH = '/dashboard/logout';
/** Who the dashboard is signed in as (key name and scope), for its header. */
export const SESSION_PATH = '/dashboard/session';
/** How long the dashboard's cookie lives. */
export const COOKIE_MAX_AGE_S = 12 * 3600;
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

/** The dashboard's key from a Cookie header, or undefined. */
export function cookieKey(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== KEY_COOKIE) continue;
    try {
      const key = decodeURIComponent(part.slice(eq + 1).trim());
      return key === '' ? undefined : key;
    } catch {
      return '';
    }
  }
  return undefined;
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

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const LOGIN_PAGE = readFileSync(path.join(PROJECT_ROOT, 'query', 'dashboard', 'login.html'), 'utf8');
/** The sign-in page runs no script and may be framed by nobody. */
const LOGIN_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

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
    app.register(async (scope) => this.registerSignIn(scope));
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
    if (r.status === 401) void reply.header('www-authenticate', 'Bearer realm="sluice query API"');
    if (r.clearCookie) void reply.header('set-cookie', this.cookie(req, '', 0));
    // The dashboard's page itself answers with the sign-in form, so a browser shows it.
    if (req.routeOptions.url === '/' && r.reason !== 'outside_scope') {
      return this.loginPage(reply, r.status, r.status === 401 ? '' : 'That key is not recognised.');
    }
    return reply.code(r.status).send({ error: r.error });
  }

  private cookie(req: FastifyRequest, key: string, maxAgeS: number): string {
    const https = (req.socket as { encrypted?: boolean }).encrypted === true || /^https\b/i.test(String(req.headers['x-forwarded-proto'] ?? ''));
    return `${KEY_COOKIE}=${encodeURIComponent(key)}; Path=/; Max-Age=${maxAgeS}; HttpOnly; SameSite=Lax${https ? '; Secure' : ''}`;
  }

  private loginPage(reply: FastifyReply, status: number, message: string): FastifyReply {
    return reply
      .code(status)
      .header('content-type', 'text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('content-security-policy', LOGIN_PAGE_CSP)
      .header('referrer-policy', 'same-origin')
      .send(LOGIN_PAGE.replace('{{message}}', escapeHtml(message)));
  }

  /** GET/POST /dashboard/login, POST /dashboard/logout, GET /dashboard/session (the last one behind the check). */
  private async registerSignIn(app: FastifyInstance): Promise<void> {
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_req, body, done) => {
      done(null, new URLSearchParams(body as string));
    });
    app.get(LOGIN_PATH, async (_req, reply) => this.loginPage(reply, 200, ''));
    app.post(LOGIN_PATH, { bodyLimit: 4096 }, async (req, reply) => {
      // A form posted from another site (login CSRF) is refused; browsers always send Origin with a POST.
      const origin = req.headers.origin;
      if (origin !== undefined && !sameHost(origin, req.headers.host)) {
        this.o.metrics.keyRequests.inc({ key: UNKNOWN_KEY });
        this.o.metrics.keyRefusals.inc({ key: UNKNOWN_KEY, reason: 'cross_site_sign_in' });
        return this.loginPage(reply, 403, 'Sign-in from another site refused: sign in from this page.');
      }
      const body = req.body;
      const raw = body instanceof URLSearchParams ? body.get('key') : (body as { key?: unknown } | undefined)?.key;
      const key = typeof raw === 'string' ? raw.trim() : '';
      const name = key === '' ? undefined : this.keys.nameOf(key);
      if (name === undefined) {
        const r: Refusal = key === '' ? { status: 401, reason: 'missing_key', error: '' } : { status: 403, reason: 'unknown_key', error: '' };
        const label = key === '' ? NO_KEY : UNKNOWN_KEY;
        this.o.metrics.keyRequests.inc({ key: label });
        this.o.metrics.keyRefusals.inc({ key: label, reason: r.reason });
        if (r.status === 401) void reply.header('www-authenticate', 'Bearer realm="sluice query API"');
        return this.loginPage(reply, r.status, key === '' ? 'Enter a key.' : 'That key is not recognised.');
      }
      this.o.metrics.keyRequests.inc({ key: name });
      return reply
        .code(303)
        .header('set-cookie', this.cookie(req, key, COOKIE_MAX_AGE_S))
        .header('location', '/')
        .send();
    });
    app.post(LOGOUT_PATH, async (req, reply) =>
      reply
        .code(303)
        .header('set-cookie', this.cookie(req, '', 0))
        .header('location', LOGIN_PATH)
        .send(),
    );
    app.get(SESSION_PATH, async (req, reply) => {
      void reply.header('cache-control', 'no-store');
      const c = this.callers.get(req);
      return { key: c?.name ?? null, entityPrefixes: c?.scope ? [...c.scope.entityPrefixes] : null };
    });
  }
}

function sameHost(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}
