// Producer-side dedup: an eventId accepted within the window is not stored again, so a producer may retry a
// whole request safely. Ids are checked before the WAL append and marked only after the fsync, so a crash
// can never make an unstored event look like a duplicate. Redis unavailable → dedup is skipped (workers'
// exact dedup still counts each id once); ingest never fails because of it.
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';

const MARK_SCRIPT = `
local px = ARGV[1]
for i = 1, #KEYS do redis.call('SET', KEYS[i], '1', 'PX', px) end
return #KEYS`;

export class ProducerDedup {
  private warnedAt = 0;
  constructor(private readonly redis: Redis, private readonly prefix: string, private readonly windowMs: number, private readonly log: Logger) {}

  private key(id: string): string { return `${this.prefix}seen:${id}`; }

  /** Which of `ids` were already accepted within the window (by any node). */
  async seen(ids: readonly string[]): Promise<boolean[]> {
    if (ids.length === 0 || this.redis.status !== 'ready') return ids.map(() => false);
    try {
      const r = await this.redis.mget(ids.map((id) => this.key(id)));
      return r.map((v) => v !== null);
    } catch (err) {
      this.warn(err);
      return ids.map(() => false);
    }
  }

  /** Marks ids as accepted (after they are durable), in one Redis call. Best effort. */
  async mark(ids: readonly string[]): Promise<void> {
    if (ids.length === 0 || this.redis.status !== 'ready') return;
    try {
      await this.redis.eval(MARK_SCRIPT, ids.length, ...ids.map((id) => this.key(id)), this.windowMs);
    } catch (err) {
      this.warn(err);
    }
  }

  private warn(err: unknown): void {
    if (Date.now() - this.warnedAt > 10_000) {
      this.warnedAt = Date.now();
      this.log.warn({ err: String(err) }, 'Redis unavailable: producer dedup skipped (workers still deduplicate)');
    }
  }
}
