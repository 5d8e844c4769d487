// The WAL's segment files on disk: their naming, and the recovery of a folder's leftovers after a crash or an adoption.
// Recovery only ever cuts a torn (never fsynced, so never acknowledged) last line; every complete line is kept.
import { readdirSync, statSync, openSync, readSync, closeSync, ftruncateSync, unlinkSync } from 'node:fs';
import path from 'node:path';

export interface Segment {
  /** Deterministic id of the segment; becomes the unique part of its batch keys. */
  id: string;
  path: string;
  events: number;
  bytes: number;
}

/** A segment file name: <opened-at ms>_<sequence>.ndjson. */
export const SEGMENT_FILE = /^(\d{13})_(\d{6})\.ndjson$/;
/** Suffix of the copy a segment is rewritten into before it replaces the segment (ingest/segment-resolution.ts). */
export const RESOLVING_SUFFIX = '.resolving';

/**
 * Leftover segments of a WAL folder, oldest first, after cutting any torn tail line (bytes of a write whose fsync never
 * completed, so never acknowledged); empty segments are removed. Used at start for the node's own folder and by the
 * adoption of an orphaned one (ingest/wal-adoption.ts).
 */
export function recoverSegments(dir: string): Segment[] {
  const out: Segment[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (name.endsWith(RESOLVING_SUFFIX)) {
      unlinkSync(path.join(dir, name)); // a rewrite that never replaced its segment: the segment is intact
      continue;
    }
    if (!SEGMENT_FILE.test(name)) continue;
    const file = path.join(dir, name);
    const size = cutTornTail(file);
    if (size === 0) {
      unlinkSync(file);
      continue;
    }
    out.push({ id: name.replace('.ndjson', ''), path: file, events: countLines(file), bytes: size });
  }
  return out;
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
