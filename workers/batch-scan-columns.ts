// Reads numeric columns of an engine result straight from its vectors into plain arrays: no row objects and no
// per-value conversion, for the scan's results of tens of thousands of rows (strings travel as dictionary indices).
import type { DuckDBMaterializedResult } from '@duckdb/node-api';

/** One number array per name. */
export type NumberColumns<K extends readonly string[]> = { [P in keyof K]: number[] };

/**
 * The first columns of `result`, one per name in `names` (what the query selects, for error messages), as number
 * arrays. Each must be INTEGER, DOUBLE or another type the engine hands over as a JavaScript number (cast BIGINT in
 * SQL); a NULL or another type is an error naming the column and row.
 */
export function numberColumns<const K extends readonly string[]>(result: DuckDBMaterializedResult, names: K): NumberColumns<K> {
  const rows = result.rowCount;
  const count = names.length;
  const cols = Array.from({ length: count }, () => new Array<number>(rows));
  let at = 0;
  for (let ci = 0; ci < result.chunkCount; ci++) {
    const chunk = result.getChunk(ci);
    const n = chunk.rowCount;
    for (let k = 0; k < count; k++) {
      const vector = chunk.getColumnVector(k);
      const out = cols[k]!;
      for (let i = 0; i < n; i++) {
        const v = vector.getItem(i);
        if (typeof v !== 'number') throw new TypeError(`column ${names[k]} of the result, row ${at + i}, is ${v === null ? 'NULL' : typeof v}, not a number`);
        out[at + i] = v;
      }
    }
    at += n;
  }
  return cols as NumberColumns<K>;
}
