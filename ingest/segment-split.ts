// Splits a WAL segment the Parquet engine cannot read into a clean part (its good lines, byte for byte) and quarantine
// records (its bad lines, with reasons). Streams the segment in 1 MiB chunks: memory stays bounded by the longest line,
// whatever the segment size. Every non-blank line ends up in exactly one of the two outputs.
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { once } from 'node:events';
import { encodeQuarantineRecord, type QuarantineReason } from '../shared/contracts/quarantine.js';
import { checkEventLine } from './event-line-check.js';

export interface SplitOptions {
  segmentFile: string;
  /** Receives the good lines (NDJSON, as in the segment). */
  cleanFile: string;
  /** Receives one quarantine record per bad line (contracts/quarantine.ts). */
  quarantineFile: string;
  node: string;
  segmentId: string;
  /** Quarantine every line: lines that pass the checks get this reason (the engine failed on the clean part too). */
  rejectAll?: { reason: QuarantineReason; detail: string };
  now?: Date;
}

export interface SplitResult {
  goodLines: number;
  badLines: number;
  /** Bad lines per reason, in order of first appearance. */
  byReason: Map<string, number>;
}

const NL = 10;

async function write(ws: WriteStream, data: Buffer | string): Promise<void> {
  if (!ws.write(data)) await once(ws, 'drain');
}

async function finish(ws: WriteStream): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    ws.once('error', reject);
    ws.end(() => resolve());
  });
}

export async function splitSegment(o: SplitOptions): Promise<SplitResult> {
  const clean = createWriteStream(o.cleanFile);
  const quarantine = createWriteStream(o.quarantineFile);
  const quarantinedAt = (o.now ?? new Date()).toISOString();
  const res: SplitResult = { goodLines: 0, badLines: 0, byReason: new Map() };
  let lineNo = 0;

  // Records of bad lines are gathered and written in batches, so judging a line stays synchronous.
  let records = '';
  /** Returns true when the line is good (the caller writes it to the clean part). */
  const judge = (line: Buffer): boolean => {
    lineNo++;
    if (line.length === 0 || line.toString('latin1').trim() === '') return false; // blank: not an event, nothing to keep
    const c = checkEventLine(line);
    const verdict = c.ok ? o.rejectAll : c;
    if (!verdict) {
      res.goodLines++;
      return true;
    }
    res.badLines++;
    res.byReason.set(verdict.reason, (res.byReason.get(verdict.reason) ?? 0) + 1);
    const text = line.toString('utf8');
    records += encodeQuarantineRecord({
      v: 1,
      kind: 'segment',
      line: text,
      ...(isUtf8(line) ? {} : { lineBase64: line.toString('base64') }),
      reason: verdict.reason,
      detail: verdict.detail,
      node: o.node,
      segment: o.segmentId,
      lineNo,
      quarantinedAt,
    });
    return false;
  };
  const flushRecords = async (min: number) => {
    if (records.length < min) return;
    await write(quarantine, records);
    records = '';
  };

  try {
    let carry: Buffer[] = [];
    for await (const chunk of createReadStream(o.segmentFile, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      let start = 0;
      if (carry.length) {
        const nl = chunk.indexOf(NL);
        if (nl === -1) {
          carry.push(chunk);
          continue;
        }
        const line = Buffer.concat([...carry, chunk.subarray(0, nl)]);
        carry = [];
        if (judge(line)) await write(clean, Buffer.concat([line, Buffer.from('\n')]));
        start = nl + 1;
      }
      // Runs of consecutive good lines are written as one slice of the chunk.
      let runStart = start;
      for (let nl = chunk.indexOf(NL, start); nl !== -1; nl = chunk.indexOf(NL, start)) {
        if (!judge(chunk.subarray(start, nl))) {
          if (start > runStart) await write(clean, chunk.subarray(runStart, start));
          runStart = nl + 1;
        }
        start = nl + 1;
      }
      if (start > runStart) await write(clean, chunk.subarray(runStart, start));
      if (start < chunk.length) carry.push(chunk.subarray(start));
      await flushRecords(1 << 20);
    }
    if (carry.length) {
      const line = Buffer.concat(carry);
      if (judge(line)) await write(clean, Buffer.concat([line, Buffer.from('\n')]));
    }
    await flushRecords(1);
  } finally {
    await Promise.all([finish(clean), finish(quarantine)]);
  }
  return res;
}
