// Which lines of a WAL segment may be delivered. A line carries its request's reservation token
// (ingest/event-reservations.ts); it is delivered unless its token was aborted in its id's shard — which happens only
// to a request that was never acknowledged (its confirm failed, or its node died or stalled past the lease), whose ids
// a later request took. Segments written by this process whose every request was confirmed need no check (the common
// case costs nothing); any other segment — recovered after a crash, adopted from a dead node, or holding a request
// whose confirm failed or went unanswered — is resolved against Redis before delivery: its pending tokens are
// confirmed, and the lines of aborted tokens are cut from the segment file (rewritten atomically, so a redelivery
// after a crash reads the same lines whatever Redis holds by then).
import { closeSync, createReadStream, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { EventLine } from '../shared/contracts/event-line.js';
import { dedupIdentity, type EventReservations, reservationShard } from './event-reservations.js';
import { RESOLVING_SUFFIX, type Segment } from './wal-segments.js';

interface Tracked {
  /** Requests appended to the segment whose confirm has not answered yet. */
  pending: number;
  /** Some request's confirm failed or went unanswered, or a failed write may have left lines: resolve at delivery. */
  unsure: boolean;
  waiters: (() => void)[];
}

/** Per segment of this process: whether every request appended to it was confirmed. */
export class SegmentConfirmations {
  private readonly segments = new Map<string, Tracked>();

  private get(id: string): Tracked {
    let t = this.segments.get(id);
    if (!t) {
      t = { pending: 0, unsure: false, waiters: [] };
      this.segments.set(id, t);
    }
    return t;
  }

  /** A request's lines are durable in `id` and its confirm is about to be sent (called synchronously by the WAL). */
  begin(id: string): void {
    this.get(id).pending++;
  }

  /** The request's confirm answered: `confirmed` false when it failed, was aborted or went unanswered. */
  end(id: string, confirmed: boolean): void {
    const t = this.get(id);
    t.pending--;
    if (!confirmed) t.unsure = true;
    if (t.pending === 0) for (const w of t.waiters.splice(0)) w();
  }

  /** A failed write may have left lines of an unconfirmed request in `id`. */
  markUnsure(id: string): void {
    this.get(id).unsure = true;
  }

  /**
   * Waits for the confirms of the segment's requests; true when all were confirmed, so every line may be delivered
   * as it is. False for segments this process did not write (recovered or adopted), which must be resolved.
   */
  async allConfirmed(id: string): Promise<boolean> {
    const t = this.segments.get(id);
    if (!t) return false;
    while (t.pending > 0) await new Promise<void>((r) => t.waiters.push(r));
    return !t.unsure;
  }

  forget(id: string): void {
    this.segments.delete(id);
  }
}

/** Reads the reservation token at the start of a staged line (`{"r":"<token>",…`), or undefined. */
function tokenOf(line: string): string | undefined {
  if (!line.startsWith('{"r":"')) return undefined;
  const end = line.indexOf('"', 6);
  return end === -1 ? undefined : line.slice(6, end);
}

async function* lines(file: string): AsyncGenerator<string> {
  const rl = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of rl) if (line.length) yield line;
}

/** The distinct reservation tokens of a segment's lines. */
export async function segmentTokens(file: string): Promise<string[]> {
  const tokens = new Set<string>();
  for await (const line of lines(file)) {
    const t = tokenOf(line);
    if (t !== undefined) tokens.add(t);
  }
  return [...tokens];
}

export interface ResolutionResult {
  /** Lines cut from the segment (their ids were taken by another request). */
  dropped: number;
  tokens: number;
}

/**
 * Makes the segment file hold exactly the lines to deliver. Throws when Redis cannot be asked (the segment waits and
 * is tried again). A line that cannot be parsed is kept (the segment split quarantines it later).
 */
export async function resolveSegment(seg: Segment, reservations: EventReservations): Promise<ResolutionResult> {
  const tokens = await segmentTokens(seg.path);
  const aborted = await reservations.resolve(tokens);
  if (aborted.size === 0) return { dropped: 0, tokens: tokens.length };
  const tmp = path.join(path.dirname(seg.path), `${path.basename(seg.path)}${RESOLVING_SUFFIX}`);
  const fd = openSync(tmp, 'w');
  let dropped = 0;
  try {
    let buf = '';
    for await (const line of lines(seg.path)) {
      const t = tokenOf(line);
      const shards = t === undefined ? undefined : aborted.get(t);
      if (shards) {
        try {
          const l = JSON.parse(line) as EventLine;
          if (shards.has(reservationShard(dedupIdentity(l.p, l.i), reservations.o.shards))) {
            dropped++;
            continue;
          }
        } catch {
          // unparseable: kept for the segment split to quarantine
        }
      }
      buf += `${line}\n`;
      if (buf.length > 1 << 20) {
        writeSync(fd, buf);
        buf = '';
      }
    }
    if (buf) writeSync(fd, buf);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, seg.path);
  const dir = openSync(path.dirname(seg.path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  seg.events -= dropped;
  return { dropped, tokens: tokens.length };
}
