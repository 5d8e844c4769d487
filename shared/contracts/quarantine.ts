// The quarantine contract: where events that can never be processed are kept (raw bucket, `quarantine/…`), the
// record stored for each of them, and the keys a release delivers them under. Ingest quarantines WAL lines,
// workers quarantine batch rows, the CLI reads and releases both; nothing else may know this layout.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { PermanentError } from '../errors.js';
import { parseRawEventsKey } from './parquet-schema.js';

/** Version of a quarantine record (`v`). Readers accept this version only and say so otherwise. */
export const QUARANTINE_RECORD_VERSION = 1;
export const QUARANTINE_PREFIX = 'quarantine/';
export type QuarantineKind = 'segment' | 'batch';

/** Object metadata written with each quarantine object, so listing needs no download. */
export const QUARANTINE_META = { events: 'sluice-event-count', firstReason: 'sluice-first-reason', kind: 'sluice-quarantine-kind' } as const;

const NAME = '[A-Za-z0-9_-]+';
const SEGMENT_KEY = new RegExp(`^quarantine/segments/(${NAME})/(\\d{13}_\\d{6})\\.ndjson$`);
const BATCH_KEY = /^quarantine\/batches\/dt=(\d{4}-\d{2}-\d{2})\/hour=(\d{2})\/([A-Za-z0-9_-]+)-([A-Za-z0-9_]+)\.ndjson$/;

/**
 * Reasons a line is quarantined (record `reason`; also the `reason` label of the quarantine metrics).
 * The record's `detail` says, in words, which field and why.
 */
export const QUARANTINE_REASONS = {
  invalid_json: 'the line is not valid JSON (truncated, or not JSON at all)',
  not_an_event_line: 'the JSON is not an event line: a field is missing or has the wrong type',
  malformed_unicode: 'the bytes are not UTF-8, or a string holds a lone surrogate escape such as \\ud800',
  control_character: 'a string holds a control character (U+0000–U+001F, U+007F)',
  engine_rejected: 'the line passed every check but the Parquet engine still could not convert its segment',
  contract_rejected: 'the line no longer passes the event contract (checked on release)',
  // Batch rows a worker cannot store (workers/quarantine-sink.ts); the record's `detail` names the field.
  invalid_event_type: 'event_type does not match the contract pattern (lowercase letters, digits, _ . -; 1–64 characters)',
  value_out_of_range: 'value is not a finite number within ±VALUE_MAX_ABS (contracts/event.ts), so its sums could overflow',
  unstorable_tag: 'InfluxDB 1.x line protocol cannot carry a tag value that ends in a backslash',
  // Events of points InfluxDB refused; the record's `detail` is InfluxDB's answer.
  series_limit: 'InfluxDB refused the point: a series limit (max-values-per-tag or max-series-per-database) is reached',
  unparseable: 'InfluxDB could not parse the point',
  field_type_conflict: 'InfluxDB refused the point: a field has another type in this shard',
  influx_rejected: 'InfluxDB refused the point (HTTP 400)',
} as const;
export type QuarantineReason = keyof typeof QUARANTINE_REASONS | (string & {});

/** `quarantine/segments/<node>/<segment id>.ndjson`: the bad lines of one WAL segment of one ingest node. */
export function segmentQuarantineKey(node: string, segmentId: string): string {
  const key = `${QUARANTINE_PREFIX}segments/${node}/${segmentId}.ndjson`;
  if (!SEGMENT_KEY.test(key)) throw new RangeError(`cannot build a quarantine key from node ${JSON.stringify(node)} and segment ${JSON.stringify(segmentId)}`);
  return key;
}

/** `quarantine/batches/dt=…/hour=…/<node>-<unique>.ndjson`: the bad rows of one raw batch, named after its key. */
export function batchQuarantineKey(batchKey: string): string {
  const p = parseRawEventsKey(batchKey);
  if (!p) throw new RangeError(`${JSON.stringify(batchKey)} is not a raw batch key (events/dt=…/hour=…/<node>-<unique>.parquet)`);
  return `${QUARANTINE_PREFIX}batches/dt=${p.dt}/hour=${p.hour}/${p.node}-${p.unique}.ndjson`;
}

