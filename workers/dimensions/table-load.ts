// `sluice dimensions load`: validates a dimension table (CSV with a header, or Parquet) and publishes it as the next
// version in the raw bucket (shared/dimension-tables.ts). The first column must be entity_id, the others string
// attributes named as contracts/dimensions.ts allows; every entity id appears once. Any problem stops the load with
// the file, line (CSV) or row (Parquet) and column of each of the first problems found; nothing is published then.
import type { S3Client } from '@aws-sdk/client-s3';
import { mkdirSync, openSync, readSync, closeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import {
  ATTRIBUTE_NAME_ACCEPTS,
  ATTRIBUTE_NAME_PATTERN,
  ATTRIBUTE_VALUE_MAX,
  type DimensionManifest,
  ENTITY_COLUMN,
  ENTITY_ID_MAX,
  MAX_ATTRIBUTES,
  TABLE_NAME_ACCEPTS,
  TABLE_NAME_PATTERN,
  valueProblem,
} from '../../shared/contracts/dimensions.js';
import { publishVersion } from '../../shared/dimension-tables.js';
import { PermanentError } from '../../shared/errors.js';
import { copyToParquet, type DuckDBConnection, sqlIdent, sqlString, withConnection } from '../../shared/parquet.js';
import { readCsv } from './csv.js';

/** Problems reported at most per load (the first ones, in file order). */
export const MAX_PROBLEMS = 10;

export type TableFormat = 'csv' | 'parquet';

export interface PreparedTable {
  /** The Parquet file to publish: entity_id, then the attributes (empty values as NULL), sorted by entity_id. */
  file: string;
  rows: number;
  attributes: string[];
  format: TableFormat;
}

/** The table is not valid: `problems` says what and where (file:line or file, row N; column). */
export class DimensionTableError extends PermanentError {
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(`${file} is not a valid dimension table:\n${problems.map((p) => `  ${p}`).join('\n')}`, 'dimension_file_invalid');
  }
}

