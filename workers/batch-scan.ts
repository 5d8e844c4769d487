// Opens a downloaded raw batch for a worker: validates that it is Parquet with the event columns, sets aside rows
// that can never be stored, counts each event id once within the batch, and runs the batch's one GROUP BY in the
// engine. Counting follows workers/batch-scan-rules.ts; the answers are typed in batch-scan-types.ts.
//
// Cost per batch, for the common clean batch (every row storable, no id repeated): one pass over the file that checks
// the rules and the ids, and one GROUP BY of the file into cells (entity, event type, CELL_MS of event time) read
// back as numbers (strings as indices into one dictionary); points, top-K buckets and totals are sums of those cells,
// in JavaScript, without another engine query. Only a batch with unstorable or repeated rows is copied into a table
// first (and deduplicated there), and only refused points make the cells be computed again.
import { PermanentError } from '../shared/errors.js';
import { connect, sqlString, type DuckDBConnection } from '../shared/parquet.js';
import { CELL_MS, type Cells, cellsSql, dictionarySql, lineChunks, sumCells, totalsOfCells } from './batch-scan-lines.js';
import { DEDUP_ID_SQL, FIRST_OF_IDENTITY_SQL, UNSTORABLE_REASON_SQL } from './batch-scan-rules.js';
import type {
  BatchScan,
  BucketCount,
  EntityTotal,
  LineChunks,
  LineProtocolOptions,
  PointKey,
  PointRef,
  QuarantineRow,
  RejectedPoint,
} from './batch-scan-types.js';
import { readQuarantineRows } from './batch-scan-quarantine.js';
import { numberColumns } from './batch-scan-columns.js';

/** The columns every count reads, from the file itself (epoch ms event time as `ts`). */
const fileRowsSql = (file: string) => `(SELECT entity_id, event_type, epoch_ms(event_time) AS ts, value FROM read_parquet(${sqlString(file)}))`;

/** Rows per rule outcome and distinct ids, in one pass over the file (the id check by a 64-bit hash: see scanBatch). */
async function checkFile(c: DuckDBConnection, file: string): Promise<{ rows: number; unstorable: number; distinctHashes: number }> {
  try {
    const [[rows, unstorable, hashes]] = (
      await c.runAndReadAll(`SELECT count(*)::DOUBLE, count(reason)::DOUBLE, count(DISTINCT h) FILTER (WHERE reason IS NULL)::DOUBLE
        FROM (SELECT ${UNSTORABLE_REASON_SQL} AS reason, hash(producer, event_id) AS h FROM read_parquet(${sqlString(file)}))`)
    ).getRowsJS() as [[number, number, number]];
    return { rows, unstorable, distinctHashes: hashes };
  } catch (err) {
    throw new PermanentError(`${file} is not a readable Sluice Parquet batch: ${(err as Error).message}`, 'batch_corrupt', { cause: err });
  }
}

/**
 * Opens `file` (a downloaded raw batch) in the engine; the caller closes the scan. When every row is storable and no
 * two rows share a 64-bit hash of their (producer, event id), no id repeats (equal ids hash alike) and the file itself
 * is what is counted. Otherwise (a repeated id, an unstorable row, or a hash collision) the storable rows are copied
 * into a table and each identity's first row kept there (FIRST_OF_IDENTITY_SQL).
 */
export async function scanBatch(file: string): Promise<BatchScan> {
  const c = await connect();
  try {
    const check = await checkFile(c, file);
    if (check.unstorable === 0 && check.distinctHashes === check.rows) return new EngineBatchScan(c, file, fileRowsSql(file), check.rows, 0, check.rows);
    await c.run(`CREATE TEMP TABLE batch AS SELECT file_row_number AS row_no, ${DEDUP_ID_SQL} AS uid, entity_id, event_type,
      epoch_ms(event_time) AS ts, value, ${UNSTORABLE_REASON_SQL} AS reason FROM read_parquet(${sqlString(file)}, file_row_number = true)`);
    await c.run(`CREATE TEMP TABLE unique_events AS SELECT * FROM batch WHERE reason IS NULL ${FIRST_OF_IDENTITY_SQL}`);
    const [[distinct]] = (await c.runAndReadAll('SELECT count(*)::DOUBLE FROM unique_events')).getRowsJS() as [[number]];
    return new EngineBatchScan(c, file, 'unique_events', check.rows, check.unstorable, distinct);
  } catch (err) {
    c.closeSync();
    throw err;
  }
}

