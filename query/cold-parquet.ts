// The query API's reads of cold rollup files (contracts/cold-layout.ts ROLLUP_COLUMNS), downloaded by
// query/cold-reader.ts: the rows of one series, oldest period first.
import { ROLLUP_COLUMNS, type RollupRow } from '../shared/contracts/cold-layout.js';
import { parquetFiles, queryParquet, readColumns, sqlString } from '../shared/parquet.js';

/** Rollup rows of one series over [fromMs, toMs) from local rollup files (periods starting in the range). */
export async function readRollups(files: readonly string[], q: { entityId: string; eventType: string; fromMs: number; toMs: number }): Promise<RollupRow[]> {
  if (!files.length) return [];
  const rows = await queryParquet(`SELECT ${readColumns(ROLLUP_COLUMNS)} FROM read_parquet(${parquetFiles(files)})
    WHERE entity_id = ${sqlString(q.entityId)} AND event_type = ${sqlString(q.eventType)}
      AND epoch_ms(period_start) >= ${Math.trunc(q.fromMs)} AND epoch_ms(period_start) < ${Math.trunc(q.toMs)} ORDER BY period_start`);
  return rows.map((r) => Object.fromEntries(ROLLUP_COLUMNS.map((c) => [c.field, r[c.name]])) as unknown as RollupRow);
}