/** CSV or Parquet, by the file's first bytes (Parquet starts with PAR1), else by its extension. */
export function formatOf(file: string): TableFormat {
  const buf = Buffer.alloc(4);
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new PermanentError(`cannot read ${file}: ${(err as Error).message}`, 'dimension_file_missing', { cause: err });
  }
  try {
    readSync(fd, buf, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  if (buf.toString('latin1') === 'PAR1') return 'parquet';
  if (/\.parquet$/i.test(file)) throw new DimensionTableError(file, ['the file is named .parquet but does not start with the Parquet magic bytes PAR1']);
  return 'csv';
}

/** Problems of a header (column names); empty when it is valid. `where(i)` names column i (0-based). */
export function headerProblems(names: readonly string[], where: (i: number) => string): string[] {
  const problems: string[] = [];
  if (names[0] !== ENTITY_COLUMN)
    problems.push(
      `${where(0)}: the first column must be ${ENTITY_COLUMN}, got ${names[0] === undefined || names[0] === '' ? 'an empty name' : JSON.stringify(names[0])}`,
    );
  const attrs = names.length - 1;
  if (attrs < 1) problems.push(`${where(0)}: no attribute column after ${ENTITY_COLUMN}: a table needs at least one (e.g. channel)`);
  if (attrs > MAX_ATTRIBUTES) problems.push(`${where(0)}: ${attrs} attribute columns, more than the limit of ${MAX_ATTRIBUTES}`);
  const seen = new Map<string, number>();
  for (let i = 1; i < names.length && problems.length < MAX_PROBLEMS; i++) {
    const n = names[i]!;
    if (n.trim() === '') problems.push(`${where(i)}: empty attribute name`);
    else if (n === ENTITY_COLUMN) problems.push(`${where(i)}: ${ENTITY_COLUMN} appears again (only the first column holds the entity id)`);
    else if (!ATTRIBUTE_NAME_PATTERN.test(n)) problems.push(`${where(i)}: attribute name ${JSON.stringify(n)} must be ${ATTRIBUTE_NAME_ACCEPTS}`);
    else if (seen.has(n)) problems.push(`${where(i)}: attribute ${JSON.stringify(n)} repeats column ${seen.get(n)! + 1}`);
    seen.set(n, i);
  }
  return problems;
}

const show = (v: string) => JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
const CONTROL_SQL = `'[\\x00-\\x1f\\x7f]'`;

/** Row-level problems of table dim_rows (line, entity_id, attributes…): bad values and repeated entity ids. */
async function rowProblems(
  c: DuckDBConnection,
  attributes: readonly string[],
  where: (line: number) => string,
  ref: (line: number) => string,
): Promise<string[]> {
  const cols = [ENTITY_COLUMN, ...attributes];
  const bad = cols
    .map((col, i) => {
      const id = sqlIdent(col);
      const max = i === 0 ? ENTITY_ID_MAX : ATTRIBUTE_VALUE_MAX;
      const empty = i === 0 ? `${id} IS NULL OR ${id} = '' OR ` : '';
      return `SELECT line, ${i} AS col, ${id} AS v FROM dim_rows WHERE ${empty}length(${id}) > ${max} OR regexp_matches(${id}, ${CONTROL_SQL}) OR ends_with(${id}, chr(92))`;
    })
    .join(' UNION ALL ');
  const rows = (await c.runAndReadAll(`SELECT line::DOUBLE, col, v FROM (${bad}) ORDER BY line, col LIMIT ${MAX_PROBLEMS}`)).getRowsJS() as [
    number,
    number,
    string | null,
  ][];
  const problems: [number, string][] = rows.map(([line, col, v]) => {
    const name = cols[col]!;
    if (col === 0 && (v === null || v === '')) return [line, `${where(line)}, column ${ENTITY_COLUMN}: empty entity id (every row needs one)`];
    const why = valueProblem(v ?? '', col === 0 ? ENTITY_ID_MAX : ATTRIBUTE_VALUE_MAX) ?? 'cannot be stored';
    return [line, `${where(line)}, column ${name}: ${col === 0 ? 'entity id' : 'value'} ${show(v ?? '')} ${why}`];
  });
  const dups = (
    await c.runAndReadAll(`SELECT entity_id, min(line)::DOUBLE, (list(line ORDER BY line))[2]::DOUBLE AS second FROM dim_rows
      WHERE entity_id IS NOT NULL AND entity_id <> '' GROUP BY entity_id HAVING count(*) > 1 ORDER BY second LIMIT ${MAX_PROBLEMS}`)
  ).getRowsJS() as [string, number, number][];
  for (const [id, first, second] of dups)
    problems.push([second, `${where(second)}, column ${ENTITY_COLUMN}: entity id ${show(id)} repeats ${ref(first)} (each entity id once per table)`]);
  return problems
    .sort((a, b) => a[0] - b[0])
    .slice(0, MAX_PROBLEMS)
    .map(([, p]) => p);
}

async function stageCsv(c: DuckDBConnection, file: string): Promise<string[]> {
  const records = readCsv(file);
  const head = await records.next();
  if (head.done) throw new DimensionTableError(file, [`${file}:1: the file is empty; the first line must be a header starting with ${ENTITY_COLUMN}`]);
  const names = head.value.fields;
  const hp = headerProblems(names, (i) => `${file}:${head.value.line}, column ${i + 1}`);
  if (hp.length) throw new DimensionTableError(file, hp);
  const attributes = names.slice(1);
  await c.run(`CREATE OR REPLACE TEMP TABLE dim_rows (line BIGINT, ${[ENTITY_COLUMN, ...attributes].map((n) => `${sqlIdent(n)} VARCHAR`).join(', ')})`);
  const app = await c.createAppender('dim_rows', 'main', 'temp');
  const problems: string[] = [];
  try {
    for await (const r of records) {
      if (r.fields.length !== names.length) {
        problems.push(`${file}:${r.line}: ${r.fields.length} field(s), the header has ${names.length} (${names.join(', ')})`);
        if (problems.length >= MAX_PROBLEMS) break;
        continue;
      }
      if (problems.length) continue;
      app.appendBigInt(BigInt(r.line));
      for (let i = 0; i < r.fields.length; i++) {
        const v = r.fields[i]!;
        if (v === '' && i > 0) app.appendNull();
        else app.appendVarchar(v);
      }
      app.endRow();
    }
  } finally {
    app.closeSync();
  }
  if (problems.length) throw new DimensionTableError(file, problems);
  return attributes;
}

async function stageParquet(c: DuckDBConnection, file: string): Promise<string[]> {
  let schema: [string, string][];
  try {
    schema = (await c.runAndReadAll(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(${sqlString(file)}))`)).getRowsJS() as [
      string,
      string,
    ][];
  } catch (err) {
    throw new DimensionTableError(file, [`not a readable Parquet file: ${(err as Error).message}`]);
  }
  const names = schema.map(([n]) => n);
  const where = (i: number) => `${file}, column ${i + 1}${names[i] ? ` (${names[i]})` : ''}`;
  const problems = headerProblems(names, where);
  for (const [i, [name, type]] of schema.entries())
    if (type !== 'VARCHAR' && problems.length < MAX_PROBLEMS)
      problems.push(
        `${where(i)}: type ${type}, not a string: ${name === ENTITY_COLUMN ? 'entity ids' : 'attribute values'} must be strings (write them as Parquet strings)`,
      );
  if (problems.length) throw new DimensionTableError(file, problems);
  const attributes = names.slice(1);
  await c.run(`CREATE OR REPLACE TEMP TABLE dim_rows AS SELECT file_row_number + 1 AS line, ${sqlIdent(ENTITY_COLUMN)},
    ${attributes.map((a) => `nullif(${sqlIdent(a)}, '') AS ${sqlIdent(a)}`).join(', ')} FROM read_parquet(${sqlString(file)}, file_row_number = true)`);
  return attributes;
}

/**
 * Validates `input` and writes the version file to `outFile`. Throws DimensionTableError listing the first
 * MAX_PROBLEMS problems; nothing is written then.
 */
export async function prepareTable(input: string, outFile: string): Promise<PreparedTable> {
  const format = formatOf(input);
  return withConnection(async (c) => {
    try {
      const attributes = format === 'csv' ? await stageCsv(c, input) : await stageParquet(c, input);
      const where = format === 'csv' ? (line: number) => `${input}:${line}` : (row: number) => `${input}, row ${row}`;
      const ref = (n: number) => `${format === 'csv' ? 'line' : 'row'} ${n}`;
      const problems = await rowProblems(c, attributes, where, ref);
      if (problems.length) throw new DimensionTableError(input, problems);
      const cols = [ENTITY_COLUMN, ...attributes].map(sqlIdent).join(', ');
      await copyToParquet(c, `SELECT ${cols} FROM dim_rows ORDER BY ${sqlIdent(ENTITY_COLUMN)}`, outFile);
      const [[rows]] = (await c.runAndReadAll('SELECT count(*)::DOUBLE FROM dim_rows')).getRowsJS() as [[number]];
      return { file: outFile, rows, attributes, format };
    } finally {
      await c.run('DROP TABLE IF EXISTS dim_rows');
    }
  });
}

export interface LoadInput {
  input: string;
  table: string;
  /** Folder for the validated version file (removed afterwards). */
  tempDir: string;
}

/** Validates `input` and publishes it as the next version of `table`; returns the version's manifest. */
export async function loadDimensionTable(s3: S3Client, bucket: string, o: LoadInput): Promise<DimensionManifest> {
  if (!TABLE_NAME_PATTERN.test(o.table))
    throw new PermanentError(`--name must be ${TABLE_NAME_ACCEPTS}, got ${JSON.stringify(o.table)}`, 'dimension_name_invalid');
  mkdirSync(o.tempDir, { recursive: true });
  const out = path.join(o.tempDir, `${o.table}-${process.pid}-${Date.now()}.parquet`);
  try {
    const t = await prepareTable(o.input, out);
    return await publishVersion(s3, bucket, {
      table: o.table,
      file: t.file,
      rows: t.rows,
      attributes: t.attributes,
      source: { file: path.basename(o.input), format: t.format },
    });
  } finally {
    await rm(out, { force: true });
  }
}
