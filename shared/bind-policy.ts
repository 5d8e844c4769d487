// Who may reach a service decides whether it may run without credentials: a service listening beyond the
// loopback interface refuses to start unauthenticated unless SLUICE_ALLOW_ANONYMOUS=true says so explicitly.
// One rule for every HTTP service, checked before it listens.
import { isIP } from 'node:net';
import { ConfigError } from './errors.js';

/** Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  return mapped !== null && mapped[1]!.startsWith('127.');
}

export interface BindCheck {
  /** Service name as the operator knows it: "ingest", "query". */
  service: string;
  /** The setting holding the address, e.g. SLUICE_INGEST_HOST. */
  hostSetting: string;
  host: string;
  /** Whether the service authenticates its callers (e.g. SLUICE_API_KEYS is set). */
  authenticated: boolean;
  /** How to make it authenticated, for the message; undefined when the service has no keys yet. */
  keysSetting?: string;
  /** What the keys setting holds, for the message (default "producer:key pairs"). */
  keysForm?: string;
  allowAnonymous: boolean;
}

/** Throws a ConfigError when an unauthenticated service would listen on a non-loopback address without consent. */
export function assertBindAllowed(c: BindCheck): void {
  if (c.authenticated || c.allowAnonymous || isLoopback(c.host)) return;
  const fix = c.keysSetting
    ? `set ${c.keysSetting} (${c.keysForm ?? 'producer:key pairs'}) so callers must authenticate, or set SLUICE_ALLOW_ANONYMOUS=true to accept anyone who can reach it`
    : `${c.service} has no access keys yet, so set SLUICE_ALLOW_ANONYMOUS=true once the address is reachable only by trusted clients (a private network, a proxy that authenticates)`;
  throw new ConfigError(
    `${c.service} would listen on ${c.hostSetting}=${c.host}, reachable from other machines, without authentication; ${fix}, or listen on 127.0.0.1`,
  );
}