/** Rows of `u` whose series and minute InfluxDB refused. */
const REJECTED_JOIN = 'rejected_points r ON u.entity_id = r.entity_id AND u.event_type = r.event_type AND u.ts // 60000 = r.m';

type CellsOfScan = { cells: Cells; entities: string[]; types: string[] };

class EngineBatchScan implements BatchScan {
  /** The cells of the counted rows and their dictionaries, for the rejected points at the time (see cells()). */
  private cached: { rejected: number; cells: Promise<CellsOfScan> } | undefined;
  /**
   * Every use of the connection, one after another, and close() after the last. A DuckDB connection runs one query at
   * a time and the next query cuts a result still being read; closing it while a query runs frees what that query
   * uses (native heap corruption, the process aborts). Callers run methods at once (the Redis inputs are computed
   * while InfluxDB is written) and may fail and close while one is still running.
   */
  private queue: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;
  /** Points InfluxDB refused: their events are left out of everything counted afterwards. */
  private rejected = 0;
  private linesPerChunk = 1;
  /** The points of the last minuteLines() call, by point number (chunk · linesPerChunk + line), and their dictionaries. */
  private lastPoints: { points: Cells; entities: readonly string[]; types: readonly string[] } | undefined;

  constructor(
    private readonly c: DuckDBConnection,
    private readonly file: string,
    /** The rows counted once each, before rejected points: the file itself, or the deduplicated table. */
    private readonly unique: string,
    readonly rowCount: number,
    readonly unstorableRows: number,
    readonly distinctIds: number,
  ) {}

  /** Runs `fn` once every earlier use of the connection has ended; refused after close(). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new Error(`the engine scan of ${this.file} is closed`));
    const p = this.queue.then(fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** The rows every count reads: the unique rows minus the events of rejected points. */
  private counted(): string {
    return this.rejected === 0 ? this.unique : `(SELECT u.* FROM ${this.unique} u ANTI JOIN ${REJECTED_JOIN})`;
  }

  /** The cells of the counted rows, computed once (callers at once share it), and again after more points were rejected. */
  private cells(): Promise<CellsOfScan> {
    if (this.cached?.rejected === this.rejected) return this.cached.cells;
    const from = this.counted();
    const cells = this.exclusive(async () => {
      const [entities, types] = (await this.c.runAndReadAll(dictionarySql(from))).getRowsJS()[0] as [string | null, string | null];
      const [ei, ti, b, n, s, lo, hi] = numberColumns(await this.c.run(cellsSql(from)), ['ei', 'ti', 'b', 'n', 's', 'lo', 'hi']);
      return {
        cells: { ei, ti, b, n, s, lo, hi },
        // Ids and types hold no control characters (rows that do are never counted), so a newline separates them.
        entities: entities ? entities.split('\n') : [],
        types: types ? types.split('\n') : [],
      };
    });
    this.cached = { rejected: this.rejected, cells };
    // A failed computation is not kept: the next call tries again.
    cells.catch(() => {
      if (this.cached?.cells === cells) this.cached = undefined;
    });
    return cells;
  }

  async minuteLines(o: LineProtocolOptions): Promise<LineChunks> {
    if (o.offsetNs < 0n || o.offsetNs >= 60_000_000_000n) throw new RangeError(`offsetNs must be in [0, 60e9), got ${o.offsetNs}`);
    const { cells, entities, types } = await this.cells();
    this.linesPerChunk = Math.max(1, Math.floor(o.linesPerChunk));
    const points = sumCells(cells, 60_000);
    this.lastPoints = { points, entities, types };
    let events = 0;
    for (const n of points.n) events += n;
    return { chunks: lineChunks(points, entities, types, o.offsetNs, this.linesPerChunk), points: points.n.length, events };
  }

