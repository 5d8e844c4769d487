// Opens a downloaded raw batch for a worker: validates that it is Parquet with the event columns, sets aside rows
// that can never be stored, returns the dedup ids of the rest (for cross-batch claims) and runs the per-minute
// GROUP BYs in the engine. Counting follows workers/batch-scan-rules.ts; the answers are typed in batch-scan-types.ts.
import { PermanentError } from '../shared/errors.js';
import { connect, sqlString, type DuckDBConnection } from '../shared/parquet.js';
import { lineChunksSql, pointsTableSql } from './batch-scan-lines.js';
import { DEDUP_ID_SQL, FIRST_OF_IDENTITY_SQL, UNSTORABLE_REASON_SQL } from './batch-scan-rules.js';
import { claimShardSql } from './event-dedup.js';
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

async function readBatchTable(c: DuckDBConnection, file: string): Promise<void> {
  try {
    await c.run(`CREATE TEMP TABLE batch AS SELECT file_row_number AS row_no, ${DEDUP_ID_SQL} AS uid, entity_id, event_type,
      epoch_ms(event_time) AS ts, value, ${UNSTORABLE_REASON_SQL} AS reason FROM read_parquet(${sqlString(file)}, file_row_number = true)`);
  } catch (err) {
    throw new PermanentError(`${file} is not a readable Sluice Parquet batch: ${(err as Error).message}`, 'batch_corrupt', { cause: err });
  }
}

async function loadExcluded(c: DuckDBConnection, excluded: readonly string[]): Promise<void> {
  await c.run('CREATE OR REPLACE TEMP TABLE excluded (uid VARCHAR)');
  if (!excluded.length) return;
  const app = await c.createAppender('excluded', 'main', 'temp'); // temp tables live in catalog temp, schema main
  for (const id of excluded) {
    app.appendVarchar(id);
    app.endRow();
  }
  app.closeSync();
}

/** Rows of `from` whose series and minute InfluxDB refused. */
const REJECTED_JOIN = 'rejected_points r ON u.entity_id = r.entity_id AND u.event_type = r.event_type AND u.ts // 60000 = r.m';

/** Opens `file` (a downloaded raw batch) in the engine; the caller closes the scan. */
export async function scanBatch(file: string): Promise<BatchScan> {
  const c = await connect();
  try {
    await readBatchTable(c, file);
    const [[rows, bad]] = (await c.runAndReadAll('SELECT count(*)::BIGINT, count(reason)::BIGINT FROM batch')).getRowsJS() as [[bigint, bigint]];
    const unstorableRows = Number(bad);
    // The storable rows; a copy only when some row is not (rare), so the hot path reads the batch table itself.
    let good = 'batch';
    if (unstorableRows > 0) {
      await c.run('CREATE TEMP TABLE good AS SELECT * FROM batch WHERE reason IS NULL');
      good = 'good';
    }
    const distinctIds = Number((await c.runAndReadAll(`SELECT count(DISTINCT uid)::BIGINT FROM ${good}`)).getRowsJS()[0]![0]);
    return new EngineBatchScan(c, file, good, Number(rows), unstorableRows, distinctIds);
  } catch (err) {
    c.closeSync();
    throw err;
  }
}

class EngineBatchScan implements BatchScan {
  /** The rows counted for the last exclusion set (see uniqueEvents). */
  private prepared: { excluded: readonly string[]; table: string } | undefined;
  /** Points InfluxDB refused: their events are left out of everything counted afterwards. */
  private rejected = 0;
  private linesPerChunk = 1;

  constructor(
    private readonly c: DuckDBConnection,
    private readonly file: string,
    /** Table of the storable rows. */
    private readonly good: string,
    readonly rowCount: number,
    readonly unstorableRows: number,
    readonly distinctIds: number,
  ) {}

  /**
   * The rows to count: each id once, minus ids excluded by other batches. Built once per exclusion set and shared
   * by every count; when the file repeats no id and nothing is excluded it is the storable rows themselves.
   */
  private async uniqueEvents(excluded: readonly string[]): Promise<string> {
    if (this.prepared?.excluded === excluded) return this.prepared.table;
    let table = this.good;
    if (excluded.length > 0 || this.distinctIds !== this.rowCount - this.unstorableRows) {
      await loadExcluded(this.c, excluded);
      await this.c.run(`CREATE OR REPLACE TEMP TABLE unique_events AS
        SELECT * FROM ${this.good} ANTI JOIN excluded USING (uid) ${FIRST_OF_IDENTITY_SQL}`);
      table = 'unique_events';
    }
    this.prepared = { excluded, table };
    return table;
  }

  /** The rows every count reads: uniqueEvents() minus the events of rejected points. */
  private async counted(excluded: readonly string[]): Promise<string> {
    const from = await this.uniqueEvents(excluded);
    return this.rejected === 0 ? from : `(SELECT u.* FROM ${from} u ANTI JOIN ${REJECTED_JOIN})`;
  }

