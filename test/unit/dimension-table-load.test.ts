// The dimension table loader (embedded engine, no services): a valid CSV or Parquet table becomes the version file
// (entity_id first, sorted, empty values as NULL); every kind of bad input is refused with its file, line or row,
// and column, and nothing is written.
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openEngine, queryParquet, withConnection } from '../../shared/parquet.js';
import { DimensionTableError, prepareTable } from '../../workers/dimensions/table-load.js';
import { readCsv } from '../../workers/dimensions/csv.js';
import { MAX_ATTRIBUTES, decodeDimensionManifest, parseAttributeRollupKey, attributeRollupKey } from '../../shared/contracts/dimensions.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'dims-'));
let seq = 0;

function csv(text: string): string {
  const f = path.join(dir, `t${seq++}.csv`);
  writeFileSync(f, text);
  return f;
}

async function parquet(select: string): Promise<string> {
  const f = path.join(dir, `t${seq++}.parquet`);
  await withConnection((c) => c.run(`COPY (${select}) TO '${f}' (FORMAT parquet)`));
  return f;
}

/** The problems prepareTable reports for `file` (fails the test when it accepts the file). */
async function problems(file: string): Promise<string[]> {
  const out = path.join(dir, `out${seq++}.parquet`);
  try {
    await prepareTable(file, out);
  } catch (err) {
    expect(err).toBeInstanceOf(DimensionTableError);
    expect(existsSync(out)).toBe(false);
    return [...(err as DimensionTableError).problems];
  }
  throw new Error(`${file} was accepted`);
}

beforeAll(async () => {
  await openEngine({ tempDir: path.join(dir, 'tmp') });
});

describe('CSV reader', () => {
  it('reads quotes, doubled quotes, commas and newlines in quotes, CRLF, a BOM, and skips blank lines', async () => {
    const f = csv('\uFEFFa,b\r\n"x,1","say ""hi"""\r\n\r\n"multi\nline",\nlast,"q"');
    const got: { line: number; fields: string[] }[] = [];
    for await (const r of readCsv(f)) got.push(r);
    expect(got).toEqual([
      { line: 1, fields: ['a', 'b'] },
      { line: 2, fields: ['x,1', 'say "hi"'] },
      { line: 4, fields: ['multi\nline', ''] },
      { line: 6, fields: ['last', 'q'] },
    ]);
  });

  it('names the line of an unclosed quote and of a quote inside an unquoted field', async () => {
    const read = async (f: string) => {
      for await (const _ of readCsv(f));
    };
    const a = csv('a,b\n1,"open\n\n');
    await expect(read(a)).rejects.toThrow(`${a}:2, field 2: a quoted field that is never closed`);
    const b = csv('a,b\n1,2\n3,x"y\n');
    await expect(read(b)).rejects.toThrow(`${b}:3, field 2: a double quote inside an unquoted field`);
    const c = csv('a,b\n"1"x,2\n');
    await expect(read(c)).rejects.toThrow(`${c}:2, field 1: characters after the closing quote`);
  });
});

