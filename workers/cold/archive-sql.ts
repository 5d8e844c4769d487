// The archive's raw event files as the engine reads them: any mix of schema versions (contracts/parquet-schema.ts),
// and the fingerprint — rows and an id checksum — that compaction compares on both sides of a copy.
import { parquetFiles } from '../../shared/parquet.js';

/** Reads any mix of event-file schema versions (columns matched by name; missing optional ones are NULL). */
export const eventFiles = (files: readonly string[]): string => `read_parquet(${parquetFiles(files)}, union_by_name = true)`;

/** What a set of event files holds, computed the same way on both sides of a copy: rows and an id checksum. */
export interface ArchiveFingerprint {
  rows: number;
  /** md5 over every row's event_id in sorted order (duplicates included), newline-separated. */
  idChecksum: string;
}

/** The fingerprint of `from` as one row: columns rows, ids. */
export const fingerprintSql = (from: string): string =>
  `SELECT count(*)::BIGINT AS rows, coalesce(md5(string_agg(event_id, chr(10) ORDER BY event_id)), '') AS ids FROM ${from}`;

export const toFingerprint = (r: Record<string, unknown>): ArchiveFingerprint => ({ rows: Number(r.rows), idChecksum: String(r.ids) });
