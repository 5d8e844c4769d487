// The Parquet engine of Sluice: opens the embedded engine (DuckDB's Node API; see the README for the benchmark
// that chose it over parquetjs-lite and parquet-wasm), hands out connections, quotes SQL and reads and writes
// Parquet files the one way every service does. It holds no service's queries: those live with their owner.
import { DuckDBInstance, DuckDBTimestampMillisecondsValue, type DuckDBAppender, type DuckDBConnection } from '@duckdb/node-api';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pidAlive } from './pid-alive.js';

export type { DuckDBConnection } from '@duckdb/node-api';

export interface EngineOptions {
  /** Folder for DuckDB spill files: the engine spills into a folder of its own process inside it (engineSpillDir). */
  tempDir: string;
  /** Memory DuckDB may use in this process, e.g. "256MB". */
  memoryLimit?: string;
  threads?: number;
}

let instance: Promise<DuckDBInstance> | undefined;

/**
 * The engine's session time zone, whatever the machine's: casts between TIMESTAMP (schema v1/v2 files: UTC
 * wall-clock values) and TIMESTAMPTZ (v3 instants), day buckets and text forms of instants all use it. The engine's
 * built-in time-zone support starts from the machine's zone (TZ), so on a machine set to another zone a v1 file
 * read beside a v3 file would be shifted by its offset.
 */
export const ENGINE_TIME_ZONE = 'UTC';

/** This host in a folder name (letters, digits, _ and - only). */
const HOST = os.hostname().replace(/[^A-Za-z0-9_-]/g, '-') || 'host';

/**
 * The engine's spill folder of this process: `<tempDir>/<host>-<pid>`, created. The engine names its spill files by
 * size class only (duckdb_temp_storage_S64K-0.tmp), so processes spilling into one folder — a fleet's workers, or a
 * worker and a job of the same SLUICE_DATA_DIR — overwrite each other's spilled data: the reader gets another
 * process's blocks, an IO error, or a segmentation fault. Folders of this host's processes that have ended hold only
 * garbage and are removed (those of other hosts, which may share the folder, are left alone).
 */