  async pointsAt(refs: readonly PointRef[]): Promise<PointKey[]> {
    const last = this.lastPoints;
    return refs.map((r) => {
      const rn = r.chunk * this.linesPerChunk + r.line;
      if (!last || !Number.isInteger(rn) || r.line < 0 || r.line >= this.linesPerChunk || rn < 0 || rn >= last.points.n.length)
        throw new RangeError(`no point at chunk ${r.chunk}, line ${r.line} of the last minuteLines()`);
      const p = last.points;
      return { entityId: last.entities[p.ei[rn]!]!, eventType: last.types[p.ti[rn]!]!, minuteMs: p.b[rn]! * 60_000 };
    });
  }

  async rejectPoints(points: readonly RejectedPoint[]): Promise<void> {
    if (!points.length) return;
    await this.exclusive(async () => {
      await this.c.run('CREATE TEMP TABLE IF NOT EXISTS rejected_points (entity_id VARCHAR, event_type VARCHAR, m BIGINT, reason VARCHAR, detail VARCHAR)');
      const app = await this.c.createAppender('rejected_points', 'main', 'temp'); // temp tables live in catalog temp, schema main
      for (const p of points) {
        app.appendVarchar(p.entityId);
        app.appendVarchar(p.eventType);
        app.appendBigInt(BigInt(Math.floor(p.minuteMs / 60_000)));
        app.appendVarchar(p.reason);
        app.appendVarchar(p.detail);
        app.endRow();
      }
      app.closeSync();
      this.rejected += points.length;
    });
  }

  async entityTotals(): Promise<EntityTotal[]> {
    const { cells, entities, types } = await this.cells();
    const t = totalsOfCells(cells);
    const out = new Array<EntityTotal>(t.n.length);
    for (let i = 0; i < t.n.length; i++) out[i] = { entityId: entities[t.ei[i]!]!, eventType: types[t.ti[i]!]!, count: t.n[i]!, sum: t.s[i]! };
    return out;
  }

  async countBuckets(bucketMs: number): Promise<BucketCount[]> {
    if (!Number.isInteger(bucketMs) || bucketMs <= 0) throw new RangeError(`bucketMs must be a positive integer, got ${bucketMs}`);
    if (bucketMs % CELL_MS !== 0) {
      // Buckets that do not nest in cells (no caller today): from the rows.
      const [entities = [], types = [], buckets = [], counts = []] = (await this.exclusive(async () =>
        (
          await this.c.runAndReadAll(
            `SELECT entity_id, event_type, ((ts // ${bucketMs}) * ${bucketMs})::DOUBLE, count(*)::INTEGER FROM ${this.counted()} GROUP BY ALL ORDER BY ALL`,
          )
        ).getColumnsJS(),
      )) as [string[], string[], number[], number[]];
      return entities.map((entityId, i) => ({ entityId, eventType: types[i]!, bucketMs: buckets[i]!, count: counts[i]! }));
    }
    const { cells, entities, types } = await this.cells();
    const c = sumCells(cells, bucketMs);
    const out = new Array<BucketCount>(c.n.length);
    for (let i = 0; i < c.n.length; i++) out[i] = { entityId: entities[c.ei[i]!]!, eventType: types[c.ti[i]!]!, bucketMs: c.b[i]! * bucketMs, count: c.n[i]! };
    return out;
  }

  async quarantineRows(): Promise<QuarantineRow[]> {
    if (this.unstorableRows === 0 && this.rejected === 0) return [];
    const parts: string[] = [];
    if (this.unstorableRows > 0) parts.push('SELECT row_no, reason, NULL AS detail FROM batch WHERE reason IS NOT NULL');
    if (this.rejected > 0) {
      // The clean path counts the file itself, so its rows are numbered here.
      const unique =
        this.unique === 'unique_events'
          ? 'unique_events'
          : `(SELECT file_row_number AS row_no, entity_id, event_type, epoch_ms(event_time) AS ts FROM read_parquet(${sqlString(this.file)}, file_row_number = true))`;
      parts.push(`SELECT u.row_no, r.reason, r.detail FROM ${unique} u JOIN ${REJECTED_JOIN}`);
    }
    return this.exclusive(() => readQuarantineRows(this.c, this.file, parts.join(' UNION ALL ')));
  }

  withCountedRows<T>(fn: (c: DuckDBConnection, rows: string) => Promise<T>): Promise<T> {
    return this.exclusive(() => fn(this.c, this.counted()));
  }

  close(): Promise<void> {
    this.closing ??= this.queue.then(() => this.c.closeSync());
    return this.closing;
  }
}
