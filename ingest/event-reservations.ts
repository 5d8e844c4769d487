// Event-id reservations: the one dedup of Sluice. Before a request's events are appended to the WAL, each
// (producer, event id) is reserved in Redis for the request's token, atomically per shard; after the fsync the token is
// confirmed; only then is the request acknowledged. So an id is written into a WAL by at most one request within
// the dedup window, and workers need no per-id state (docs/dedup.md holds the argument: every crash point, every race).
//
// States of a token, per shard (field `~<token>` of the shard's hash): `p<deadline ms>` pending (reserved, not yet
// durable), `c` confirmed (durable: its ids are duplicates for everyone else), `a` aborted (never stored: its ids are
// free). A pending token whose lease ran out (a node that died or stalled between reserve and confirm) is aborted by
// the first request that needs one of its ids, which then takes the id; its owner's confirm then fails, the owner
// answers 503, and the lines it may have written are left out when its segment is delivered (ingest/segment-resolution.ts).
//
// Layout: ids spread over SLUICE_DEDUP_SHARDS shards by a hash of `<producer>\u001f<event id>`; per shard one Redis hash
// per five minutes of reserving (`<prefix>{r:<shard>}:<bucket>`: id → token, `~<token>` → state), expiring after the
// window. Every script's keys are one shard's hashes, so they share the `{r:<shard>}` hash tag: one Redis Cluster slot,
// and the shards spread over the cluster's slots. A request costs one Lua call per shard it touches to reserve and
// one to confirm; the ids cross the wire as one newline-joined string per shard.
import { randomBytes } from 'node:crypto';
import type { RedisClient } from '../shared/clients/redis.js';
import { errorMessage } from '../shared/errors.js';
import { CONFIRM_SCRIPT, RESERVE_SCRIPT, RESOLVE_SCRIPT, UNRESERVE_SCRIPT } from './reservation-scripts.js';

/** Width of one hash: a window of 10 minutes reads three hashes (ids are remembered 10 to 15 minutes). */
export const RESERVATION_BUCKET_MS = 300_000;
/** The shard of a dedup identity: FNV-1a over its UTF-16 code units (fast on the request path; any stable hash would do). */
export function reservationShard(identity: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < identity.length; i++) h = Math.imul(h ^ identity.charCodeAt(i), 0x01000193);
  return (h >>> 0) % shards;
}

/** The identity an id is reserved under: ids are unique per producer, one producer never suppresses another's events. */
export const dedupIdentity = (producer: string, eventId: string) => `${producer}\u001f${eventId}`;

/** What a request reserved: per shard the hash it wrote to. */
export interface Reservation {
  token: string;
  /** Hash key per shard where this token reserved ids. */
  held: Map<number, string>;
}

export type ReserveResult =
  /** `duplicate[i]`: ids[i] is already stored by an earlier request within the window. */
  | { kind: 'reserved'; reservation: Reservation; duplicate: boolean[] }
  /** Some id is held by another request still in flight (a concurrent retry): nothing is reserved. */
  | { kind: 'in_flight' }
  /** Redis did not answer: nothing may be stored (dedup cannot be checked). */
  | { kind: 'unavailable'; error: string };

export type ConfirmResult = 'confirmed' | 'aborted' | 'unknown';

export interface ReservationOptions {
  windowMs: number;
  leaseMs: number;
  shards: number;
}

