// Cross-batch event dedup: each event id is claimed in Redis by the first batch that carries it, for
// SLUICE_DEDUP_WINDOW. A batch skips ids claimed by another batch and keeps ids it claimed itself, so a
// redelivered or concurrently delivered batch computes the same exclusion set every time.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { TransientError, errorMessage } from '../shared/errors.js';

/** Ids per Lua call: bounds the time one call holds Redis (~ a few ms per 5,000 ids). */
export const CLAIM_CHUNK = 5_000;

/**
 * KEYS: none (keys are built from ARGV so one call carries a whole chunk). ARGV[1] key prefix, ARGV[2] batch
 * key, ARGV[3] TTL seconds, ARGV[4..] ids. Returns the ids already claimed by a different batch.
 */
const CLAIM_SCRIPT = `
local prefix, batch, ttl = ARGV[1], ARGV[2], ARGV[3]
local excluded = {}
for i = 4, #ARGV do
  local owner = redis.call('SET', prefix .. ARGV[i], batch, 'NX', 'GET', 'EX', ttl)
  if owner and owner ~= batch then excluded[#excluded + 1] = ARGV[i] end
end
return excluded
`;

export interface ClaimResult {
  /** Ids of this batch already counted by another batch within the window. */
  excluded: string[];
}

/**
 * The owner tag stored per claimed id: 72 bits of sha256(batchKey) in base64url (12 characters) instead of the
 * ~80-character key, which keeps Redis memory per claim small; two batches share a tag with probability 2⁻⁷².
 */
export function claimTag(batchKey: string): string {
  return createHash('sha256').update(batchKey).digest('base64url').slice(0, 12);
}

export class EventDedup {
  constructor(private readonly redis: Redis, private readonly prefix: string, private readonly windowMs: number) {}

  /** Claims `ids` for `batchKey`. Redis unreachable → TransientError dedup_unavailable. */
  async claim(batchKey: string, ids: readonly string[]): Promise<ClaimResult> {
    const ttl = String(Math.max(1, Math.ceil(this.windowMs / 1000)));
    const keyPrefix = `${this.prefix}eid:`;
    const tag = claimTag(batchKey);
    const excluded: string[] = [];
    for (let i = 0; i < ids.length; i += CLAIM_CHUNK) {
      let got: unknown;
      try {
        got = await this.redis.eval(CLAIM_SCRIPT, 0, keyPrefix, tag, ttl, ...ids.slice(i, i + CLAIM_CHUNK));
      } catch (err) {
        // Every Redis failure is the dependency's, not the batch's: the batch must wait, never be dead-lettered.
        throw new TransientError(`Redis event-id claims failed: ${errorMessage(err)}`, 'dedup_unavailable', { cause: err });
      }
      for (const id of got as string[]) excluded.push(id);
    }
    return { excluded };
  }
}
