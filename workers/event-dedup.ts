// Cross-batch event dedup: each event id is claimed in Redis by the first batch that carries it, for
// SLUICE_DEDUP_WINDOW. A batch skips ids claimed by another batch and keeps ids it claimed itself, so a
// redelivered or concurrently delivered batch computes the same exclusion set every time. Ids are namespaced per
// producer (`<producer>\u001f<event id>`, see BatchScan.idChunks): one producer never suppresses another's events.
// A batch gives back the claims of events it quarantined, so their release is counted, not taken for a duplicate.
//
// Layout: ids spread over CLAIM_SHARDS shards (the first hex digit of md5(id), computed alike by the engine and here);
// per shard one Redis hash per five minutes of claiming (`<prefix>{eid:<shard>}:<bucket>`: event id → owner tag),
// expiring after the window. One atomic Lua call per chunk of one shard's ids reads the owners from the window's
// hashes (one HMGET each) and claims the unowned ids in the current one (one HSET). A call's keys share the shard's
// hash tag (one cluster slot); the shards spread the claims over 16 slots.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { TransientError, errorMessage } from '../shared/errors.js';

/** Ids per Lua call: bounds the time one call holds Redis and stays within Lua's argument limits. */
export const CLAIM_CHUNK = 3_000;
/** Width of one claims hash: a window of 10 minutes reads three hashes (claims live 10 to 15 minutes). */
export const CLAIM_BUCKET_MS = 300_000;
/** Shards of the claims: one hex digit of md5(id). */
export const CLAIM_SHARDS = 16;

/** The shard of an id: the first hex digit of md5 over its UTF-8 bytes. */
export function claimShard(id: string): number {
  return Number.parseInt(createHash('md5').update(id, 'utf8').digest('hex')[0]!, 16);
}

/** The same shard computed by the engine (DuckDB's md5 is over the UTF-8 bytes too), for a SQL column `col`. */
export const claimShardSql = (col: string) => `(instr('0123456789abcdef', left(md5(${col}), 1)) - 1)`;

/**
 * KEYS: the window's hashes, newest (the current minute, where new claims go) first. ARGV[1] owner tag,
 * ARGV[2] expiry of the current hash (epoch ms), ARGV[3] the ids joined by newlines (validated ids hold no
 * control characters; one string costs the client far less than one protocol argument per id).
 * Returns the ids owned by a different tag.
 */
const CLAIM_SCRIPT = `
local tag = ARGV[1]
local ids = {}
for id in string.gmatch(ARGV[3], '[^\\n]+') do ids[#ids + 1] = id end
local owner = {}
for k = 1, #KEYS do
  local got = redis.call('HMGET', KEYS[k], unpack(ids))
  for i = 1, #ids do
    if got[i] and not owner[i] then owner[i] = got[i] end
  end
end
local excluded, claims = {}, {}
for i = 1, #ids do
  if not owner[i] then
    claims[#claims + 1] = ids[i]
    claims[#claims + 1] = tag
  elseif owner[i] ~= tag then
    excluded[#excluded + 1] = ids[i]
  end
end
if #claims > 0 then
  redis.call('HSET', KEYS[1], unpack(claims))
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return excluded
`;

/** KEYS: the window's hashes; ARGV[1] owner tag, ARGV[2] ids joined by newlines. Removes the ids this tag owns. */
const RELEASE_SCRIPT = `
local tag = ARGV[1]
local n = 0
for id in string.gmatch(ARGV[2], '[^\\n]+') do
  for k = 1, #KEYS do
    if redis.call('HGET', KEYS[k], id) == tag then n = n + redis.call('HDEL', KEYS[k], id) end
  end
end
return n
`;

/**
 * The owner tag stored per claimed id: 72 bits of sha256(batchKey) in base64url (12 characters) instead of the
 * ~80-character key, which keeps Redis memory per claim small; two batches share a tag with probability 2⁻⁷².
 */
