// The ledger of delivered batches: one Redis key per batch whose effects (InfluxDB points, top-K, totals) are
// durable, written by the worker just before it deletes the batch's message. Reconcile trusts it: a batch in the
// archive but not in the ledger was never delivered and is announced again.
//
// Layout: `<prefix>ledger:{<batch key>}` → delivery time (epoch ms), expiring after SLUICE_LEDGER_RETENTION. The
// hash tag is the batch key itself, so keys spread over every slot of a Redis Cluster and no command spans two.
// Cost: one SET per batch (not per event); size: ~150 bytes per batch, e.g. ~20 MB for 14 days of one node
// flushing every 10 s.
import type { RedisClient } from '../../shared/clients/redis.js';
import { classify } from '../../shared/errors.js';

/** Keys looked up at once by delivered(): bounds the commands one call keeps in flight. */
const LOOKUP_CHUNK = 500;

export class BatchLedger {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly retentionMs: number,
  ) {}

  keyOf(batchKey: string): string {
    return `${this.prefix}ledger:{${batchKey}}`;
  }

  /** Records that every effect of `batchKey` is durable. */
  async record(batchKey: string, nowMs = Date.now()): Promise<void> {
    try {
      await this.redis.set(this.keyOf(batchKey), String(nowMs), 'PX', this.retentionMs);
    } catch (err) {
      throw classify(err, `recording batch ${batchKey} in the ledger`);
    }
  }

  /** The subset of `batchKeys` the ledger holds (one GET per key: cluster-safe, pipelined by the client). */
  async delivered(batchKeys: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    for (let i = 0; i < batchKeys.length; i += LOOKUP_CHUNK) {
      const chunk = batchKeys.slice(i, i + LOOKUP_CHUNK);
      try {
        const got = await Promise.all(chunk.map((k) => this.redis.exists(this.keyOf(k))));
        for (const [j, n] of got.entries()) if (n > 0) out.add(chunk[j]!);
      } catch (err) {
        throw classify(err, 'reading the batch ledger');
      }
    }
    return out;
  }
}
