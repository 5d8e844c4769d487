// Producer authentication: maps an `Authorization: Bearer <key>` header to a producer name. Keys are compared
// in constant time (timingSafeEqual over SHA-256 digests, every configured key checked on every request), so
// response timing tells nothing about how much of a guessed key was right.
import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (key: string): Buffer => createHash('sha256').update(key, 'utf8').digest();

export class ApiKeys {
  private readonly entries: { digest: Buffer; producer: string }[];

  /** `keys`: key → producer, as SLUICE_API_KEYS is parsed. */
  constructor(keys: ReadonlyMap<string, string>) {
    this.entries = [...keys].map(([key, producer]) => ({ digest: digest(key), producer }));
  }

  /** No keys configured: authentication is off. */
  get empty(): boolean {
    return this.entries.length === 0;
  }

  /** The producer owning `key`, or undefined. Time does not depend on which key matched or how closely. */
  producerOf(key: string): string | undefined {
    const d = digest(key);
    let found: string | undefined;
    for (const e of this.entries) if (timingSafeEqual(d, e.digest) && found === undefined) found = e.producer;
    return found;
  }
}
