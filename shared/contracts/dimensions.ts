// The dimension-table contract: a table maps entity ids to string attributes (channel, category, advertiser…) so
// workers can count per attribute value. Loaded by `sluice dimensions load`, stored versioned in the raw bucket —
// each version an immutable Parquet file plus its manifest, and a pointer naming the current version, written last —
// and read by every worker (and the query API) from there, so all of them enrich with the same version.
// Also the cold layout of the attribute series' rollups. A change readers of stored tables cannot follow needs a new
// DIMENSIONS_CONTRACT_VERSION.
import { z } from 'zod';
import { ENTITY_ID_MAX } from './event.js';
import { PermanentError } from '../errors.js';
import { coldFileStart, type RollupResolution } from './cold-layout.js';

export const DIMENSIONS_CONTRACT_VERSION = 1;

/** The first column of every table: the entity id, as events carry it. */
export const ENTITY_COLUMN = 'entity_id';

/** Table names: lower-case letters, digits, _ and - (they are key segments). */
export const TABLE_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const TABLE_NAME_ACCEPTS = 'lower-case letters, digits, _ and - (1–63, starting with a letter or digit)';

/**
 * Attribute names: they name InfluxDB measurements (events_1m_by_<attribute>) and SQL columns, so lower-case
 * letters, digits and _ only, starting with a letter.
 */
export const ATTRIBUTE_NAME_PATTERN = /^[a-z][a-z0-9_]{0,47}$/;
export const ATTRIBUTE_NAME_ACCEPTS = 'lower-case letters, digits and _ (1–48, starting with a letter)';

/** Most attribute columns a table may have (besides entity_id). */
export const MAX_ATTRIBUTES = 32;
/** Longest attribute value (characters); values become InfluxDB tag values. */
export const ATTRIBUTE_VALUE_MAX = 256;
export { ENTITY_ID_MAX };

/**
 * Why an attribute value (or entity id, with `max` ENTITY_ID_MAX) cannot be stored, or undefined. The same rules as
 * event entity ids: no control characters (line-oriented formats), no trailing backslash (InfluxDB 1.x line protocol
 * cannot carry it in a tag value). An empty value is not a problem: it means "no attribute".
 */
export function valueProblem(v: string, max: number): string | undefined {
  if (v.length > max) return `is ${v.length} characters long, more than ${max}`;
  const bad = /[\u0000-\u001f\u007f]/.exec(v);
  if (bad) return `holds a control character (U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()} at position ${bad.index})`;
  if (v.endsWith('\\')) return 'ends in a backslash, which an InfluxDB tag value cannot hold';
  return undefined;
}

// ---- keys in the raw bucket ------------------------------------------------------------------

export const DIMENSIONS_PREFIX = 'dimensions/';
export const tablePrefix = (table: string) => `${DIMENSIONS_PREFIX}${table}/`;
/** dimensions/<table>/v<N>.parquet: the rows of version N (immutable). */
export const versionDataKey = (table: string, version: number) => `${tablePrefix(table)}v${version}.parquet`;
/** dimensions/<table>/v<N>.json: the manifest of version N (immutable), written after its data file. */
export const versionManifestKey = (table: string, version: number) => `${tablePrefix(table)}v${version}.json`;
/** dimensions/<table>/current.json: the manifest of the current version, written after that version's manifest. */
export const pointerKey = (table: string) => `${tablePrefix(table)}current.json`;

/** The table and version of a version manifest key, or undefined when the key is not one. */
export function parseVersionManifestKey(key: string): { table: string; version: number } | undefined {
  const m = /^dimensions\/([a-z0-9][a-z0-9_-]{0,62})\/v([1-9]\d{0,8})\.json$/.exec(key);
  return m ? { table: m[1]!, version: Number(m[2]) } : undefined;
}

// ---- the manifest of a version (and the pointer, which is the current version's manifest) ----------

