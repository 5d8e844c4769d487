// The building blocks of the settings table: value parsers (durations, sizes) and typed field constructors.
// A field parses a raw string to its value or undefined (never throws); secret fields are never echoed (see shownRaw).

export const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** Parses "250ms", "10s", "5m", "2h", "7d" or a bare number of milliseconds. */
export function parseDuration(raw: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(raw);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!);
}
export const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };
/** Parses "512KiB", "64MiB", "1GB" or a bare number of bytes. */
export function parseSize(raw: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*$/i.exec(raw);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()]!);
}

export interface Field<T> {
  readonly doc: string;
  readonly fallback: string;
  readonly accepts: string;
  /** A secret setting's value is never shown (errors, `sluice config`); a URL's user and password are masked. */
  readonly secret?: 'value' | 'url';
  parse(raw: string): T | undefined;
  /** For a refused value: which part of it is wrong (e.g. the bad entry of a list), appended to the error. */
  explain?(raw: string): string | undefined;
}
/** Marks a setting as secret: its raw value never appears in an error message or in `sluice config`. */
export const secret = <T>(f: Field<T>): Field<T> => ({ ...f, secret: 'value' });
export const field =
  <T>(accepts: string, parse: (raw: string) => T | undefined) =>
  (fallback: string, doc: string): Field<T> => ({ doc, fallback, accepts, parse });
export const str = field('a non-empty string', (r) => (r.trim() === '' ? undefined : r.trim()));
export const nodeId = field('letters, digits, _ and - (at most 64)', (r) => (/^[A-Za-z0-9_-]{1,64}$/.test(r.trim()) ? r.trim() : undefined));
export const optStr = field('any string (empty = unset)', (r) => r.trim());
const urlField = field('a URL such as http://127.0.0.1:8086', (r) => {
  try {
    return new URL(r).toString().replace(/\/$/, '');
  } catch {
    return undefined;
  }
});
/** URLs may carry a user and password (redis://:pw@host): shown masked. */
export const url = (fallback: string, doc: string): Field<string> => ({ ...urlField(fallback, doc), secret: 'url' });

/** Splits a comma-separated list of Redis URLs into its entries (a comma inside a password must be written %2C). */
export function splitRedisUrls(value: string): string[] {
  return value.split(',').map((u) => u.trim());
}

/** Checks one or more comma-separated redis:// or rediss:// URLs: their normalised form, or what is wrong and where. */
export function checkRedisUrls(raw: string): { urls: string[] } | { problem: string } {
  const entries = splitRedisUrls(raw);
  const urls: string[] = [];
  for (const [i, entry] of entries.entries()) {
    const where = entries.length > 1 ? `entry ${i + 1} ${JSON.stringify(maskUrl(entry))}` : 'it';
    if (entry === '') return { problem: entries.length > 1 ? `entry ${i + 1} is empty` : 'it is empty' };
    let u: URL;
    try {
      u = new URL(entry);
    } catch {
      return { problem: `${where} is not a URL` };
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return { problem: `${where} is ${u.protocol}//, not redis:// or rediss://` };
    if (u.hostname === '') return { problem: `${where} has no host` };
    urls.push(u.toString().replace(/\/$/, ''));
  }
  return { urls };
}

/** One Redis URL, or a Redis Cluster's seed nodes as a comma-separated list (normalised, joined by commas); shown masked. */
export const redisUrls = (fallback: string, doc: string): Field<string> => ({
  doc,
  fallback,
  accepts:
    'a redis:// or rediss:// URL such as redis://127.0.0.1:6379; with SLUICE_REDIS_CLUSTER=true one or more comma-separated seed nodes such as redis://127.0.0.1:7000,redis://127.0.0.1:7001',
  secret: 'url',
  parse: (raw) => {
    const r = checkRedisUrls(raw);
    return 'urls' in r ? r.urls.join(',') : undefined;
  },
  explain: (raw) => {
    const r = checkRedisUrls(raw);
    return 'problem' in r ? r.problem : undefined;
  },
});
export const duration = field('a duration like 250ms, 10s, 5m, 2h or 7d', parseDuration);
export const durationBetween = (minMs: number, maxMs: number) =>
  field(`a duration from ${minMs / 1000}s to ${maxMs / 1000}s`, (r) => {
    const ms = parseDuration(r);
    return ms !== undefined && ms >= minMs && ms <= maxMs ? ms : undefined;
  });
/** A retention: a duration (at least 1h, InfluxDB's minimum) or "inf" for keeping data forever (returned as 0). */
export const retention = field('a duration of at least 1h like 7d or 90d, or inf (keep forever)', (r) => {
  if (/^\s*inf(inite)?\s*$/i.test(r)) return 0;
  const ms = parseDuration(r);
  return ms !== undefined && ms >= 3_600_000 ? ms : undefined;
});
export const size = field('a size like 512KiB, 64MiB or 1GB', parseSize);
export const int = (min: number, max: number) =>
  field(`an integer from ${min} to ${max}`, (r) => {
    const n = Number(r);
    return Number.isInteger(n) && n >= min && n <= max ? n : undefined;
  });
export const port = int(0, 65535);
export const bool = field('true or false', (r) => (/^(1|true|yes|on)$/i.test(r) ? true : /^(0|false|no|off)$/i.test(r) ? false : undefined));
export const oneOf = <T extends string>(values: readonly T[]) =>
  field(values.join(' | '), (r) => ((values as readonly string[]).includes(r) ? (r as T) : undefined));
/** "k1,k2" → the list of keys; any value is valid, so a config error can never echo one. */
export const keyList = field('comma-separated keys (empty = none)', (r) =>
  r
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean),
);
const KEY_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/**
 * Checks "name:key,other:key2" (the name is everything before the first ":"): Map(key → name), or which entry is
 * wrong. A problem names the entry by its position only, never by its text, which may hold a key.
 */
