// Adds a batch's per-(entity, event type) counts and sums to the all-time totals in Redis
// (layout in shared/entity-totals-store.ts), exactly once per batch: each chunk of increments is applied by one
// Lua script guarded by a "done" key, so a redelivered or concurrently delivered batch never adds twice.
import type { RedisClient } from '../shared/clients/redis.js';
import type { EntityTotal } from './batch-scan-types.js';
import { TransientError, errorMessage } from '../shared/errors.js';
import { totalKeys, totalsCompleteKey } from '../shared/entity-totals-store.js';

export const TOTALS_CHUNK = 2_000;
/** How long a batch remembers it was applied (longer than any redelivery short of a late DLQ redrive). */
export const TOTALS_DONE_TTL_S = 14 * 86_400;

/** KEYS[1] done key, then (count hash, sum hash) per row; ARGV[1] TTL, then (entity, count, sum) per row. */
const APPLY_SCRIPT = `
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, #KEYS, 2 do
  local a = 2 + ((i - 2) / 2) * 3
  redis.call('HINCRBY', KEYS[i], ARGV[a], ARGV[a + 1])
  redis.call('HINCRBYFLOAT', KEYS[i + 1], ARGV[a], ARGV[a + 2])
end
return 1
`;

export class EntityTotalsUpdater {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
  ) {}

  /**
   * Called at start-up: when nothing has been counted yet (`countedSoFar` is 0), the totals will hold every event
   * from now on, so they are marked complete. Otherwise the marker is left as it is.
   */
  async markCompleteIfEmpty(countedSoFar: () => Promise<number>): Promise<boolean> {
    if ((await this.redis.exists(totalsCompleteKey(this.prefix))) === 1) return true;
    if ((await countedSoFar()) > 0) return false;
    await this.redis.set(totalsCompleteKey(this.prefix), new Date().toISOString(), 'NX');
    return true;
  }

  /** Applies the batch's totals once; rows must come in an order fixed by the batch content (chunks are keyed by index). */
  async apply(batchKey: string, rows: readonly EntityTotal[]): Promise<number> {
    // Rows grouped by event type (stable, so chunks stay fixed by the batch content): a call touches one type's slot.
    const byType = new Map<string, EntityTotal[]>();
    for (const r of rows) {
      const list = byType.get(r.eventType);
      if (list) list.push(r);
      else byType.set(r.eventType, [r]);
    }
    let applied = 0;
    for (const [eventType, typeRows] of [...byType.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const k = totalKeys(this.prefix, eventType);
      for (let i = 0, chunk = 0; i < typeRows.length; i += TOTALS_CHUNK, chunk++) {
        const keys: string[] = [`${k.tag}:done:${batchKey}:${chunk}`];
        const args: (string | number)[] = [TOTALS_DONE_TTL_S];
        for (const r of typeRows.slice(i, i + TOTALS_CHUNK)) {
          keys.push(k.count, k.sum);
          args.push(r.entityId, r.count, r.sum);
        }
        try {
          applied += Number(await this.redis.eval(APPLY_SCRIPT, keys.length, ...keys, ...args));
        } catch (err) {
          throw new TransientError(`Redis entity totals update failed: ${errorMessage(err)}`, 'totals_unavailable', { cause: err });
        }
      }
    }
    return applied;
  }
}
