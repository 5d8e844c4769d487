// Compaction's engine work: merges raw event files of any readable schema version into one file with every column
// of the current contract (EVENT_COLUMNS), and fingerprints files so a copy is verified before originals go.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { EVENT_COLUMNS } from '../../shared/contracts/parquet-schema.js';
import { castColumns, copyToParquet, queryParquet, withConnection } from '../../shared/parquet.js';
import { eventFiles, fingerprintSql, toFingerprint, type ArchiveFingerprint } from './archive-sql.js';

/** Sort order of a compacted day file: the raw batch order (contracts/parquet-schema.ts), across all its inputs. */
const COMPACTED_ORDER = 'entity_id, event_time, event_id';

export async function fingerprintEventFiles(files: readonly string[]): Promise<ArchiveFingerprint> {
  const [r] = await queryParquet(fingerprintSql(eventFiles(files)));
  return toFingerprint(r!);
}

/**
 * Merges event files into `out` with every column of EVENT_COLUMNS (columns absent from all inputs are written as
 * NULL), sorted by COMPACTED_ORDER, zstd. Every row is kept (no dedup: the archive stays a faithful copy).
 * Returns the fingerprint of the inputs.
 */
export async function compactEventFiles(inputs: readonly string[], out: string): Promise<ArchiveFingerprint> {
  if (!inputs.length) throw new RangeError('compactEventFiles needs at least one input file');
  mkdirSync(path.dirname(out), { recursive: true });
  return withConnection(async (c) => {
    const present = new Set((await c.runAndReadAll(`DESCRIBE SELECT * FROM ${eventFiles(inputs)}`)).getRowObjectsJS().map((r) => String(r.column_name)));
    await copyToParquet(c, `SELECT ${castColumns(EVENT_COLUMNS, present)} FROM ${eventFiles(inputs)} ORDER BY ${COMPACTED_ORDER}`, out);
    return toFingerprint((await c.runAndReadAll(fingerprintSql(eventFiles(inputs)))).getRowObjectsJS()[0]!);
  });
}