  async idChunks(size: number): Promise<string[]> {
    const n = Math.max(1, Math.floor(size));
    const [chunks = []] = (
      await this.c.runAndReadAll(`
      SELECT string_agg(uid, chr(10) ORDER BY uid) FROM (
        SELECT uid, s, (row_number() OVER (PARTITION BY s ORDER BY uid) - 1) // ${n} AS k
        FROM (SELECT uid, ${claimShardSql('uid')} AS s FROM (SELECT DISTINCT uid FROM ${this.good}))
      ) GROUP BY s, k ORDER BY s, k`)
    ).getColumnsJS() as [string[]];
    return chunks;
  }

  async minuteLines(excluded: readonly string[], o: LineProtocolOptions): Promise<LineChunks> {
    if (o.offsetNs < 0n || o.offsetNs >= 60_000_000_000n) throw new RangeError(`offsetNs must be in [0, 60e9), got ${o.offsetNs}`);
    const from = await this.counted(excluded);
    this.linesPerChunk = Math.max(1, Math.floor(o.linesPerChunk));
    await this.c.run(pointsTableSql(from));
    const [bodies = [], points = [], events = []] = (await this.c.runAndReadAll(lineChunksSql(o.offsetNs, this.linesPerChunk))).getColumnsJS() as [
      string[],
      number[],
      number[],
    ];
    return { chunks: bodies, points: points.reduce((a, b) => a + b, 0), events: events.reduce((a, b) => a + b, 0) };
  }

  async pointsAt(refs: readonly PointRef[]): Promise<PointKey[]> {
    if (!refs.length) return [];
    const rns = refs.map((r) => r.chunk * this.linesPerChunk + r.line);
    const [found = [], entities = [], types = [], minutes = []] = (
      await this.c.runAndReadAll(`SELECT rn::DOUBLE, entity_id, event_type, (m * 60000)::DOUBLE FROM points WHERE rn IN (${rns.join(', ')})`)
    ).getColumnsJS() as [number[], string[], string[], number[]];
    const at = new Map(found.map((rn, i) => [rn, { entityId: entities[i]!, eventType: types[i]!, minuteMs: minutes[i]! }]));
    return rns.map((rn, i) => {
      const p = at.get(rn);
      if (!p) throw new RangeError(`no point at chunk ${refs[i]!.chunk}, line ${refs[i]!.line} of the last minuteLines()`);
      return p;
    });
  }

  async rejectPoints(points: readonly RejectedPoint[]): Promise<void> {
    if (!points.length) return;
    await this.c.run('CREATE TEMP TABLE IF NOT EXISTS rejected_points (entity_id VARCHAR, event_type VARCHAR, m BIGINT, reason VARCHAR, detail VARCHAR)');
    const app = await this.c.createAppender('rejected_points', 'main', 'temp');
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
  }

  async entityTotals(excluded: readonly string[]): Promise<EntityTotal[]> {
    const from = await this.counted(excluded);
    const [entities = [], types = [], counts = [], sums = []] = (
      await this.c.runAndReadAll(`SELECT entity_id, event_type, count(*)::INTEGER, sum(value) FROM ${from} GROUP BY ALL ORDER BY entity_id, event_type`)
    ).getColumnsJS() as [string[], string[], number[], number[]];
    return entities.map((entityId, i) => ({ entityId, eventType: types[i]!, count: counts[i]!, sum: sums[i]! }));
  }

  async countBuckets(excluded: readonly string[], bucketMs: number): Promise<BucketCount[]> {
    if (!Number.isInteger(bucketMs) || bucketMs <= 0) throw new RangeError(`bucketMs must be a positive integer, got ${bucketMs}`);
    const from = await this.counted(excluded);
    const rows = (
      await this.c.runAndReadAll(`SELECT entity_id, event_type, (ts // ${bucketMs}) * ${bucketMs} AS bucket, count(*)::BIGINT FROM ${from} GROUP BY ALL`)
    ).getRowsJS();
    return rows.map(([entityId, eventType, bucket, count]) => ({
      entityId: entityId as string,
      eventType: eventType as string,
      bucketMs: Number(bucket),
      count: Number(count),
    }));
  }

  async quarantineRows(excluded: readonly string[]): Promise<QuarantineRow[]> {
    if (this.unstorableRows === 0 && this.rejected === 0) return [];
    const parts = ['SELECT row_no, reason, NULL AS detail FROM batch WHERE reason IS NOT NULL'];
    if (this.rejected > 0) parts.push(`SELECT u.row_no, r.reason, r.detail FROM ${await this.uniqueEvents(excluded)} u JOIN ${REJECTED_JOIN}`);
    return readQuarantineRows(this.c, this.file, parts.join(' UNION ALL '));
  }

  close(): void {
    this.c.closeSync();
  }
}
