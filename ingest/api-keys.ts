// Producer authentication: maps an `Authorization: Bearer <key>` header's key to a producer name. The constant-time
// comparison is shared with the query API's read keys (shared/api-keys.ts); here a key's name is its producer.
import { ApiKeys as NamedKeys } from '../shared/api-keys.js';

export class ApiKeys extends NamedKeys {
  /** The producer owning `key`, or undefined. Time does not depend on which key matched or how closely. */
  producerOf(key: string): string | undefined {
    return this.nameOf(key);
  }
}