export class EventReservations {
  /** A random prefix per process: tokens never repeat across nodes or restarts. */
  private readonly boot = randomBytes(6).toString('base64url');
  private seq = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    readonly o: ReservationOptions,
  ) {}

  /** False when SLUICE_DEDUP_WINDOW is 0: ids are not deduplicated at all. */
  get enabled(): boolean {
    return this.o.windowMs > 0;
  }

  /** True when Redis is connected, waiting up to `waitMs` for a connection in progress. */
  async ready(waitMs = 1_000): Promise<boolean> {
    const r = this.redis;
    if (r.status === 'ready') return true;
    if (r.status !== 'connecting' && r.status !== 'connect' && r.status !== 'wait') return false;
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        r.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(r.status === 'ready'), waitMs);
      r.on('ready', onReady);
    });
  }

  /** A token for one request; it goes into each of the request's WAL lines. */
  newToken(): string {
    this.seq++;
    return `${this.boot}.${this.seq.toString(36)}`;
  }

  /** One shard's hash of the given five-minute bucket; the hash tag keeps a shard's hashes in one cluster slot. */
  bucketKey(shard: number, bucket: number): string {
    return `${this.prefix}{r:${shard}}:${bucket}`;
  }

  /** The window's hashes of one shard, newest first. */
  windowKeys(shard: number, nowMs: number): string[] {
    const current = Math.floor(nowMs / RESERVATION_BUCKET_MS);
    return Array.from({ length: Math.ceil(this.o.windowMs / RESERVATION_BUCKET_MS) + 1 }, (_, b) => this.bucketKey(shard, current - b));
  }

  /** Reserves `identities` (dedupIdentity) for `token`; all shards or, on in_flight/unavailable, none. */
  async reserve(token: string, identities: readonly string[], nowMs = Date.now()): Promise<ReserveResult> {
    // Fail fast while disconnected: a producer gets its 503 at once instead of after the client's retries (a
    // connection being set up, e.g. just after start, is waited for briefly).
    if (!(await this.ready())) return { kind: 'unavailable', error: `not connected (${this.redis.status})` };
    // Per shard the positions of its identities; with one shard (a single Redis) all of them in order, unhashed (`undefined`).
    let shards: [shard: number, at: number[] | undefined][];
    if (this.o.shards === 1) shards = identities.length ? [[0, undefined]] : [];
    else {
      const byShard = new Map<number, number[]>();
      for (let i = 0; i < identities.length; i++) {
        const s = reservationShard(identities[i]!, this.o.shards);
        let g = byShard.get(s);
        if (!g) {
          g = [];
          byShard.set(s, g);
        }
        g.push(i);
      }
      shards = [...byShard];
    }
    const bucket = Math.floor(nowMs / RESERVATION_BUCKET_MS);
    const expireAt = (bucket + 1) * RESERVATION_BUCKET_MS + this.o.windowMs;
    const reservation: Reservation = { token, held: new Map() };
    const answers = await Promise.allSettled(
      shards.map(([shard, at]) => {
        const ids = at ? at.map((i) => identities[i]!) : identities;
        const keys = this.windowKeys(shard, nowMs);
        return this.redis.eval(RESERVE_SCRIPT, keys.length, ...keys, token, this.o.leaseMs, expireAt, ids.join('\n')) as Promise<string>;
      }),
    );
    const duplicate = new Array<boolean>(identities.length).fill(false);
    let failure: string | undefined;
    let inFlight = false;
    for (const [n, a] of answers.entries()) {
      const [shard, at] = shards[n]!;
      if (a.status === 'rejected') {
        failure ??= errorMessage(a.reason);
        continue;
      }
      if (a.value === 'C') {
        inFlight = true;
        continue;
      }
      if (a.value === '' || a.value.includes('0')) reservation.held.set(shard, this.bucketKey(shard, bucket));
      for (let k = a.value.indexOf('1'); k !== -1; k = a.value.indexOf('1', k + 1)) duplicate[at ? at[k]! : k] = true;
    }
    if (failure !== undefined || inFlight) {
      await this.abort(reservation);
      return failure !== undefined ? { kind: 'unavailable', error: failure } : { kind: 'in_flight' };
    }
    return { kind: 'reserved', reservation, duplicate };
  }

  /**
   * Gives back ids of the reservation that will not be written after all (e.g. refused by the series budget), so a
   * later request may store them. Call before confirm. Throws when Redis fails (the caller must not confirm then).
   */
  async unreserve(r: Reservation, identities: readonly string[]): Promise<void> {
    const byShard = new Map<number, string[]>();
    for (const id of identities) {
      const s = reservationShard(id, this.o.shards);
      if (!r.held.has(s)) continue;
      let g = byShard.get(s);
      if (!g) {
        g = [];
        byShard.set(s, g);
      }
      g.push(id);
    }
    await Promise.all([...byShard].map(([s, ids]) => this.redis.eval(UNRESERVE_SCRIPT, 1, r.held.get(s)!, r.token, '', '', ids.join('\n'))));
  }

  /**
   * Confirms the reservation once its lines are durable: "confirmed" in every shard, "aborted" when a shard's lease
   * ran out and another request took its ids, "unknown" when Redis did not answer (the lines' segment is then
   * resolved at delivery).
   */
  async confirm(r: Reservation): Promise<ConfirmResult> {
    const answers = await Promise.allSettled([...r.held.values()].map((key) => this.redis.eval(CONFIRM_SCRIPT, 1, key, r.token)));
    if (answers.some((a) => a.status === 'rejected')) return 'unknown';
    return answers.every((a) => a.status === 'fulfilled' && Number(a.value) === 1) ? 'confirmed' : 'aborted';
  }

  /** Marks the token aborted where it reserved (nothing of the request was written): its ids are free again. Best effort. */
  async abort(r: Reservation): Promise<void> {
    await Promise.allSettled([...r.held.values()].map((key) => this.redis.hset(key, `~${r.token}`, 'a')));
  }

  /**
   * For the tokens found in a WAL segment about to be delivered: confirms those still pending (their lines are
   * durable) and returns, per aborted token, the shards where it was aborted (its lines of those shards must not be
   * delivered: their ids were taken by another request). Throws when Redis fails: the segment waits.
   */
  async resolve(tokens: readonly string[], nowMs = Date.now()): Promise<Map<string, Set<number>>> {
    const aborted = new Map<string, Set<number>>();
    if (!tokens.length) return aborted;
    const arg = tokens.join('\n');
    const shards = Array.from({ length: this.o.shards }, (_, s) => s);
    const answers = await Promise.all(
      shards.map((s) => {
        const keys = this.windowKeys(s, nowMs);
        return this.redis.eval(RESOLVE_SCRIPT, keys.length, ...keys, arg) as Promise<string[]>;
      }),
    );
    for (const [s, toks] of answers.entries()) {
      for (const t of toks) {
        let g = aborted.get(t);
        if (!g) {
          g = new Set();
          aborted.set(t, g);
        }
        g.add(s);
      }
    }
    return aborted;
  }
}
