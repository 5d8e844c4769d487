// `sluice quarantine list|show|release`: what the pipeline set aside (contracts/quarantine.ts), and the way back.
// A release re-checks each stored line (or the operator's fixed line) against the event contract, delivers those that
// pass as a new raw batch through the ingest batch writer and publisher, then rewrites the quarantine object so only
// still-bad lines remain. Keys derive from the quarantine id and the released content: a repeated release adds nothing.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Config } from '../shared/config.js';
import { createS3, createSqs } from '../shared/clients/aws.js';
import { deleteQuarantineObject, listQuarantine, openQuarantineObject, putQuarantineFile, readQuarantineRecords } from '../shared/clients/quarantine-store.js';
import { validateEvent } from '../shared/contracts/event.js';
import { encodeEventLine } from '../shared/contracts/event-line.js';
import type { BatchManifest } from '../shared/contracts/manifest.js';
import {
  decodeQuarantineRecord,
  encodeQuarantineRecord,
  quarantineObjectOf,
  releaseBatchKeyParts,
  type QuarantineRecord,
} from '../shared/contracts/quarantine.js';
import { PermanentError } from '../shared/errors.js';
import { openEngine } from '../shared/parquet.js';
import { BatchPublisher } from '../ingest/batch-publisher.js';
import { convertEventLines } from '../ingest/delivery.js';
import { checkEventLine } from '../ingest/event-line-check.js';

export interface QuarantineRow {
  id: string;
  kind: string;
  events: number;
  firstReason: string;
  ageMs: number;
}

/** Every quarantine object with its line count, first reason and age. */
export async function quarantineList(cfg: Config, now = Date.now()): Promise<QuarantineRow[]> {
  const s3 = createS3(cfg);
  try {
    const rows: QuarantineRow[] = [];
    for (const q of await listQuarantine(s3, cfg.SLUICE_RAW_BUCKET)) {
      let { events, firstReason } = q;
      if (events === undefined || firstReason === undefined) {
        // Written without metadata: count from the records.
        events = 0;
        for await (const r of (await readQuarantineRecords(s3, cfg.SLUICE_RAW_BUCKET, q.key)) ?? []) {
          events++;
          firstReason ??= r.reason;
        }
      }
      rows.push({ id: q.id, kind: q.kind, events, firstReason: firstReason ?? '-', ageMs: now - (q.lastModified?.getTime() ?? now) });
    }
    return rows;
  } finally {
    s3.destroy();
  }
}

export function formatQuarantineList(rows: readonly QuarantineRow[]): string {
  if (!rows.length) return 'quarantine is empty';
  const age = (ms: number) => (ms < 120_000 ? `${Math.round(ms / 1000)}s` : ms < 7_200_000 ? `${Math.round(ms / 60_000)}m` : `${(ms / 3_600_000).toFixed(1)}h`);
  const idWidth = Math.max(2, ...rows.map((r) => r.id.length));
  const lines = [`${'id'.padEnd(idWidth)}  kind     events  first reason        age`];
  for (const r of rows)
    lines.push(`${r.id.padEnd(idWidth)}  ${r.kind.padEnd(7)}  ${String(r.events).padStart(6)}  ${r.firstReason.padEnd(18)}  ${age(r.ageMs)}`);
  return lines.join('\n');
}

/** Streams the records of one quarantine object (NDJSON) to `out`; false when there is no such object. */
export async function quarantineShow(cfg: Config, id: string, out: NodeJS.WritableStream): Promise<boolean> {
  const q = quarantineObjectOf(id);
  const s3 = createS3(cfg);
  try {
    const body = await openQuarantineObject(s3, cfg.SLUICE_RAW_BUCKET, q.key);
    if (!body) return false;
    for await (const chunk of body) if (!out.write(chunk as Buffer)) await once(out, 'drain');
    return true;
  } finally {
    s3.destroy();
  }
}

export interface ReleaseResult {
  id: string;
  /** Lines delivered by this release. */
  released: number;
  /** Lines still in quarantine afterwards, with why each still fails. */
  remaining: { lineNo: number; reason: string; detail: string }[];
  manifests: BatchManifest[];
  /** The quarantine object was deleted (nothing left in it). */
  deleted: boolean;
  /** Line numbers fixed in --file that the object no longer holds (released before). */
  notHeld: number[];
}

/** Fixed lines by lineNo, from a file in the format `show` prints (records whose `line` the operator edited). */
async function readFixes(file: string): Promise<Map<number, QuarantineRecord>> {
  const fixes = new Map<number, QuarantineRecord>();
  let n = 0;
  for await (const text of createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY })) {
    n++;
    if (text.trim() === '') continue;
    const r = decodeQuarantineRecord(text, `${file} line ${n} (records as printed by sluice quarantine show, with their "line" fixed)`);
    fixes.set(r.lineNo, r);
  }
  return fixes;
}

type Verdict = { ok: true; text: string } | { ok: false; reason: string; detail: string };

