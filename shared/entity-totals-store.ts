// The Redis layout of all-time totals per (entity, event type), shared by the workers (which add each batch's
// counts exactly once) and the query API (which answers GET /v1/entities/:id/total from it in one round trip).
// Two hashes per event type: <prefix>{total:<type>}:count and <prefix>{total:<type>}:sum, field = entity id.
import type { RedisClient } from './clients/redis.js';

export function totalKeys(prefix: string, eventType: string): { tag: string; count: string; sum: string } {
  // One hash tag per event type: a batch's increments of one type and their done key share a cluster slot.
  const tag = `${prefix}{total:${eventType}}`;
  return { tag, count: `${tag}:count`, sum: `${tag}:sum` };
}

/**
 * Set once the totals hold every event ever counted: by the first worker of a pipeline whose InfluxDB is still
 * empty (so nothing was counted before the totals were kept). Without it — data from before the totals existed,
 * or a Redis that lost its data (the marker goes with it) — readers compute totals from InfluxDB instead.
 */
export function totalsCompleteKey(prefix: string): string {
  return `${prefix}total:complete-since`;
}

/**
 * The all-time total of one entity, in one round trip (three commands sent at once, not one pipeline: the marker and
 * the type's hashes live in different cluster slots). Undefined when the totals are not complete (see
 * totalsCompleteKey) — the caller must then compute it elsewhere; zero when complete and the entity was never seen.
 */
export async function readEntityTotal(
  redis: RedisClient,
  prefix: string,
  entityId: string,
  eventType: string,
): Promise<{ count: number; sum: number } | undefined> {
  const k = totalKeys(prefix, eventType);
  const [complete, count, sum] = await Promise.all([redis.exists(totalsCompleteKey(prefix)), redis.hget(k.count, entityId), redis.hget(k.sum, entityId)]);
  if (complete !== 1) return undefined;
  return { count: Number(count ?? 0), sum: Number(sum ?? 0) };
}
