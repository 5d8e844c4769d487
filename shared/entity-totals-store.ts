// The Redis layout of all-time totals per (entity, event type), shared by the workers (which add each batch's
// counts exactly once) and the query API (which answers GET /v1/entities/:id/total from it in one round trip).
// Two hashes per event type: <prefix>total:<type>:count and <prefix>total:<type>:sum, field = entity id.
import type { Redis } from 'ioredis';

export function totalKeys(prefix: string, eventType: string): { count: string; sum: string } {
  return { count: `${prefix}total:${eventType}:count`, sum: `${prefix}total:${eventType}:sum` };
}

/** The total of one entity, or undefined when Redis holds nothing for it. */
export async function readEntityTotal(redis: Redis, prefix: string, entityId: string, eventType: string): Promise<{ count: number; sum: number } | undefined> {
  const k = totalKeys(prefix, eventType);
  const [[e1, count], [e2, sum]] = (await redis.pipeline().hget(k.count, entityId).hget(k.sum, entityId).exec()) as [
    [Error | null, string | null],
    [Error | null, string | null],
  ];
  if (e1 || e2) throw e1 ?? e2;
  if (count === null) return undefined;
  return { count: Number(count), sum: Number(sum ?? 0) };
}