/** Checks a line as the engine needs it and against the current event contract (age limits aside: it was accepted once). */
function recheck(line: string): Verdict {
  const c = checkEventLine(Buffer.from(line, 'utf8'));
  if (!c.ok) return c;
  const l = c.line;
  const e = validateEvent(
    { eventId: l.i, entityId: l.n, eventType: l.t, timestamp: l.ts, value: l.v, dims: l.d },
    { nowMs: Date.now(), maxAgeMs: Number.MAX_SAFE_INTEGER },
  );
  if (typeof e === 'string') return { ok: false, reason: 'contract_rejected', detail: e };
  return { ok: true, text: encodeEventLine(e, l.it, l.p) };
}

async function write(ws: NodeJS.WritableStream, s: string): Promise<void> {
  if (!ws.write(s)) await once(ws, 'drain');
}
const close = (ws: ReturnType<typeof createWriteStream>) => new Promise<void>((resolve, reject) => ws.once('error', reject).end(() => resolve()));

/**
 * Releases what passes now: writes the passing lines as Parquet (ingest's batch writer), uploads and announces them
 * under release keys (ingest's publisher), then rewrites the quarantine object with the rest, or deletes it.
 * `progress` hears what will be touched before anything is.
 */
export async function quarantineRelease(cfg: Config, id: string, o: { file?: string; progress?: (msg: string) => void } = {}): Promise<ReleaseResult> {
  const q = quarantineObjectOf(id);
  const say = o.progress ?? (() => undefined);
  const fixes = o.file ? await readFixes(o.file) : new Map<number, QuarantineRecord>();
  const dir = path.join(cfg.SLUICE_DATA_DIR, 'quarantine-release', `${Date.now()}-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const s3 = createS3(cfg);
  const sqs = createSqs(cfg);
  try {
    const records = await readQuarantineRecords(s3, cfg.SLUICE_RAW_BUCKET, q.key);
    if (!records) throw new PermanentError(`no quarantine object s3://${cfg.SLUICE_RAW_BUCKET}/${q.key}; run sluice quarantine list`, 'quarantine_missing');
    const releaseFile = path.join(dir, 'release.ndjson');
    const keepFile = path.join(dir, 'remaining.ndjson');
    const release = createWriteStream(releaseFile);
    const keep = createWriteStream(keepFile);
    const sha = createHash('sha256');
    const result: ReleaseResult = { id: q.id, released: 0, remaining: [], manifests: [], deleted: false, notHeld: [] };
    const seen = new Set<number>();
    let firstReason: string | undefined;
    try {
      for await (const r of records) {
        seen.add(r.lineNo);
        const fix = fixes.get(r.lineNo);
        // A line that was not UTF-8 is stored lossily in `line`: only an operator's fix can release it.
        const v: Verdict =
          !fix && r.lineBase64 !== undefined
            ? { ok: false, reason: 'malformed_unicode', detail: 'line is not valid UTF-8; fix it with --file' }
            : recheck(fix?.line ?? r.line);
        if (v.ok) {
          sha.update(v.text);
          await write(release, v.text);
          result.released++;
        } else {
          result.remaining.push({ lineNo: r.lineNo, reason: v.reason, detail: v.detail });
          firstReason ??= r.reason;
          await write(keep, encodeQuarantineRecord(r));
        }
      }
    } finally {
      await Promise.all([close(release), close(keep)]);
    }
    result.notHeld = [...fixes.keys()].filter((n) => !seen.has(n));
    if (result.notHeld.length) say(`${q.id}: --file fixes line(s) ${result.notHeld.join(', ')} that it no longer holds (already released?); ignored`);
    if (result.released === 0) {
      say(`${q.id}: none of its ${result.remaining.length} line(s) passes the event contract yet; nothing released`);
      return result;
    }
    const { node, unique } = releaseBatchKeyParts(q, sha.digest('hex'));
    const publisher = new BatchPublisher({ s3, sqs, bucket: cfg.SLUICE_RAW_BUCKET, queueName: cfg.SLUICE_QUEUE_NAME, node });
    await openEngine({ tempDir: path.join(dir, 'duckdb-tmp'), memoryLimit: '256MB', threads: 1 });
    const written = await convertEventLines([releaseFile], path.join(dir, 'parquet'), `convert released lines of ${q.id}`);
    say(
      `${q.id}: releasing ${result.released} event(s) as ${written.map((b) => `s3://${cfg.SLUICE_RAW_BUCKET}/${publisher.keyOf(b, unique)}`).join(', ')} ` +
        `announced on ${cfg.SLUICE_QUEUE_NAME}; then ${result.remaining.length ? `rewriting s3://${cfg.SLUICE_RAW_BUCKET}/${q.key} with the ${result.remaining.length} line(s) that still fail` : `deleting s3://${cfg.SLUICE_RAW_BUCKET}/${q.key}`}`,
    );
    result.manifests = await publisher.publish(written, unique);
    if (result.remaining.length) {
      await putQuarantineFile(s3, cfg.SLUICE_RAW_BUCKET, q.key, keepFile, { events: result.remaining.length, firstReason: firstReason ?? '-', kind: q.kind });
    } else {
      await deleteQuarantineObject(s3, cfg.SLUICE_RAW_BUCKET, q.key);
      result.deleted = true;
    }
    return result;
  } finally {
    s3.destroy();
    sqs.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
