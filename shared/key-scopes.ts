// The syntax of SLUICE_QUERY_KEY_SCOPES: which entities a query API key (by its name in SLUICE_QUERY_API_KEYS) may
// read. Entries are `name:entity=prefix|prefix`, separated by ";"; a key without an entry reads everything. Every
// refusal names the entry and what is wrong with it. Scopes are not secret (they hold names and prefixes, no keys).
import { ENTITY_ID_MAX } from './contracts/event.js';
import { TAGS } from './contracts/influx-series.js';
import type { Field } from './config-fields.js';

/** What one key may read: entities whose id starts with one of the prefixes. */
export interface KeyScope {
  readonly entityPrefixes: readonly string[];
}
/** Key name → its scope; names without an entry are not restricted. */
export type KeyScopes = ReadonlyMap<string, KeyScope>;

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const CONTROL_CHAR = /[\u0000-\u001f\u007f]/;

export const KEY_SCOPES_ACCEPTS =
  'semicolon-separated name:entity=prefix|prefix entries, one per key name of SLUICE_QUERY_API_KEYS, e.g. analyst:entity=video-|channel-;partner:entity=acme- (write | ; % inside a prefix as %7C %3B %25; empty = every key reads every entity)';

/**
 * Why producer scopes are refused: nothing the query API reads says which producer sent it. Built from the series
 * contract, so the message changes if a producer tag is ever added (and this check with it).
 */
export const PRODUCER_SCOPE_UNSUPPORTED = `producer scopes are not supported by the current series layout: the query API's data carries no producer (InfluxDB series are tagged ${TAGS.join(' and ')} only, the top-K sets and totals in Redis are kept per event type and entity), so a producer's data cannot be told apart from another's; scope the key by entity prefix instead (name:entity=prefix|prefix)`;

/** Parses SLUICE_QUERY_KEY_SCOPES: the scopes, or the first wrong entry and what is wrong with it. */
export function checkKeyScopes(raw: string): { scopes: Map<string, KeyScope> } | { problem: string } {
  const scopes = new Map<string, KeyScope>();
  const firstEntry = new Map<string, number>();
  const entries = raw
    .split(';')
    .map((e) => e.trim())
    .filter(Boolean);
  for (const [n, entry] of entries.entries()) {
    const where = `entry ${n + 1} ${JSON.stringify(entry)}`;
    const colon = entry.indexOf(':');
    const name = colon < 0 ? entry : entry.slice(0, colon).trim();
    if (colon < 0 || !NAME.test(name)) {
      return { problem: `${where} must start with a key name of SLUICE_QUERY_API_KEYS (letters, digits, _ . -, at most 64) and ":"` };
    }
    const rule = entry.slice(colon + 1).trim();
    const eq = rule.indexOf('=');
    const kind = eq < 0 ? rule : rule.slice(0, eq).trim();
    if (kind === 'producer') return { problem: `${where}: ${PRODUCER_SCOPE_UNSUPPORTED}` };
    if (kind !== 'entity' || eq < 0) return { problem: `${where} must scope the key as entity=prefix|prefix, got ${JSON.stringify(rule)}` };
    const prefixes: string[] = [];
    for (const encoded of rule.slice(eq + 1).split('|')) {
      let prefix: string;
      try {
        prefix = decodeURIComponent(encoded.trim());
      } catch {
        return { problem: `${where}: prefix ${JSON.stringify(encoded)} is not valid percent-encoding (write % itself as %25)` };
      }
      if (prefix === '') {
        return {
          problem: `${where} has an empty prefix, which would match every entity; leave the key out of SLUICE_QUERY_KEY_SCOPES to let it read everything`,
        };
      }
      if (prefix.length > ENTITY_ID_MAX) return { problem: `${where}: a prefix is longer than an entity id can be (${ENTITY_ID_MAX} characters)` };
      if (CONTROL_CHAR.test(prefix)) return { problem: `${where}: prefix ${JSON.stringify(prefix)} holds a control character, which no entity id can` };
      if (!prefixes.includes(prefix)) prefixes.push(prefix);
    }
    const before = firstEntry.get(name);
    if (before !== undefined) return { problem: `${where} scopes "${name}" again (entry ${before}): list all its prefixes in one entry` };
    firstEntry.set(name, n + 1);
    scopes.set(name, { entityPrefixes: prefixes });
  }
  return { scopes };
}

/** The SLUICE_QUERY_KEY_SCOPES field: parsed with checkKeyScopes, its problem appended to the configuration error. */
export const keyScopes = (fallback: string, doc: string): Field<Map<string, KeyScope>> => ({
  doc,
  fallback,
  accepts: KEY_SCOPES_ACCEPTS,
  parse: (raw) => {
    const r = checkKeyScopes(raw);
    return 'scopes' in r ? r.scopes : undefined;
  },
  explain: (raw) => {
    const r = checkKeyScopes(raw);
    return 'problem' in r ? r.problem : undefined;
  },
});

/** Problems of scopes naming keys that SLUICE_QUERY_API_KEYS (key → name) does not define. */
export function unknownScopedNames(scopes: KeyScopes, keys: ReadonlyMap<string, string>): string[] {
  const names = new Set(keys.values());
  const known = names.size ? `its names: ${[...names].sort().join(', ')}` : 'it is empty, so no key is required at all';
  return [...scopes.keys()]
    .filter((name) => !names.has(name))
    .map((name) => `SLUICE_QUERY_KEY_SCOPES scopes key name "${name}", which SLUICE_QUERY_API_KEYS does not define (${known})`);
}
