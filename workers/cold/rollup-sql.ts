// Writes the rollup job's cold files: the columns of contracts/cold-layout.ts ROLLUP_COLUMNS, sorted by ROLLUP_ORDER.
// A file is always rewritten whole (recomputed periods replaced, the others kept), so a rerun is idempotent.
import { ROLLUP_COLUMNS, ROLLUP_ORDER, type RollupRow } from '../../shared/contracts/cold-layout.js';
import { appendRows, castColumns, copyToParquet, sqlString, withConnection } from '../../shared/parquet.js';

const COLUMN_LIST = ROLLUP_COLUMNS.map((c) => c.name).join(', ');

/**
 * Writes a rollup file of `rows`. With `merge`, rows of an existing rollup file are kept unless their period lies
 * in [merge.replaceFromMs, merge.replaceToMs) — the periods `rows` recompute. Returns the rows written.
 */
export async function writeRollupFile(
  rows: readonly RollupRow[],
  file: string,
  merge?: { file: string; replaceFromMs: number; replaceToMs: number },
): Promise<number> {
  return withConnection(async (c) => {
    try {
      await appendRows(
        c,
        'rollup_rows',
        ROLLUP_COLUMNS,
        rows.map((r) => ROLLUP_COLUMNS.map((col) => r[col.field])),
      );
      const kept = merge
        ? `UNION ALL SELECT ${castColumns(ROLLUP_COLUMNS)} FROM read_parquet(${sqlString(merge.file)})
           WHERE NOT (epoch_ms(period_start) >= ${Math.trunc(merge.replaceFromMs)} AND epoch_ms(period_start) < ${Math.trunc(merge.replaceToMs)})`
        : '';
      await copyToParquet(c, `SELECT * FROM (SELECT ${COLUMN_LIST} FROM rollup_rows ${kept}) ORDER BY ${ROLLUP_ORDER}`, file);
      const n = (await c.runAndReadAll(`SELECT count(*)::BIGINT FROM read_parquet(${sqlString(file)})`)).getRowsJS()[0]![0];
      return Number(n);
    } finally {
      await c.run('DROP TABLE IF EXISTS rollup_rows');
    }
  });
}
