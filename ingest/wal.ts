// The ingest write-ahead log, owner of its segment files from creation to deletion: accepted events are appended as
// NDJSON lines to the open segment and a request is acknowledged only after its bytes are fsynced (group commit: all
// requests waiting share one fsync). A segment is sealed on max events, max bytes or max age and handed to delivery;
// its file is removed only by `release`, which delivery calls once the segment's Parquet objects are in S3 and their
// manifests in SQS. On start, leftover segments are recovered (a torn, never-acknowledged tail line is cut) and
// delivered again under the same keys. Under disk pressure nothing unsafe is acknowledged: appends past
// `maxTotalBytes` (bytes of segments on disk not yet released) are refused with WalFullError, a failed write or fsync
// rejects its requests and the open segment is cut back to its last acknowledged byte before anything else is written.
import { mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { TransientError, errorMessage } from '../shared/errors.js';
import { SEGMENT_FILE, recoverSegments, type Segment } from './wal-segments.js';

export interface WalOptions {
  dir: string;
  maxEvents: number;
  maxBytes: number;
  maxAgeMs: number;
  fsync: boolean;
  /** Most bytes the segments not yet released may hold on disk; an append beyond it is refused (WalFullError). Default: no cap. */
  maxTotalBytes?: number;
  /** Called (synchronously, in order) with each sealed segment. */
  onSealed: (s: Segment) => void;
  /** Optional observer of each group commit (for metrics). */
  onCommit?: (info: { bytes: number; requests: number; fsyncMs: number }) => void;
}

/** Told, synchronously inside the WAL, which segment took an append: before its promise settles, and before that segment can be sealed. */
export interface AppendHooks {
  /** The lines are durable in segment `segmentId`. */
  durable(segmentId: string): void;
  /** The write failed; its lines may survive in segment `segmentId` when the WAL could not cut them back (see cutToAcknowledged). */
  failed(segmentId: string | undefined): void;
}

interface Pending {
  data: string | Uint8Array;
  events: number;
  bytes: number;
  hooks: AppendHooks | undefined;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** Code of the TransientError of an append refused because the WAL holds `maxTotalBytes` of undelivered segments. */
export const WAL_FULL = 'wal_full';
/** Code of the TransientError of an append whose write or fsync failed (ENOSPC, EIO, …): nothing of it was acknowledged. */
export const WAL_WRITE_FAILED = 'wal_write_failed';
/** How long after a failed write `pressure()` keeps reporting it, so new requests are turned away before their body is read. */
const FAILURE_HOLD_MS = 1_000;

export class WriteAheadLog {
  private pending: Pending[] = [];
  private writing = false;
  private current: { seg: Segment; fh: FileHandle; openedAt: number } | undefined;
  private seq: number;
  private timer: NodeJS.Timeout;
  private sealRequested = false;
  private closed = false;
  private idle: (() => void)[] = [];
  /** Bytes of segment files not yet released (recovered, sealed and open), plus bytes waiting to be written. */
  private diskBytes = 0;
  private pendingBytes = 0;
  /** Set after a failed write until the open segment is cut back to its acknowledged bytes. */
  private dirty = false;
  private lastFailure: { at: number; code: string } | undefined;

  private readonly dir: string;

  constructor(private readonly opts: WalOptions) {
    this.dir = path.resolve(opts.dir);
    mkdirSync(opts.dir, { recursive: true });
    this.seq = 0;
    this.timer = setInterval(() => this.checkAge(), Math.max(50, Math.min(1_000, opts.maxAgeMs / 5)));
    this.timer.unref();
  }

  /**
   * Returns leftover segments from a previous run, oldest first, after cutting any torn tail line
   * (bytes of a write whose fsync never completed, so never acknowledged). Empty segments are removed.
   */
  recover(): Segment[] {
    // Numbering continues after every leftover, removed empty ones included.
    for (const name of readdirSync(this.opts.dir)) this.seq = Math.max(this.seq, Number(SEGMENT_FILE.exec(name)?.[2] ?? 0));
    const out = recoverSegments(this.opts.dir);
    for (const s of out) this.diskBytes += s.bytes;
    return out;
  }

  /**
   * Removes a sealed segment's file: call only once every event of it is durable downstream (its manifests in SQS).
   * A crash before this call replays the segment on the next start, under the same keys.
   */
  release(seg: Segment): void {
    if (path.resolve(path.dirname(seg.path)) !== this.dir)
      throw new Error(`segment ${seg.id} (${seg.path}) is not a file of the WAL in ${this.dir}; it was not removed`);
    unlinkSync(seg.path);
    this.diskBytes -= seg.bytes;
  }

  /** Bytes of segments on disk not yet released (what `maxTotalBytes` caps). */
  get bytesOnDisk(): number {
    return this.diskBytes;
  }

  /** Why an append would be refused right now (cap reached, or a write just failed), or undefined. */
  pressure(): string | undefined {
    const cap = this.opts.maxTotalBytes ?? Number.POSITIVE_INFINITY;
    if (this.diskBytes + this.pendingBytes >= cap) return this.fullMessage(cap);
    const f = this.lastFailure;
    if (f && (this.dirty || Date.now() - f.at < FAILURE_HOLD_MS)) return `the last WAL write failed (${f.code}); retry later`;
    return undefined;
  }

  private fullMessage(cap: number): string {
    return `the WAL holds ${this.diskBytes + this.pendingBytes} bytes of undelivered events, its limit is SLUICE_WAL_MAX_BYTES=${cap} (S3/SQS slow or unavailable); retry later`;
  }

  /** Bytes and events in the open segment. */
  get openSegment(): { events: number; bytes: number } {
    return { events: this.current?.seg.events ?? 0, bytes: this.current?.seg.bytes ?? 0 };
  }

  /** Appends NDJSON lines holding `events` events (text, or its UTF-8 bytes); resolves once they are durable. */
  append(data: string | Uint8Array, events: number, hooks?: AppendHooks): Promise<void> {
    if (this.closed) return Promise.reject(new Error('WAL is closed'));
    const bytes = typeof data === 'string' ? Buffer.byteLength(data, 'utf8') : data.length;
    const cap = this.opts.maxTotalBytes ?? Number.POSITIVE_INFINITY;
    if (this.diskBytes + this.pendingBytes + bytes > cap) return Promise.reject(new TransientError(this.fullMessage(cap), WAL_FULL));
    this.pendingBytes += bytes;
    return new Promise((resolve, reject) => {
      this.pending.push({ data, events, bytes, hooks, resolve, reject });
      void this.drain();
    });
  }

  /** Seals the open segment now (if it has events). Resolves when sealed. */
  async seal(): Promise<void> {
    this.sealRequested = true;
    await this.drain();
    if (this.writing) await new Promise<void>((r) => this.idle.push(r));
  }

  /** Seals what is open and stops accepting appends. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.seal();
    this.closed = true;
  }

  private checkAge(): void {
    const c = this.current;
    if (c && c.seg.events > 0 && Date.now() - c.openedAt >= this.opts.maxAgeMs) {
      this.sealRequested = true;
      void this.drain();
    }
  }

  private async openSegment_(): Promise<NonNullable<WriteAheadLog['current']>> {
    const now = Date.now();
    this.seq += 1;
    const id = `${now}_${String(this.seq % 1_000_000).padStart(6, '0')}`;
    const file = path.join(this.opts.dir, `${id}.ndjson`);
    const fh = await open(file, 'a');
    this.current = { seg: { id, path: file, events: 0, bytes: 0 }, fh, openedAt: now };
    return this.current;
  }

  private async sealCurrent(): Promise<void> {
    const c = this.current;
    if (!c) return;
    // A segment holding bytes of a failed write is sealed only once they are cut (delivery would read them).
    if (this.dirty && !(await this.cutToAcknowledged(c))) return;
    this.current = undefined;
    await c.fh.close();
    if (c.seg.events === 0) {
      unlinkSync(c.seg.path);
      return;
    }
    this.opts.onSealed(c.seg);
  }

  /**
   * Cuts the open segment back to its acknowledged bytes after a failed write (truncating needs no free space) and
   * fsyncs that. False while the disk refuses even this: the segment then stays open and dirty, appends are refused,
   * and if the process ends meanwhile the next recovery cuts only a torn last line, so complete lines of the failed
   * write may be delivered although they were answered 503 (their retry is a duplicate the producer dedup and the
   * workers' event-id dedup count once).
   */
  private async cutToAcknowledged(c: NonNullable<WriteAheadLog['current']>): Promise<boolean> {
    try {
      await c.fh.truncate(c.seg.bytes);
      if (this.opts.fsync) await c.fh.datasync();
      this.dirty = false;
      return true;
    } catch (err) {
      this.lastFailure = { at: Date.now(), code: errnoOf(err) };
      return false;
    }
  }

  /** Writes all of `buf` at the end of the segment (a short write, e.g. on a nearly full disk, continues). */
  private static async writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
    for (let off = 0; off < buf.length; ) {
      const { bytesWritten } = await fh.write(buf, off, buf.length - off);
      off += bytesWritten;
    }
  }

  private async drain(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.pending.length > 0 || this.sealRequested) {
        if (this.sealRequested) {
          this.sealRequested = false;
          await this.sealCurrent();
          continue;
        }
        const group = this.pending;
        this.pending = [];
        let events = 0;
        let bytes = 0;
        for (const p of group) {
          events += p.events;
          bytes += p.bytes;
        }
        this.pendingBytes -= bytes;
        // One write per group commit: the requests' bytes side by side (a single request's as they are).
        const parts = group.map((p) => (typeof p.data === 'string' ? Buffer.from(p.data, 'utf8') : p.data));
        const buf = parts.length === 1 ? Buffer.from(parts[0]!.buffer, parts[0]!.byteOffset, parts[0]!.byteLength) : Buffer.concat(parts, bytes);
        let c = this.current;
        try {
          if (c && this.dirty && !(await this.cutToAcknowledged(c))) {
            throw Object.assign(new Error(`the open segment ${c.seg.path} still holds bytes of a failed write and cannot be cut yet`), {
              code: this.lastFailure?.code ?? 'EIO',
            });
          }
          c ??= await this.openSegment_();
          this.diskBytes += buf.length;
          try {
            await WriteAheadLog.writeAll(c.fh, buf);
            const t0 = performance.now();
            if (this.opts.fsync) await c.fh.datasync();
            const fsyncMs = performance.now() - t0;
            c.seg.bytes += buf.length;
            c.seg.events += events;
            this.opts.onCommit?.({ bytes: buf.length, requests: group.length, fsyncMs });
          } catch (err) {
            this.diskBytes -= buf.length;
            // Bytes of this write may be on disk, complete lines among them: never acknowledged, so cut them now.
            this.dirty = true;
            throw err;
          }
          for (const p of group) {
            p.hooks?.durable(c.seg.id);
            p.resolve();
          }
          if (c.seg.events >= this.opts.maxEvents || c.seg.bytes >= this.opts.maxBytes) this.sealRequested = true;
        } catch (err) {
          this.lastFailure = { at: Date.now(), code: errnoOf(err) };
          const failed = new TransientError(
            `could not make ${events} event(s) durable in the WAL in ${this.dir}: ${errorMessage(err)}; nothing of them was acknowledged, retry later`,
            WAL_WRITE_FAILED,
            { cause: err },
          );
          for (const p of group) {
            p.hooks?.failed(c?.seg.id);
            p.reject(failed);
          }
          // After a failed fsync the kernel may have dropped the written pages: the acknowledged bytes were fsynced
          // before, the failed write's bytes are cut, and later writes go to a new segment (and a new file descriptor).
          if (c && (await this.cutToAcknowledged(c))) this.sealRequested = true;
        }
      }
    } finally {
      this.writing = false;
      for (const r of this.idle.splice(0)) r();
    }
  }
}

/** The errno code (ENOSPC, EIO, …) of a failed file operation, or its message. */
function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? errorMessage(err);
}