export interface QuarantineObject {
  /** The key without `quarantine/` and `.ndjson`, e.g. `segments/ingest-0/1767225600000_000042`: what operators type. */
  id: string;
  key: string;
  kind: QuarantineKind;
  /** Node that wrote the segment or batch. */
  node: string;
}

export function parseQuarantineKey(key: string): QuarantineObject | undefined {
  const s = SEGMENT_KEY.exec(key);
  const id = key.slice(QUARANTINE_PREFIX.length, -'.ndjson'.length);
  if (s) return { id, key, kind: 'segment', node: s[1]! };
  const b = BATCH_KEY.exec(key);
  if (b) return { id, key, kind: 'batch', node: b[3]! };
  return undefined;
}

/** The object of a quarantine id (as `list` prints it). Throws PermanentError for anything else. */
export function quarantineObjectOf(id: string): QuarantineObject {
  const q = parseQuarantineKey(`${QUARANTINE_PREFIX}${id}.ndjson`);
  if (!q)
    throw new PermanentError(
      `${JSON.stringify(id)} is not a quarantine id: expected segments/<node>/<segment id> or batches/dt=…/hour=…/<node>-<unique>; run sluice quarantine list`,
      'quarantine_id_invalid',
    );
  return q;
}

const isoTime = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 time');

/**
 * One quarantined line. `line` is the raw text exactly as stored (for a WAL segment, the NDJSON event line of
 * contracts/event.ts EventLine; workers re-encode a batch row as such a line). Bytes that were not UTF-8 are kept
 * in `lineBase64` (then `line` is their lossy decoding). `lineNo` is 1-based within the segment or batch.
 */
export const quarantineRecordSchema = z.object({
  v: z.literal(QUARANTINE_RECORD_VERSION),
  kind: z.enum(['segment', 'batch']),
  line: z.string(),
  lineBase64: z.string().optional(),
  reason: z.string().min(1),
  detail: z.string(),
  node: z.string().min(1),
  /** Segment id (kind segment). */
  segment: z.string().optional(),
  /** Raw batch key (kind batch). */
  batch: z.string().optional(),
  lineNo: z.number().int().positive(),
  quarantinedAt: isoTime,
});
export type QuarantineRecord = z.infer<typeof quarantineRecordSchema>;

export function encodeQuarantineRecord(r: QuarantineRecord): string {
  return `${JSON.stringify(r)}\n`;
}

/** Decodes one line of a quarantine object. Throws PermanentError (quarantine_record_invalid) naming `where`. */
export function decodeQuarantineRecord(text: string, where: string): QuarantineRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new PermanentError(`${where} is not a quarantine record (not JSON: ${(err as Error).message})`, 'quarantine_record_invalid');
  }
  const v = (raw as { v?: unknown } | null)?.v;
  if (v !== QUARANTINE_RECORD_VERSION)
    throw new PermanentError(
      `${where}: quarantine record version ${JSON.stringify(v)} is not supported (this build reads ${QUARANTINE_RECORD_VERSION})`,
      'quarantine_record_invalid',
    );
  const parsed = quarantineRecordSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new PermanentError(`${where} is not a valid quarantine record: ${issues}`, 'quarantine_record_invalid');
  }
  return parsed.data;
}

/**
 * Where released events go: normal raw batch keys (contracts/parquet-schema.ts, so workers accept them) whose node
 * is `q-<node>` and whose unique part is derived from the quarantine id and the released content. Releasing the same
 * lines again (a crash before the quarantine object was rewritten) writes the same keys; a later release of other
 * lines gets other keys and never overwrites an earlier one.
 */
export function releaseBatchKeyParts(q: QuarantineObject, releasedContentSha256: string): { node: string; unique: string } {
  const unique = `r${createHash('sha256').update(`${q.id}\n${releasedContentSha256}`).digest('hex').slice(0, 32)}`;
  return { node: `q-${q.node}`, unique };
}
