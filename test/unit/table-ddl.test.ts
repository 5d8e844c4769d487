// Generated table definitions of the raw archive (shared/contracts/table-ddl.ts, `sluice schema`): every column of
// the contract with its engine type and doc, the partition columns of the raw key layout, per-engine syntax and
// quoting, clear errors — and the DuckDB definition run for real over a Hive folder holding a v1 and a v3 file, in a
// session whose machine zone is not UTC.
import { DuckDBInstance } from '@duckdb/node-api';
import { mkdirSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { schemaText } from '../../cli/schema-command.js';
import { encodeEventLine } from '../../shared/contracts/event-line.js';
import { EVENT_COLUMNS, RAW_EVENTS_PREFIX, partitionOf, rawEventsKey } from '../../shared/contracts/parquet-schema.js';
import { DDL_FORMATS, parseDdlFormat, tableDdl, type DdlFormat } from '../../shared/contracts/table-ddl.js';
import { openEngine, queryParquet } from '../../shared/parquet.js';
import { writeEventBatches } from '../../ingest/parquet-batch-writer.js';
import { randomEvents } from '../support/batches.js';

process.env.TZ = 'Asia/Tokyo'; // the analyst's machine: not UTC

const S3 = 's3://sluice-raw/events/';
const ddl = (format: DdlFormat, extra: Partial<Parameters<typeof tableDdl>[1]> = {}) =>
  tableDdl(format, { location: S3, ...(format === 'bigquery' ? { connection: 'aws-us-east-1.sluice' } : {}), ...extra });

const TYPES: Record<DdlFormat, Record<string, string>> = {
  duckdb: { event_id: '::VARCHAR', event_time: '::TIMESTAMPTZ', value: '::DOUBLE', dims: '::MAP(VARCHAR, VARCHAR)', schema_version: '::INTEGER' },
  athena: {
    event_id: '`event_id` string',
    event_time: '`event_time` timestamp',
    value: '`value` double',
    dims: '`dims` map<string,string>',
    schema_version: '`schema_version` int',
  },
  spark: {
    event_id: 'event_id STRING',
    event_time: 'event_time TIMESTAMP',
    value: 'value DOUBLE',
    dims: 'dims MAP<STRING, STRING>',
    schema_version: 'schema_version INT',
  },
  bigquery: {
    event_id: 'event_id STRING',
    event_time: 'event_time TIMESTAMP',
    value: 'value FLOAT64',
    dims: 'dims STRUCT<key_value ARRAY<STRUCT<key STRING, value STRING>>>',
    schema_version: 'schema_version INT64',
  },
};

describe('generated table definitions', () => {
  it.each(DDL_FORMATS)('%s: every contract column with its engine type and doc, in contract order', (format) => {
    const text = ddl(format);
    let at = -1;
    for (const c of EVENT_COLUMNS) {
      const i = text.indexOf(c.name, at + 1);
      expect(i, `${c.name} after the previous column`).toBeGreaterThan(at);
      at = i;
      expect(text).toContain(c.doc.replaceAll("'", format === 'duckdb' ? "''" : "\\'"));
    }
    for (const [name, typed] of Object.entries(TYPES[format])) expect(text, name).toContain(typed);
    expect(text).toContain('schema v3');
  });

  it('the partition columns are those of the raw key layout: dt as a date, hour as an integer', () => {
    const key = rawEventsKey(partitionOf(Date.UTC(2026, 0, 2, 3)), 'n', 'u');
    expect(key.startsWith(`${RAW_EVENTS_PREFIX}dt=2026-01-02/hour=03/`)).toBe(true);
    expect(ddl('duckdb')).toContain(
      "read_parquet('s3://sluice-raw/events/dt=*/hour=*/*.parquet', hive_partitioning = true, union_by_name = true, hive_types = {'dt': DATE, 'hour': INTEGER})",
    );
    expect(ddl('athena')).toContain('PARTITIONED BY (`dt` string COMMENT');
    expect(ddl('athena')).toContain('`hour` int COMMENT');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Athena's own ${column} placeholders
    expect(ddl('athena')).toContain("'storage.location.template' = 's3://sluice-raw/events/dt=${dt}/hour=${hour}/'");
    expect(ddl('athena')).toContain("'projection.hour.digits' = '2'");
    expect(ddl('spark')).toMatch(
      /dt DATE COMMENT .*\n {2}hour INT COMMENT .*\n\)\nUSING parquet\nPARTITIONED BY \(dt, hour\)\nLOCATION 's3:\/\/sluice-raw\/events\/';/,
    );
    expect(ddl('bigquery')).toContain('WITH PARTITION COLUMNS (dt DATE, hour INT64)\nWITH CONNECTION `aws-us-east-1.sluice`');
    expect(ddl('bigquery')).toContain("uris = ['s3://sluice-raw/events/*'],\n  hive_partition_uri_prefix = 's3://sluice-raw/events',");
  });

  it('tables: each format its default, or the given one', () => {
    expect(ddl('duckdb')).toContain('CREATE OR REPLACE VIEW events AS');
    expect(ddl('athena')).toContain('CREATE EXTERNAL TABLE IF NOT EXISTS sluice_events (');
    expect(ddl('spark', { table: 'analytics.events' })).toContain('CREATE TABLE IF NOT EXISTS analytics.events (');
    expect(ddl('bigquery', { table: 'proj.ds.events' })).toContain('CREATE EXTERNAL TABLE IF NOT EXISTS `proj.ds.events` (');
  });

  it('quotes docs per dialect', () => {
    const columns = [{ name: 'x', duckdbType: 'VARCHAR', doc: "it's a \\ test" }];
    expect(ddl('duckdb', { columns })).toContain("-- it's a \\ test");
    expect(ddl('athena', { columns })).toContain("COMMENT 'it\\'s a \\\\ test'");
    expect(ddl('spark', { columns })).toContain("COMMENT 'it\\'s a \\\\ test'");
    expect(ddl('bigquery', { columns })).toContain("description = 'it\\'s a \\\\ test'");
  });

  it('says what is wrong: unknown format, type, table name, location, a BigQuery s3 location without a connection', () => {
    expect(() => parseDdlFormat('hive')).toThrow('--format must be one of duckdb, athena, spark, bigquery, got "hive"');
    expect(() => ddl('spark', { columns: [{ name: 'blob', duckdbType: 'BLOB', doc: '' }] })).toThrow(
      'column blob has DuckDB type BLOB, which the spark definition cannot map: add it to COLUMN_TYPES in shared/contracts/table-ddl.ts',
    );
    expect(() => ddl('athena', { table: 'x; DROP TABLE y' })).toThrow(/table name must be letters, digits and _/);
    expect(() => ddl('duckdb', { location: 's3://sluice-raw/events' })).toThrow(/location must be the raw layout's folder .* ending in "\/"/);
    expect(() => ddl('duckdb', { location: "s3://b/it's/" })).toThrow(/location must be/);
    expect(() => tableDdl('bigquery', { location: S3 })).toThrow('BigQuery reads s3://sluice-raw/events/ only through a BigQuery Omni connection to AWS');
    expect(() => tableDdl('bigquery', { location: 'gs://b/events/' })).not.toThrow();
  });

  it('sluice schema: the location defaults to the configured raw bucket', () => {
    expect(schemaText({ SLUICE_RAW_BUCKET: 'my-raw' }, { format: 'athena' })).toContain("LOCATION 's3://my-raw/events/'");
    expect(() => schemaText({ SLUICE_RAW_BUCKET: 'my-raw' }, { format: 'presto' })).toThrow(/--format must be one of/);
  });
});

describe('the DuckDB definition, run', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ddl-'));
  const root = path.join(dir, 'events/');
  const t0 = Date.UTC(2026, 0, 10, 23, 30); // 08:30 the next day in Tokyo: a zone leak would move the day too
  const v1Events = randomEvents(40, { start: t0, minutes: 20, entities: 3, idPrefix: 'one' });
  const v3Events = randomEvents(60, { start: t0, minutes: 20, entities: 3, idPrefix: 'three' });

  beforeAll(async () => {
    await openEngine({ tempDir: path.join(dir, 'tmp') });
    const hour = path.join(dir, rawEventsKey(partitionOf(t0), 'ingest-1', 'x'));
    mkdirSync(path.dirname(hour), { recursive: true });
    const values = v1Events.map((e) => `('${e.eventId}', '${e.entityId}', '${e.eventType}', ${e.timestamp}, ${e.value})`).join(', ');
    await queryParquet(`COPY (SELECT id AS event_id, ent AS entity_id, typ AS event_type, epoch_ms(ts)::TIMESTAMP_MS AS event_time, v::DOUBLE AS value,
        NULL::MAP(VARCHAR, VARCHAR) AS dims, epoch_ms(ts)::TIMESTAMP_MS AS ingest_time, 'p' AS producer, 1::INTEGER AS schema_version
        FROM (VALUES ${values}) t(id, ent, typ, ts, v)) TO '${hour.replace('-x.parquet', '-v1.parquet')}' (FORMAT parquet)`);
    writeFileSync(path.join(dir, 'lines.ndjson'), v3Events.map((e) => encodeEventLine(e, t0, 'p')).join(''));
    const [w] = await writeEventBatches([path.join(dir, 'lines.ndjson')], path.join(dir, 'out'));
    renameSync(w!.file, hour.replace('-x.parquet', '-v3.parquet'));
  });

  it('creates a view over v1 and v3 files with the right instants and partition values', async () => {
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    try {
      const zone = (await c.runAndReadAll("SELECT current_setting('TimeZone')")).getRowsJS()[0]![0];
      expect(zone).toBe('Asia/Tokyo');
      await c.run(tableDdl('duckdb', { location: root }));
      const rows = (
        await c.runAndReadAll('SELECT event_id, epoch_ms(event_time)::DOUBLE AS t, dt::VARCHAR AS dt, hour, typeof(hour) AS ht, session_id FROM events')
      ).getRowObjectsJS();
      expect(rows).toHaveLength(100);
      const expected = new Map([...v1Events, ...v3Events].map((e) => [e.eventId, e.timestamp]));
      for (const r of rows) {
        expect(r.t, String(r.event_id)).toBe(expected.get(String(r.event_id)));
        expect(r).toMatchObject({ dt: '2026-01-10', hour: 23, ht: 'INTEGER', session_id: null });
      }
      const described = (await c.runAndReadAll('DESCRIBE events')).getRowObjectsJS().map((r) => `${r.column_name} ${r.column_type}`);
      expect(described).toEqual([
        ...EVENT_COLUMNS.map((col) => `${col.name} ${col.duckdbType === 'TIMESTAMPTZ' ? 'TIMESTAMP WITH TIME ZONE' : col.duckdbType}`),
        'dt DATE',
        'hour INTEGER',
      ]);
    } finally {
      c.closeSync();
    }
  });
});