export function claimTag(batchKey: string): string {
  return createHash('sha256').update(batchKey).digest('base64url').slice(0, 12);
}

export interface ClaimResult {
  /** Ids of this batch already counted by another batch within the window. */
  excluded: string[];
}

export class EventDedup {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly windowMs: number,
  ) {}

  /** One shard's window hash keys, the current bucket first. */
  windowKeys(nowMs: number, shard: number): string[] {
    const current = Math.floor(nowMs / CLAIM_BUCKET_MS);
    const n = Math.ceil(this.windowMs / CLAIM_BUCKET_MS) + 1;
    return Array.from({ length: n }, (_, b) => `${this.prefix}{eid:${shard}}:${current - b}`);
  }

  /** Claims `ids` for `batchKey`. Redis unreachable → TransientError dedup_unavailable. */
  async claim(batchKey: string, ids: readonly string[], nowMs = Date.now()): Promise<ClaimResult> {
    const chunks: string[] = [];
    for (const shardIds of byShard(ids)) for (let i = 0; i < shardIds.length; i += CLAIM_CHUNK) chunks.push(shardIds.slice(i, i + CLAIM_CHUNK).join('\n'));
    const { excluded } = await this.claimChunks(batchKey, chunks, nowMs);
    const set = new Set(excluded);
    return { excluded: ids.filter((id) => set.has(id)) }; // in the order of `ids`
  }

  /**
   * Claims ids given as newline-joined chunks of at most CLAIM_CHUNK ids, each chunk of one shard (see
   * BatchScan.idChunks); the shard is read from a chunk's first id.
   */
  async claimChunks(batchKey: string, chunks: readonly string[], nowMs = Date.now()): Promise<ClaimResult> {
    const tag = claimTag(batchKey);
    const expireAt = (Math.floor(nowMs / CLAIM_BUCKET_MS) + 1) * CLAIM_BUCKET_MS + this.windowMs;
    const excluded: string[] = [];
    for (const chunk of chunks) {
      const nl = chunk.indexOf('\n');
      const keys = this.windowKeys(nowMs, claimShard(nl === -1 ? chunk : chunk.slice(0, nl)));
      let got: unknown;
      try {
        got = await this.redis.eval(CLAIM_SCRIPT, keys.length, ...keys, tag, expireAt, chunk);
      } catch (err) {
        // Every Redis failure is the dependency's, not the batch's: the batch must wait, never be dead-lettered.
        throw new TransientError(`Redis event-id claims failed: ${errorMessage(err)}`, 'dedup_unavailable', { cause: err });
      }
      for (const id of got as string[]) excluded.push(id);
    }
    return { excluded };
  }

  /**
   * Gives back the claims `batchKey` holds on `ids` (events it will never count: quarantined), so a later batch with
   * the same ids — their release — counts them. Ids claimed by another batch are left alone. Idempotent.
   */
  async release(batchKey: string, ids: readonly string[], nowMs = Date.now()): Promise<number> {
    const tag = claimTag(batchKey);
    let released = 0;
    for (const shardIds of byShard(ids)) {
      if (!shardIds.length) continue;
      const keys = this.windowKeys(nowMs, claimShard(shardIds[0]!));
      for (let i = 0; i < shardIds.length; i += CLAIM_CHUNK) {
        try {
          released += Number(await this.redis.eval(RELEASE_SCRIPT, keys.length, ...keys, tag, shardIds.slice(i, i + CLAIM_CHUNK).join('\n')));
        } catch (err) {
          throw new TransientError(`Redis event-id claims failed: ${errorMessage(err)}`, 'dedup_unavailable', { cause: err });
        }
      }
    }
    return released;
  }
}

/** Ids grouped by shard, each group in its original order. */
function byShard(ids: readonly string[]): string[][] {
  const groups: string[][] = Array.from({ length: CLAIM_SHARDS }, () => []);
  for (const id of ids) groups[claimShard(id)]!.push(id);
  return groups.filter((g) => g.length > 0);
}