export function checkNamedKeys(raw: string, opts: { uniqueKeys?: boolean } = {}): { keys: Map<string, string> } | { problem: string } {
  const keys = new Map<string, string>();
  const parts = raw
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  for (const [n, part] of parts.entries()) {
    const where = `entry ${n + 1} of ${parts.length}`;
    const i = part.indexOf(':');
    if (i < 0) return { problem: `${where} has no ":" between its name and its key` };
    if (i === 0) return { problem: `${where} has an empty name` };
    if (i === part.length - 1) return { problem: `${where} has an empty key` };
    if (!KEY_NAME.test(part.slice(0, i))) return { problem: `${where}: the name before ":" must be letters, digits, _ . - (at most 64)` };
    const key = part.slice(i + 1);
    if (opts.uniqueKeys && keys.has(key)) {
      return { problem: `${where} repeats the key of entry ${parts.findIndex((p) => p.slice(p.indexOf(':') + 1) === key) + 1}: each key belongs to one name` };
    }
    keys.set(key, part.slice(0, i));
  }
  return { keys };
}
const namedKeys =
  (accepts: string, opts: { uniqueKeys?: boolean } = {}) =>
  (fallback: string, doc: string): Field<Map<string, string>> => ({
    doc,
    fallback,
    accepts,
    parse: (raw) => {
      const r = checkNamedKeys(raw, opts);
      return 'keys' in r ? r.keys : undefined;
    },
    explain: (raw) => {
      const r = checkNamedKeys(raw, opts);
      return 'problem' in r ? r.problem : undefined;
    },
  });
/** "producer:key,other:key2" → Map(key → producer); a key may be listed once (it names the producer of its events). */
export const apiKeys = namedKeys(
  'comma-separated producer:key pairs, producer names of letters, digits, _ . - (at most 64), each key listed once, e.g. web:s3cret,app:t0ken (empty = no authentication)',
  { uniqueKeys: true },
);
/** "analyst:key,ops:key2" → Map(key → key name); a key may be listed once (its name decides its scope). */
export const queryApiKeys = namedKeys(
  'comma-separated name:key pairs, names of letters, digits, _ . - (at most 64), each key listed once, e.g. analyst:s3cret,ops:t0ken (empty = no authentication)',
  { uniqueKeys: true },
);

/** The value type a field parses to. */
export type ValueOf<F> = F extends Field<infer T> ? T : never;

/** URLs (one, or a comma-separated list) with their user and password (if any) replaced by ***, e.g. redis://***@cache:6379. */
export function maskUrl(raw: string): string {
  return raw.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/?#]*@/g, '$1***@');
}

/** A raw setting as an error message may show it: secrets by their length only, URLs masked. */
export function shownRaw(f: Field<unknown>, raw: string): string {
  if (f.secret === 'value') return `a value of ${raw.length} characters (not shown: it holds secrets)`;
  return JSON.stringify(f.secret === 'url' ? maskUrl(raw) : raw);
}