describe('dimension table loader', () => {
  it('writes a valid CSV as the version file: entity_id first, sorted, empty values as NULL', async () => {
    const out = path.join(dir, 'ok.parquet');
    const t = await prepareTable(csv('entity_id,channel,category\ne2,C2,\ne1,"C,1",music\n"e 3",,news\n'), out);
    expect(t).toMatchObject({ rows: 3, attributes: ['channel', 'category'], format: 'csv' });
    expect(await queryParquet(`SELECT * FROM read_parquet('${out}')`)).toEqual([
      { entity_id: 'e 3', channel: null, category: 'news' },
      { entity_id: 'e1', channel: 'C,1', category: 'music' },
      { entity_id: 'e2', channel: 'C2', category: null },
    ]);
  });

  it('takes Parquet with string columns', async () => {
    const out = path.join(dir, 'okp.parquet');
    const t = await prepareTable(await parquet(`SELECT 'e' || i AS entity_id, 'c' || (i % 3) AS channel FROM range(1000) t(i)`), out);
    expect(t).toMatchObject({ rows: 1000, attributes: ['channel'], format: 'parquet' });
    expect(await queryParquet(`SELECT count(DISTINCT entity_id)::INT AS n FROM read_parquet('${out}')`)).toEqual([{ n: 1000 }]);
  });

  it('refuses a header without entity_id first, naming the file, line and column', async () => {
    const f = csv('id,channel\n1,a\n');
    expect(await problems(f)).toEqual([`${f}:1, column 1: the first column must be entity_id, got "id"`]);
  });

  it('refuses empty, invalid and repeated attribute names, and a table without attributes', async () => {
    const f = csv('entity_id,,Channel,cat,cat,entity_id\n');
    expect(await problems(f)).toEqual([
      `${f}:1, column 2: empty attribute name`,
      `${f}:1, column 3: attribute name "Channel" must be lower-case letters, digits and _ (1–48, starting with a letter)`,
      `${f}:1, column 5: attribute "cat" repeats column 4`,
      `${f}:1, column 6: entity_id appears again (only the first column holds the entity id)`,
    ]);
    const g = csv('entity_id\ne1\n');
    expect(await problems(g)).toEqual([`${g}:1, column 1: no attribute column after entity_id: a table needs at least one (e.g. channel)`]);
  });

  it('refuses more attribute columns than the limit', async () => {
    const names = Array.from({ length: MAX_ATTRIBUTES + 1 }, (_, i) => `a${i}`);
    const f = csv(`entity_id,${names.join(',')}\n`);
    expect(await problems(f)).toEqual([`${f}:1, column 1: ${MAX_ATTRIBUTES + 1} attribute columns, more than the limit of ${MAX_ATTRIBUTES}`]);
  });

  it('refuses an empty file and a .parquet file that is not Parquet', async () => {
    const f = csv('');
    expect(await problems(f)).toEqual([`${f}:1: the file is empty; the first line must be a header starting with entity_id`]);
    const p = path.join(dir, 'fake.parquet');
    writeFileSync(p, 'entity_id,channel\n');
    expect(await problems(p)).toEqual(['the file is named .parquet but does not start with the Parquet magic bytes PAR1']);
  });

  it('refuses rows of the wrong width, with their lines', async () => {
    const f = csv('entity_id,channel,category\ne1,a,b\ne2,a\ne3,a,b,c\n');
    expect(await problems(f)).toEqual([
      `${f}:3: 2 field(s), the header has 3 (entity_id, channel, category)`,
      `${f}:4: 4 field(s), the header has 3 (entity_id, channel, category)`,
    ]);
  });

  it('refuses repeated entity ids, empty ones and values InfluxDB cannot carry, each with line and column', async () => {
    const f = csv(`entity_id,channel,category\ne1,a,b\n,x,y\ne2,"bad\u0001",y\ne1,a,b\ne3,a,"ends\\"\ne1,c,d\n`);
    expect(await problems(f)).toEqual([
      `${f}:3, column entity_id: empty entity id (every row needs one)`,
      `${f}:4, column channel: value "bad\\u0001" holds a control character (U+0001 at position 3)`,
      `${f}:5, column entity_id: entity id "e1" repeats line 2 (each entity id once per table)`,
      `${f}:6, column category: value "ends\\\\" ends in a backslash, which an InfluxDB tag value cannot hold`,
    ]);
  });

  it('refuses a value longer than the limit', async () => {
    const f = csv(`entity_id,channel\ne1,${'x'.repeat(300)}\n`);
    expect(await problems(f)).toEqual([`${f}:2, column channel: value "${'x'.repeat(60)}…" is 300 characters long, more than 256`]);
  });

  it('refuses Parquet columns that are not strings, and repeated ids by row', async () => {
    const p = await parquet(`SELECT 'e' || i AS entity_id, 'c' AS channel, (i * 1.5)::DOUBLE AS price FROM range(3) t(i)`);
    expect(await problems(p)).toEqual([`${p}, column 3 (price): type DOUBLE, not a string: attribute values must be strings (write them as Parquet strings)`]);
    const q = await parquet(`SELECT i AS entity_id, 'c' AS channel FROM range(3) t(i)`);
    expect(await problems(q)).toEqual([`${q}, column 1 (entity_id): type BIGINT, not a string: entity ids must be strings (write them as Parquet strings)`]);
    const d = await parquet(`SELECT * FROM (VALUES ('a', 'x'), ('b', 'y'), ('a', 'z')) t(entity_id, channel)`);
    expect(await problems(d)).toEqual([`${d}, row 3, column entity_id: entity id "a" repeats row 1 (each entity id once per table)`]);
  });
});

describe('dimension contract', () => {
  it('decodes only manifests of its version, naming where', () => {
    expect(() => decodeDimensionManifest('{"contractVersion":2}', 's3://b/k')).toThrow('s3://b/k has dimension contract version 2; this build reads version 1');
    expect(() => decodeDimensionManifest('nope', 's3://b/k')).toThrow('s3://b/k is not JSON');
    expect(() => decodeDimensionManifest('{"contractVersion":1,"table":"x"}', 's3://b/k')).toThrow(/s3:\/\/b\/k is not a dimension manifest: version/);
  });

  it('keeps attribute rollup keys apart from entity rollup keys and parses them back', () => {
    const t = Date.UTC(2026, 10, 24, 13);
    expect(attributeRollupKey('channel', '1h', t)).toBe('rollups-by/channel/1h/dt=2026-11-24/part.parquet');
    expect(attributeRollupKey('channel', '1d', t)).toBe('rollups-by/channel/1d/dt=2026-11/part.parquet');
    expect(parseAttributeRollupKey('rollups-by/channel/1d/dt=2026-11/part.parquet')).toEqual({
      attribute: 'channel',
      res: '1d',
      startMs: Date.UTC(2026, 10, 1),
    });
    expect(parseAttributeRollupKey('rollups/1h/dt=2026-11-24/part.parquet')).toBeUndefined();
  });
});
