// The cold-tier contract: Hive-style keys of rollup files and compacted day files in the cold bucket, the
// rollup Parquet columns, and the compaction manifest whose presence marks its raw inputs as superseded.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { PermanentError } from '../errors.js';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/** Rollup resolutions kept in the cold tier, and the span one cold file covers. */
export type RollupResolution = '1h' | '1d';

/** One rollup row: the aggregate of one (entity, event type) over the hour or day starting at `periodMs`. */
export interface RollupRow {
  entityId: string;
  eventType: string;
  periodMs: number;
  count: number;
  sum: number;
  min: number;
  max: number;
}

/**
 * Columns of a rollup file, in file order: one row per (entity, event type, period), sorted by entity, type and
 * period. `field` is the RollupRow property the column holds (period_start as epoch ms in periodMs).
 */
export const ROLLUP_COLUMNS = [
  { name: 'entity_id', duckdbType: 'VARCHAR', field: 'entityId', doc: 'Entity, as in the raw events.' },
  { name: 'event_type', duckdbType: 'VARCHAR', field: 'eventType', doc: 'Event type, as in the raw events.' },
  { name: 'period_start', duckdbType: 'TIMESTAMP_MS', field: 'periodMs', doc: 'Start of the hour or day (UTC).' },
  { name: 'count', duckdbType: 'BIGINT', field: 'count', doc: 'Events counted in the period.' },
  { name: 'sum', duckdbType: 'DOUBLE', field: 'sum', doc: 'Sum of their values.' },
  { name: 'min', duckdbType: 'DOUBLE', field: 'min', doc: 'Smallest value.' },
  { name: 'max', duckdbType: 'DOUBLE', field: 'max', doc: 'Largest value.' },
] as const satisfies readonly { name: string; duckdbType: string; field: keyof RollupRow; doc: string }[];

/** Sort order of a rollup file. */
export const ROLLUP_ORDER = 'entity_id, event_type, period_start';

const iso = (ms: number) => new Date(ms).toISOString();

/** Start (epoch ms) of the cold file holding the period that starts at `periodMs`: its UTC day (1h) or month (1d). */
export function coldFileStart(res: RollupResolution, periodMs: number): number {
  const d = new Date(periodMs);
  return res === '1h' ? Math.floor(periodMs / DAY_MS) * DAY_MS : Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/** End (exclusive) of the cold file that starts at `fileStartMs`. */
export function coldFileEnd(res: RollupResolution, fileStartMs: number): number {
  const d = new Date(fileStartMs);
  return res === '1h' ? fileStartMs + DAY_MS : Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

export const rollupPrefix = (res: RollupResolution) => `rollups/${res}/`;

/** rollups/1h/dt=YYYY-MM-DD/part.parquet (hours of one day) or rollups/1d/dt=YYYY-MM/part.parquet (days of one month). */
export function rollupKey(res: RollupResolution, periodMs: number): string {
  const start = coldFileStart(res, periodMs);
  return `${rollupPrefix(res)}dt=${iso(start).slice(0, res === '1h' ? 10 : 7)}/part.parquet`;
}

/** The file start of a rollup key, or undefined when the key is not one. */
export function parseRollupKey(key: string): { res: RollupResolution; startMs: number } | undefined {
  const m = /^rollups\/(1h|1d)\/dt=(\d{4}-\d{2}(?:-\d{2})?)\/part\.parquet$/.exec(key);
  if (!m) return undefined;
  const res = m[1] as RollupResolution;
  const dt = m[2]!;
  if ((res === '1h') !== (dt.length === 10)) return undefined;
  const startMs = Date.parse(`${res === '1h' ? dt : `${dt}-01`}T00:00:00Z`);
  return Number.isNaN(startMs) ? undefined : { res, startMs };
}

// ---- compaction ------------------------------------------------------------------------------

export const COMPACTED_PREFIX = 'events/';

/** Deterministic id of a compaction: the same set of input keys always gives the same id (and output key). */
export function compactionId(inputKeys: readonly string[]): string {
  return createHash('sha256')
    .update([...inputKeys].sort().join('\n'))
    .digest('hex')
    .slice(0, 20);
}

/** events/dt=YYYY-MM-DD/compacted-<id>.parquet in the cold bucket. */
export const compactedKey = (dt: string, id: string) => `${COMPACTED_PREFIX}dt=${dt}/compacted-${id}.parquet`;
/** events/dt=YYYY-MM-DD/compacted-<id>.manifest.json: written only after the compacted file was verified. */
export const compactionManifestKey = (dt: string, id: string) => `${COMPACTED_PREFIX}dt=${dt}/compacted-${id}.manifest.json`;
export const compactionDayPrefix = (dt: string) => `${COMPACTED_PREFIX}dt=${dt}/`;

export function parseCompactedKey(key: string): { dt: string; id: string; kind: 'data' | 'manifest' } | undefined {
  const m = /^events\/dt=(\d{4}-\d{2}-\d{2})\/compacted-([0-9a-f]+)\.(parquet|manifest\.json)$/.exec(key);
  return m ? { dt: m[1]!, id: m[2]!, kind: m[3] === 'parquet' ? 'data' : 'manifest' } : undefined;
}

export const COMPACTION_MANIFEST_VERSION = 1;

const compactionManifestSchema = z.object({
  version: z.literal(COMPACTION_MANIFEST_VERSION),
  id: z.string().regex(/^[0-9a-f]+$/),
  dt: z.string().regex(/^\d{4}-\d{2}-\d{2}$/),
  /** Bucket and keys of the raw batch files this compacted file replaces. */
  inputBucket: z.string().min(1),
  inputs: z.array(z.string().min(1)).min(1),
  output: z.object({ bucket: z.string().min(1), key: z.string().min(1), bytes: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  /** Rows and md5 over all event ids in sorted order, equal on both sides before the manifest was written. */
  rows: z.number().int().nonnegative(),
  idChecksum: z.string().min(1),
  createdAt: z.string(),
});

export type CompactionManifest = z.infer<typeof compactionManifestSchema>;

export const encodeCompactionManifest = (m: CompactionManifest): string => JSON.stringify(m, null, 2);

export function decodeCompactionManifest(body: string, where: string): CompactionManifest {
  try {
    return compactionManifestSchema.parse(JSON.parse(body));
  } catch (err) {
    throw new PermanentError(
      `${where} is not a readable compaction manifest (version ${COMPACTION_MANIFEST_VERSION}): ${(err as Error).message}`,
      'compaction_manifest_invalid',
      { cause: err },
    );
  }
}
