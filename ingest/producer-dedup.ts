// Producer-side dedup: an eventId accepted within the window is not stored again, so a producer may retry a
// whole request safely. Ids are checked before the WAL append and marked only after the fsync, so a crash
// can never make an unstored event look like a duplicate. Redis unavailable → dedup is skipped (workers'
// exact dedup still counts each id once); ingest never fails because of it.
//
// Layout: one Redis set per minute of arrival (`<prefix>seen:<minute>`), expiring after the window. A request
// costs one SADD to mark and one SMISMEMBER per minute of the window to check — a few commands per request
// instead of one per event, which keeps Redis from becoming the bottleneck of a busy ingest node.
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/logger.js';

const BUCKET_MS = 60_000;

export class ProducerDedup {
  private warnedAt = 0;
  constructor(private readonly redis: Redis, private readonly prefix: string, private readonly windowMs: number, private readonly log: Logger) {}

  private bucketKey(minute: number): string { return `${this.prefix}seen:${minute}`; }

  /** Which of `ids` were already accepted within the window (by any node). */
  async seen(ids: readonly string[], nowMs = Date.now()): Promise<boolean[]> {
    const out = ids.map(() => false);
    if (ids.length === 0 || this.windowMs <= 0 || this.redis.status !== 'ready') return out;
    const current = Math.floor(nowMs / BUCKET_MS);
    const buckets = Math.ceil(this.windowMs / BUCKET_MS) + 1;
    const p = this.redis.pipeline();
    for (let b = 0; b < buckets; b++) p.smismember(this.bucketKey(current - b), ...ids);
    try {
      for (const [err, flags] of (await p.exec()) ?? []) {
        if (err) throw err;
        (flags as number[]).forEach((f, i) => { if (f === 1) out[i] = true; });
      }
    } catch (err) {
      this.warn(err);
    }
    return out;
  }

  /** Marks ids as accepted (after they are durable). Best effort. */
  async mark(ids: readonly string[], nowMs = Date.now()): Promise<void> {
    if (ids.length === 0 || this.windowMs <= 0 || this.redis.status !== 'ready') return;
    const minute = Math.floor(nowMs / BUCKET_MS);
    const key = this.bucketKey(minute);
    try {
      await this.redis.pipeline().sadd(key, ...ids).pexpireat(key, (minute + 1) * BUCKET_MS + this.windowMs + BUCKET_MS).exec();
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
