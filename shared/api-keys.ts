// Bearer keys of Sluice's HTTP APIs (producers' SLUICE_API_KEYS, readers' SLUICE_QUERY_API_KEYS, operators'
// SLUICE_OPERATOR_KEYS): each key maps to the name it was configured under. Keys are compared in constant time
// (timingSafeEqual over SHA-256 digests, every configured key checked on every lookup), so response timing tells
// nothing about which key matched or how much of a guessed key was right. Only names ever leave this module.
import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (key: string): Buffer => createHash('sha256').update(key, 'utf8').digest();

export class ApiKeys {
  private readonly entries: { digest: Buffer; name: string }[];

  /** `keys`: key → name, as SLUICE_API_KEYS and SLUICE_QUERY_API_KEYS are parsed. */
  constructor(keys: ReadonlyMap<string, string>) {
    this.entries = [...keys].map(([key, name]) => ({ digest: digest(key), name }));
  }

  /** No keys configured: authentication is off. */
  get empty(): boolean {
    return this.entries.length === 0;
  }

  /** The distinct names keys are configured under (several keys may share one, e.g. during a rotation). */
  get names(): string[] {
    return [...new Set(this.entries.map((e) => e.name))];
  }

  /** The name owning `key`, or undefined. Time does not depend on which key matched or how closely. */
  nameOf(key: string): string | undefined {
    const d = digest(key);
    let found: string | undefined;
    for (const e of this.entries) if (timingSafeEqual(d, e.digest) && found === undefined) found = e.name;
    return found;
  }
}

/**
 * The key of an `Authorization: Bearer <key>` header: undefined without the header, null when it holds something
 * other than a bearer token (a caller that tried to authenticate, answered 403 like a wrong key).
 */
export function bearerKey(header: string | undefined): string | null | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(header);
  return m ? m[1]!.trim() : null;
}
