// The dashboard's sign-in, served while SLUICE_QUERY_API_KEYS is set (query/auth.ts checks every other request): a
// form at /dashboard/login takes a key in the request body and keeps it in an HttpOnly, SameSite=Lax cookie (Secure
// behind TLS), so page scripts never see it; a form posted from another site is refused (login CSRF). The key check
// reads the cookie back through cookieKey. A key is never logged, counted or echoed: attempts are counted by key name.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PROJECT_ROOT } from '../shared/config.js';

/** The cookie holding the dashboard's key (HttpOnly: page scripts never see it). */
export const KEY_COOKIE = 'sluice_query_key';
export const LOGIN_PATH = '/dashboard/login';
export const LOGOUT_PATH = '/dashboard/logout';
/** Who the dashboard is signed in as (key name and scope), for its header. */
export const SESSION_PATH = '/dashboard/session';
/** How long the dashboard's cookie lives. */
export const COOKIE_MAX_AGE_S = 12 * 3600;
/** The challenge of every 401 of the query API, the sign-in form's included. */
export const BEARER_CHALLENGE = 'Bearer realm="sluice query API"';
/** What the sign-in form says to a key that is not one of SLUICE_QUERY_API_KEYS. */
export const KEY_NOT_RECOGNISED = 'That key is not recognised.';

/** A sign-in attempt as the key check counts it: accepted under its key's name, or refused and why. */
export type SignInAttempt = { accepted: string } | { refused: 'missing_key' | 'unknown_key' | 'cross_site_sign_in' };

/** Who a request is signed in as: its key's name and, for a scoped key, the entity prefixes it may read. */
export interface SignedIn {
  name: string;
  scope?: { readonly entityPrefixes: readonly string[] };
}

export interface SignInOptions {
  /** The name of a key of SLUICE_QUERY_API_KEYS, or undefined (compared in constant time, shared/api-keys.ts). */
  nameOf: (key: string) => string | undefined;
  /** Who a request the key check let through is signed in as, for GET /dashboard/session. */
  signedInAs: (req: FastifyRequest) => SignedIn | undefined;
  /** Counts an attempt in the key check's per-key metrics. */
  count: (attempt: SignInAttempt) => void;
}

/** The dashboard's key from a Cookie header, or undefined ('' for a value that is not valid percent-encoding). */
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

/** The Set-Cookie value keeping `key` for `maxAgeS` seconds (`''` and 0 clear it); Secure when the request came over TLS. */
export function keyCookie(req: FastifyRequest, key: string, maxAgeS: number): string {
  const https = (req.socket as { encrypted?: boolean }).encrypted === true || /^https\b/i.test(String(req.headers['x-forwarded-proto'] ?? ''));
  return `${KEY_COOKIE}=${encodeURIComponent(key)}; Path=/; Max-Age=${maxAgeS}; HttpOnly; SameSite=Lax${https ? '; Secure' : ''}`;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const LOGIN_PAGE = readFileSync(path.join(PROJECT_ROOT, 'query', 'dashboard', 'login.html'), 'utf8');
/** The sign-in page runs no script and may be framed by nobody. */
const LOGIN_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** Answers with the sign-in form, showing `message` (HTML-escaped) under the key field. */
export function sendLoginPage(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply
    .code(status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('content-security-policy', LOGIN_PAGE_CSP)
    .header('referrer-policy', 'same-origin')
    .send(LOGIN_PAGE.replace('{{message}}', escapeHtml(message)));
}

/**
 * GET/POST /dashboard/login, POST /dashboard/logout, GET /dashboard/session (the last one behind the key check).
 * Register it in its own plugin scope (its form-body parser stays there), after the key check's onRequest hook.
 */
export async function registerSignIn(app: FastifyInstance, o: SignInOptions): Promise<void> {
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_req, body, done) => {
    done(null, new URLSearchParams(body as string));
  });
  app.get(LOGIN_PATH, async (_req, reply) => sendLoginPage(reply, 200, ''));
  app.post(LOGIN_PATH, { bodyLimit: 4096 }, async (req, reply) => {
    // A form posted from another site (login CSRF) is refused; browsers always send Origin with a POST.
    const origin = req.headers.origin;
    if (origin !== undefined && !sameHost(origin, req.headers.host)) {
      o.count({ refused: 'cross_site_sign_in' });
      return sendLoginPage(reply, 403, 'Sign-in from another site refused: sign in from this page.');
    }
    const body = req.body;
    const raw = body instanceof URLSearchParams ? body.get('key') : (body as { key?: unknown } | undefined)?.key;
    const key = typeof raw === 'string' ? raw.trim() : '';
    if (key === '') {
      o.count({ refused: 'missing_key' });
      void reply.header('www-authenticate', BEARER_CHALLENGE);
      return sendLoginPage(reply, 401, 'Enter a key.');
    }
    const name = o.nameOf(key);
    if (name === undefined) {
      o.count({ refused: 'unknown_key' });
      return sendLoginPage(reply, 403, KEY_NOT_RECOGNISED);
    }
    o.count({ accepted: name });
    return reply
      .code(303)
      .header('set-cookie', keyCookie(req, key, COOKIE_MAX_AGE_S))
      .header('location', '/')
      .send();
  });
  app.post(LOGOUT_PATH, async (req, reply) =>
    reply
      .code(303)
      .header('set-cookie', keyCookie(req, '', 0))
      .header('location', LOGIN_PATH)
      .send(),
  );
  app.get(SESSION_PATH, async (req, reply) => {
    void reply.header('cache-control', 'no-store');
    const c = o.signedInAs(req);
    return { key: c?.name ?? null, entityPrefixes: c?.scope ? [...c.scope.entityPrefixes] : null };
  });
}

function sameHost(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}