export function engineSpillDir(tempDir: string): string {
  mkdirSync(tempDir, { recursive: true });
  for (const name of readdirSync(tempDir)) {
    const m = /^(.+)-(\d+)$/.exec(name);
    if (!m || m[1] !== HOST || Number(m[2]) === process.pid || pidAlive(Number(m[2]))) continue;
    rmSync(path.join(tempDir, name), { recursive: true, force: true });
  }
  const dir = path.join(tempDir, `${HOST}-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Opens (once per process) the embedded engine; it spills to engineSpillDir(opts.tempDir). */
export function openEngine(opts: EngineOptions): Promise<DuckDBInstance> {
  if (!instance) {
    instance = DuckDBInstance.create(':memory:', {
      temp_directory: engineSpillDir(opts.tempDir),
      memory_limit: opts.memoryLimit ?? '512MB',
      threads: String(opts.threads ?? 2),
    }).then(async (db) => {
      // Not a creation option: the time-zone setting only exists once the engine's ICU support is loaded.
      const c = await db.connect();
      try {
        await c.run(`SET GLOBAL TimeZone = ${sqlString(ENGINE_TIME_ZONE)}`);
      } finally {
        c.closeSync();
      }
      return db;
    });
  }
  return instance;
}

/** A new connection to the engine; the caller closes it (closeSync). */
export async function connect(): Promise<DuckDBConnection> {
  if (!instance) throw new Error('Parquet engine not opened: call openEngine() once at start-up, before any Parquet read or write');
  return (await instance).connect();
}

/** Runs `fn` on a fresh connection and always closes it. */
export async function withConnection<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
  const c = await connect();
  try {
    return await fn(c);
  } finally {
    c.closeSync();
  }
}

/** SQL string literal. */
export const sqlString = (s: string): string => `'${s.replaceAll("'", "''")}'`;

/** SQL identifier (double-quoted). */
export const sqlIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** A SQL list literal of file paths, e.g. for read_parquet. */
export const parquetFiles = (files: readonly string[]): string => `[${files.map(sqlString).join(', ')}]`;

/** Rows per Parquet row group: large enough for fast scans, small enough that min/max stats let readers skip. */
export const ROW_GROUP_SIZE = 122_880;

/** A column of a contract: its name and the DuckDB type it is written with. */
export interface ColumnType {
  name: string;
  duckdbType: string;
}

/** Column definitions for CREATE TABLE, from a contract's column list. */
export const columnDdl = (columns: readonly ColumnType[]): string => columns.map((c) => `${sqlIdent(c.name)} ${c.duckdbType}`).join(', ');

/**
 * A SELECT list with every column of a contract cast to its type; a column missing from `present` (an older
 * file that lacks it) is written as NULL of that type.
 */
export const castColumns = (columns: readonly ColumnType[], present?: ReadonlySet<string>): string =>
  columns.map((c) => `${present && !present.has(c.name) ? 'NULL' : sqlIdent(c.name)}::${c.duckdbType} AS ${sqlIdent(c.name)}`).join(', ');

/** A value for one column of appendRows(): a string for VARCHAR, a number (epoch ms for TIMESTAMP_MS) otherwise. */
export type CellValue = string | number;

const APPEND: Readonly<Record<string, (a: DuckDBAppender, v: CellValue) => void>> = {
  VARCHAR: (a, v) => a.appendVarchar(String(v)),
  INTEGER: (a, v) => a.appendInteger(Number(v)),
  BIGINT: (a, v) => a.appendBigInt(BigInt(v)),
  DOUBLE: (a, v) => a.appendDouble(Number(v)),
  TIMESTAMP_MS: (a, v) => a.appendTimestampMilliseconds(new DuckDBTimestampMillisecondsValue(BigInt(v))),
};

/**
 * Creates (or replaces) temp table `table` with the contract's `columns` and appends `rows` to it through the
 * engine's appender (no SQL text per row). Each row holds one value per column, in column order.
 */
export async function appendRows(c: DuckDBConnection, table: string, columns: readonly ColumnType[], rows: Iterable<readonly CellValue[]>): Promise<void> {
  const appenders = columns.map((col) => {
    const append = APPEND[col.duckdbType];
    if (!append) throw new TypeError(`appendRows cannot append column ${col.name} of type ${col.duckdbType}: add the type to APPEND in shared/parquet.ts`);
    return append;
  });
  await c.run(`CREATE OR REPLACE TEMP TABLE ${sqlIdent(table)} (${columnDdl(columns)})`);
  const app = await c.createAppender(table, 'main', 'temp'); // temp tables live in catalog temp, schema main
  try {
    for (const row of rows) {
      for (let i = 0; i < appenders.length; i++) appenders[i]!(app, row[i]!);
      app.endRow();
    }
  } finally {
    app.closeSync();
  }
}

/**
 * A SELECT list that reads the contract's `columns` back as JavaScript numbers and strings: timestamps as epoch
 * ms, integers as doubles (exact up to 2^53), each under its own name.
 */
export const readColumns = (columns: readonly ColumnType[]): string =>
  columns
    .map((c) => {
      const col = sqlIdent(c.name);
      const expr = c.duckdbType.startsWith('TIMESTAMP') ? `epoch_ms(${col})::DOUBLE` : /INT/.test(c.duckdbType) ? `${col}::DOUBLE` : col;
      return `${expr} AS ${col}`;
    })
    .join(', ');

/**
 * Writes the rows of `select` to `file` the way every Sluice Parquet file is written: zstd, ROW_GROUP_SIZE row
 * groups, statistics. Creates the file's folder.
 */
export async function copyToParquet(c: DuckDBConnection, select: string, file: string): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  await c.run(`COPY (${select}) TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${ROW_GROUP_SIZE})`);
}

/** Runs a read-only query over Parquet files and returns plain rows (for audits, tests and analysts' checks). */
export async function queryParquet(sql: string): Promise<Record<string, unknown>[]> {
  return withConnection(async (c) => (await c.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[]);
}