const manifestSchema = z.strictObject({
  contractVersion: z.literal(DIMENSIONS_CONTRACT_VERSION),
  table: z.string().regex(TABLE_NAME_PATTERN),
  version: z.number().int().min(1),
  /** Key of the version's Parquet file in the raw bucket, and its sha256 and size (verified on every download). */
  dataKey: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
  rows: z.number().int().nonnegative(),
  /** The attribute columns, in file order (entity_id is always first and not listed). */
  attributes: z.array(z.string().regex(ATTRIBUTE_NAME_PATTERN)).max(MAX_ATTRIBUTES),
  loadedAt: z.string(),
  /** The file it was loaded from (base name) and its format. */
  source: z.strictObject({ file: z.string(), format: z.enum(['csv', 'parquet']) }),
  /** Random id of the load that wrote this version (detects two loads racing for one version number). */
  loadId: z.string().min(1),
});

export type DimensionManifest = z.infer<typeof manifestSchema>;

export const encodeDimensionManifest = (m: DimensionManifest): string => `${JSON.stringify(m, null, 2)}\n`;

export function decodeDimensionManifest(body: string, where: string): DimensionManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch (err) {
    throw new PermanentError(`${where} is not JSON: ${(err as Error).message}`, 'dimension_manifest_invalid', { cause: err });
  }
  const v = (raw as { contractVersion?: unknown } | null)?.contractVersion;
  if (v !== DIMENSIONS_CONTRACT_VERSION)
    throw new PermanentError(
      `${where} has dimension contract version ${JSON.stringify(v)}; this build reads version ${DIMENSIONS_CONTRACT_VERSION}`,
      'dimension_manifest_version_unsupported',
    );
  const r = manifestSchema.safeParse(raw);
  if (!r.success)
    throw new PermanentError(
      `${where} is not a dimension manifest: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'} ${i.message}`).join('; ')}`,
      'dimension_manifest_invalid',
    );
  return r.data;
}

// ---- cold rollups of the attribute series ---------------------------------------------------------

/**
 * Columns of a cold rollup file of one attribute: one row per (value, event type, period), sorted by value, type and
 * period. dim_version is the newest table version counted in the period.
 */
export const ATTRIBUTE_ROLLUP_COLUMNS = [
  { name: 'value', duckdbType: 'VARCHAR', field: 'value' },
  { name: 'event_type', duckdbType: 'VARCHAR', field: 'eventType' },
  { name: 'period_start', duckdbType: 'TIMESTAMP_MS', field: 'periodMs' },
  { name: 'count', duckdbType: 'BIGINT', field: 'count' },
  { name: 'sum', duckdbType: 'DOUBLE', field: 'sum' },
  { name: 'min', duckdbType: 'DOUBLE', field: 'min' },
  { name: 'max', duckdbType: 'DOUBLE', field: 'max' },
  { name: 'dim_version', duckdbType: 'BIGINT', field: 'dimVersion' },
] as const;

export const ATTRIBUTE_ROLLUP_ORDER = 'value, event_type, period_start';

export interface AttributeRollupRow {
  value: string;
  eventType: string;
  periodMs: number;
  count: number;
  sum: number;
  min: number;
  max: number;
  dimVersion: number;
}

/** rollups-by/<attribute>/<res>/: beside, never inside, the entity rollups (rollups/<res>/). */
export const attributeRollupPrefix = (attribute: string, res: RollupResolution) => `rollups-by/${attribute}/${res}/`;

/** rollups-by/<attribute>/1h/dt=YYYY-MM-DD/part.parquet (hours of one day) or …/1d/dt=YYYY-MM/part.parquet (days of a month). */
export function attributeRollupKey(attribute: string, res: RollupResolution, periodMs: number): string {
  const start = new Date(coldFileStart(res, periodMs)).toISOString();
  return `${attributeRollupPrefix(attribute, res)}dt=${start.slice(0, res === '1h' ? 10 : 7)}/part.parquet`;
}

/** The attribute, resolution and file start of an attribute rollup key, or undefined. */
export function parseAttributeRollupKey(key: string): { attribute: string; res: RollupResolution; startMs: number } | undefined {
  const m = /^rollups-by\/([a-z][a-z0-9_]{0,47})\/(1h|1d)\/dt=(\d{4}-\d{2}(?:-\d{2})?)\/part\.parquet$/.exec(key);
  if (!m) return undefined;
  const res = m[2] as RollupResolution;
  const dt = m[3]!;
  if ((res === '1h') !== (dt.length === 10)) return undefined;
  const startMs = Date.parse(`${res === '1h' ? dt : `${dt}-01`}T00:00:00Z`);
  return Number.isNaN(startMs) ? undefined : { attribute: m[1]!, res, startMs };
}
