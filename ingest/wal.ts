// The ingest write-ahead log: accepted events are appended as NDJSON lines to the open segment and a request
// is acknowledged only after its bytes are fsynced (group commit: all requests waiting share one fsync).
// A segment is sealed on max events, max bytes or max age and handed to delivery; it is deleted only by
// delivery, after its Parquet objects are in S3 and their manifests in SQS. On start, leftover segments
// are recovered (a torn, never-acknowledged tail line is cut) and delivered again under the same keys.
import { mkdirSync, readdirSync, statSync, openSync, readSync, closeSync, ftruncateSync, unlinkSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

export interface Segment {
  /** Deterministic id of the segment; becomes the unique part of its batch keys. */
  id: string;
  path: string;
  events: number;
  bytes: number;
}

export interface WalOptions {
  dir: string;
  maxEvents: number;
  maxBytes: number;
  maxAgeMs: number;
  fsync: boolean;
  /** Called (synchronously, in order) with each sealed segment. */
  onSealed: (s: Segment) => void;
  /** Optional observer of each group commit (for metrics). */
  onCommit?: (info: { bytes: number; requests: number; fsyncMs: number }) => void;
}

interface Pending {
  data: string;
  events: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

const SEGMENT_FILE = /^(\d{13})_(\d{6})\.ndjson$/;

export class WriteAheadLog {
  private pending: Pending[] = [];
  private writing = false;
  private current: { seg: Segment; fh: FileHandle; openedAt: number } | undefined;
  private seq: number;
  private timer: NodeJS.Timeout;
  private sealRequested = false;
  private closed = false;
  private idle: (() => void)[] = [];

  constructor(private readonly opts: WalOptions) {
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
    const out: Segment[] = [];
    for (const name of readdirSync(this.opts.dir).sort()) {
      const m = SEGMENT_FILE.exec(name);
      if (!m) continue;
      this.seq = Math.max(this.seq, Number(m[2]));
      const file = path.join(this.opts.dir, name);
      const size = cutTornTail(file);
      if (size === 0) {
        unlinkSync(file);
        continue;
      }
      out.push({ id: name.replace('.ndjson', ''), path: file, events: countLines(file), bytes: size });
    }
    return out;
  }

  /** Bytes and events in the open segment. */
  get openSegment(): { events: number; bytes: number } {
    return { events: this.current?.seg.events ?? 0, bytes: this.current?.seg.bytes ?? 0 };
  }

  /** Appends NDJSON lines holding `events` events; resolves once they are durable. */
  append(data: string, events: number): Promise<void> {
    if (this.closed) return Promise.reject(new Error('WAL is closed'));
    return new Promise((resolve, reject) => {
      this.pending.push({ data, events, resolve, reject });
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
    this.current = undefined;
    if (!c) return;
    await c.fh.close();
    if (c.seg.events === 0) {
      unlinkSync(c.seg.path);
      return;
    }
    this.opts.onSealed(c.seg);
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
        let text = '';
        for (const p of group) {
          text += p.data;
          events += p.events;
        }
        const buf = Buffer.from(text, 'utf8');
        try {
          const c = this.current ?? (await this.openSegment_());
          await c.fh.write(buf, 0, buf.length);
          const t0 = performance.now();
          if (this.opts.fsync) await c.fh.datasync();
          const fsyncMs = performance.now() - t0;
          c.seg.bytes += buf.length;
          c.seg.events += events;
          this.opts.onCommit?.({ bytes: buf.length, requests: group.length, fsyncMs });
          for (const p of group) p.resolve();
          if (c.seg.events >= this.opts.maxEvents || c.seg.bytes >= this.opts.maxBytes) this.sealRequested = true;
        } catch (err) {
          for (const p of group) p.reject(err as Error);
          // A failed write may have left partial bytes: start a new segment; recovery cuts torn tails.
          this.sealRequested = true;
        }
      }
    } finally {
      this.writing = false;
      for (const r of this.idle.splice(0)) r();
    }
  }
}

/** Truncates a segment after its last newline; returns the remaining size. */
export function cutTornTail(file: string): number {
  const size = statSync(file).size;
  if (size === 0) return 0;
  const fd = openSync(file, 'r+');
  try {
    const chunk = Buffer.alloc(Math.min(size, 1 << 20));
    let end = size;
    while (end > 0) {
      const from = Math.max(0, end - chunk.length);
      const n = readSync(fd, chunk, 0, end - from, from);
      const i = chunk.subarray(0, n).lastIndexOf(10);
      if (i !== -1) {
        end = from + i + 1;
        break;
      }
      end = from;
    }
    if (end !== size) ftruncateSync(fd, end);
    return end;
  } finally {
    closeSync(fd);
  }
}

function countLines(file: string): number {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    let n = 0;
    let pos = 0;
    for (;;) {
      const r = readSync(fd, buf, 0, buf.length, pos);
      if (r === 0) return n;
      for (let i = 0; i < r; i++) if (buf[i] === 10) n++;
      pos += r;
    }
  } finally {
    closeSync(fd);
  }
}
