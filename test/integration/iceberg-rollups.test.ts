// The Iceberg table sluice.rollups over the cold bucket's hourly and daily rollup files, against the real S3
// emulator, Redis and InfluxDB: registered where they are by the commit job and by the rollup job as it writes
// them, listed and loaded through the REST catalog (iceberg-js), read by icebird and compared with DuckDB over the
// rollup files — after a file is rewritten in place (swapped for its new version), deleted, unreadable, after a
// failed commit in the rollup job, and after snapshot expiry.
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { IPoint } from 'influx';
import { IcebergRestCatalog } from 'iceberg-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config.js';
import { createS3 } from '../../shared/clients/aws.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { createInflux } from '../../shared/clients/influx.js';
import { createRedis } from '../../shared/clients/redis.js';
import { DAY_MS, HOUR_MS, rollupKey, type RollupRow } from '../../shared/contracts/cold-layout.js';
import { icebergLayout } from '../../shared/contracts/iceberg-table.js';
import { MEASUREMENT_1M, TAG_ENTITY, TAG_TYPE } from '../../shared/contracts/influx-series.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { startQuery } from '../../query/main.js';
import { runRollup } from '../../workers/cold/rollup.js';
import { openArchiveTable, runCommitJob } from '../../workers/iceberg/commit-job.js';
import { maintainTable } from '../../workers/iceberg/maintenance.js';
import { testConfig } from '../support/config.js';
import { TEST_ENDPOINTS } from '../support/endpoints.js';
import { putRollupFile, rollupFileRows, rollupTableFiles, rollupTableRows, routeS3ToLocal, tableView } from '../support/iceberg.js';

const log = createLogger('iceberg-rollups-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const D1 = Date.parse('2026-01-10T00:00:00Z');
const D2 = D1 + DAY_MS;
const MONTH = Date.parse('2026-01-01T00:00:00Z');

let restore: () => void;
beforeAll(() => {
  restore = routeS3ToLocal(TEST_ENDPOINTS.awsEndpoint);
});
afterAll(() => restore());

/** Rollup rows of two series over `periods` (hour or day starts), with values derived from `seed`. */
function rows(periods: readonly number[], seed: number): RollupRow[] {
  return periods.flatMap((p, i) => [
    { entityId: 'video-A', eventType: 'view', periodMs: p, count: seed + i, sum: (seed + i) * 1.5, min: -1, max: seed + i },
    { entityId: "o'brien", eventType: 'like', periodMs: p, count: 1, sum: 0.25 * seed, min: 0.25, max: 0.25 },
  ]);
}
const hours = (day: number, n: number) => Array.from({ length: n }, (_, h) => day + h * HOUR_MS);

async function commit(cfg: Config) {
  const t = openArchiveTable(cfg, log);
  try {
    return await runCommitJob(t.deps);
  } finally {
    t.close();
  }
}

async function currentMetadata(cfg: Config): Promise<Record<string, unknown>> {
  const t = openArchiveTable(cfg, log);
  try {
    return (await t.deps.rollups.current())!.metadata as unknown as Record<string, unknown>;
  } finally {
    t.close();
  }
}

/** The table equals the rollup files: the same rows (icebird vs DuckDB), each file once, each with its resolution. */
async function expectTableIsRollupFiles(cfg: Config, metadata?: Record<string, unknown>): Promise<void> {
  const m = metadata ?? (await currentMetadata(cfg));
  const files = await rollupFileRows(cfg);
  expect(await rollupTableRows(m)).toEqual(files.rows);
  const held = await rollupTableFiles(m);
  expect(new Map([...held].map(([p, part]) => [p, part.resolution]))).toEqual(files.files);
}

describe('the Iceberg table sluice.rollups', () => {
  let cfg: Config;
  let query: Service;
  let catalog: IcebergRestCatalog;
  beforeAll(async () => {
    cfg = await testConfig();
    query = await startQuery(cfg, log);
    catalog = new IcebergRestCatalog({ baseUrl: `${query.url}/iceberg` });
  });
  afterAll(() => query?.close());

  it('registers the hourly and daily files where they are; the catalog lists both tables and serves it; icebird reads what DuckDB reads', async () => {
    await putRollupFile(cfg, '1h', D1, rows(hours(D1, 24), 10));
    await putRollupFile(cfg, '1h', D2, rows(hours(D2, 5), 20));
    await putRollupFile(cfg, '1d', MONTH, rows([MONTH, MONTH + DAY_MS, D1, D2], 100));
    const s = await commit(cfg);
    expect(s.rollups).toMatchObject({ version: 2, added: 3, replaced: 0, removed: 0 });
    expect(s.problems).toEqual([]);

    expect(await catalog.listTables({ namespace: ['sluice'] })).toEqual([
      { namespace: ['sluice'], name: 'events' },
      { namespace: ['sluice'], name: 'rollups' },
    ]);
    const metadata = (await catalog.loadTable({ namespace: ['sluice'], name: 'rollups' })) as unknown as Record<string, unknown> & {
      schemas: { fields: { id: number; name: string; type: string }[] }[];
      properties: Record<string, string>;
      'partition-specs': unknown[];
      snapshots: { summary: Record<string, string> }[];
    };
    expect(metadata.location).toBe(`s3://${cfg.SLUICE_RAW_BUCKET}/iceberg/rollups`);
    expect(metadata.schemas[0]!.fields.map((f) => `${f.id}:${f.name}:${f.type}`)).toEqual([
      '1:entity_id:string',
      '2:event_type:string',
      '3:period_start:timestamp',
      '4:count:long',
      '5:sum:double',
      '6:min:double',
      '7:max:double',
      '8:resolution:string',
    ]);
    // resolution is not in the files: the name mapping leaves it out, the identity partition supplies it.
    expect((JSON.parse(metadata.properties['schema.name-mapping.default']!) as { names: string[] }[]).map((f) => f.names[0])).not.toContain('resolution');
    expect(metadata['partition-specs']).toEqual([
      {
        'spec-id': 0,
        fields: [
          { name: 'resolution', transform: 'identity', 'source-id': 8, 'field-id': 1000 },
          { name: 'period_start_day', transform: 'day', 'source-id': 3, 'field-id': 1001 },
        ],
      },
      {
        'spec-id': 1,
        fields: [
          { name: 'resolution', transform: 'identity', 'source-id': 8, 'field-id': 1000 },
          { name: 'period_start_month', transform: 'month', 'source-id': 3, 'field-id': 1002 },
        ],
      },
    ]);
    expect(metadata.snapshots[0]!.summary).toMatchObject({ operation: 'append', 'added-data-files': '3', 'total-records': String(2 * (24 + 5 + 4)) });
    const held = await rollupTableFiles(metadata);
    expect(held.get(`s3://${cfg.SLUICE_COLD_BUCKET}/${rollupKey('1h', D1)}`)).toMatchObject({ resolution: '1h' });
    expect(held.get(`s3://${cfg.SLUICE_COLD_BUCKET}/${rollupKey('1d', MONTH)}`)).toMatchObject({ resolution: '1d', period_start_month: (2026 - 1970) * 12 });
    await expectTableIsRollupFiles(cfg, metadata);
    // Through version-hint.text too, and the data files stayed where they were: in the cold bucket.
    const view = await tableView(cfg, 'rollups');
    expect(view.version).toBe(2);
    expect(view.files.every((f) => f.startsWith(`s3://${cfg.SLUICE_COLD_BUCKET}/rollups/`))).toBe(true);
    expect((await commit(cfg)).rollups).toMatchObject({ version: 2, added: 0, replaced: 0, removed: 0 });
  });

  it('a file rewritten in place is swapped for its new version (overwrite), a deleted one removed (delete), an unreadable one reported', async () => {
    await putRollupFile(cfg, '1h', D2, rows(hours(D2, 9), 30)); // the day's later hours rolled up: same key, new content
    const s = await commit(cfg);
    expect(s.rollups).toMatchObject({ version: 3, added: 0, replaced: 1, removed: 0 });
    const view = await tableView(cfg, 'rollups');
    expect(view.operations).toEqual(['append', 'overwrite']);
    expect(new Set(view.files).size).toBe(3);
    await expectTableIsRollupFiles(cfg);

    // Same size, new content (two hours' aggregates swapped): the ETag tells the versions apart, not the size.
    const cold = new ColdStorage(cfg);
    const sizeBefore = (await cold.stat(rollupKey('1h', D2)))!.bytes;
    const swapped = rows(hours(D2, 9), 30);
    for (const f of ['count', 'sum', 'max'] as const) [swapped[0]![f], swapped[2]![f]] = [swapped[2]![f], swapped[0]![f]];
    await putRollupFile(cfg, '1h', D2, swapped);
    expect((await cold.stat(rollupKey('1h', D2)))!.bytes).toBe(sizeBefore);
    expect((await commit(cfg)).rollups).toMatchObject({ version: 4, replaced: 1 });
    await expectTableIsRollupFiles(cfg);

    await new ColdStorage(cfg).remove([rollupKey('1d', MONTH)]);
    expect((await commit(cfg)).rollups).toMatchObject({ version: 5, removed: 1 });
    expect((await tableView(cfg, 'rollups')).operations).toEqual(['append', 'overwrite', 'overwrite', 'delete']);
    await expectTableIsRollupFiles(cfg);

    const s3 = createS3(cfg);
    const bad = rollupKey('1h', D1 - DAY_MS);
    await s3.send(new PutObjectCommand({ Bucket: cfg.SLUICE_COLD_BUCKET, Key: bad, Body: 'not parquet' }));
    s3.destroy();
    const withBad = await commit(cfg);
    expect(withBad.rollups).toMatchObject({ version: 5, added: 0 });
    expect(withBad.problems).toEqual([
      expect.stringMatching(new RegExp(`^s3://${cfg.SLUICE_COLD_BUCKET}/${bad} is not a readable Parquet file .*; not registered$`)),
    ]);
    await new ColdStorage(cfg).remove([bad]);
  });

  it('expiry leaves the current snapshot alone, and the table readable through the pointer and the catalog', async () => {
    const t = openArchiveTable(cfg, log);
    try {
      const s = await maintainTable(t.deps.rollups, t.deps.maintenance!, { nowMs: Date.now() + 200 * HOUR_MS });
      expect(s).toMatchObject({ table: 'sluice.rollups', snapshots: 1, expiredSnapshots: 3 });
    } finally {
      t.close();
    }
    await expectTableIsRollupFiles(cfg);
    const loaded = (await catalog.loadTable({ namespace: ['sluice'], name: 'rollups' })) as unknown as Record<string, unknown>;
    await expectTableIsRollupFiles(cfg, loaded);
    expect(icebergLayout('rollups').pointerKey(cfg.SLUICE_REDIS_PREFIX)).toBe(`${cfg.SLUICE_REDIS_PREFIX}iceberg:{sluice.rollups}:pointer`);
  });
});

describe('the rollup job and sluice.rollups', () => {
  const MIN = 60_000;
  const DAY0 = Math.floor(Date.now() / DAY_MS) * DAY_MS - 2 * DAY_MS;
  let seq = 0;
  const partial = (entity: string, minuteMs: number, count: number, sum: number): IPoint => ({
    measurement: MEASUREMENT_1M,
    tags: { [TAG_ENTITY]: entity, [TAG_TYPE]: 'view' },
    fields: { count, sum, min: sum / count, max: sum / count },
    timestamp: (BigInt(minuteMs) * 1_000_000n + BigInt(1_000 + seq++ * 7_919)).toString(),
  });

  it('commits each file as it writes it, and its new version after a rerun over late data', async () => {
    const cfg = await testConfig();
    const influx = createInflux(cfg);
    const pts: IPoint[] = [];
    for (const h of [1, 2, 7])
      for (let m = 0; m < 60; m += 9) pts.push(partial('e-1', DAY0 + h * HOUR_MS + m * MIN, 2, 8), partial('e-2', DAY0 + h * HOUR_MS + m * MIN, 1, 1));
    await influx.writePoints(pts, { database: cfg.SLUICE_INFLUX_DB, precision: 'n' });
    const range = { fromMs: DAY0, toMs: DAY0 + DAY_MS };
    await runRollup(cfg, { log, ...range, resolutions: ['1h', '1d'] });
    // No commit job ran: the rollup job committed its files.
    const first = await tableView(cfg, 'rollups');
    expect(first.files.sort()).toEqual([rollupKey('1d', DAY0), rollupKey('1h', DAY0)].map((k) => `s3://${cfg.SLUICE_COLD_BUCKET}/${k}`).sort());
    await expectTableIsRollupFiles(cfg);

    await influx.writePoints([partial('e-1', DAY0 + 3 * HOUR_MS, 5, 50)], { database: cfg.SLUICE_INFLUX_DB, precision: 'n' });
    await runRollup(cfg, { log, ...range, resolutions: ['1h'] });
    expect((await tableView(cfg, 'rollups')).operations).toEqual(['append', 'append', 'overwrite']);
    await expectTableIsRollupFiles(cfg);
    expect((await commit(cfg)).rollups).toMatchObject({ added: 0, replaced: 0, removed: 0 });
  });

  it('a commit that fails in the rollup job does not fail the job; the commit job registers the file later', async () => {
    const cfg = await testConfig();
    const influx = createInflux(cfg);
    await influx.writePoints([partial('e-1', DAY0 + 4 * HOUR_MS, 3, 9)], { database: cfg.SLUICE_INFLUX_DB, precision: 'n' });
    const redis = createRedis(cfg);
    const pointer = icebergLayout('rollups').pointerKey(cfg.SLUICE_REDIS_PREFIX);
    try {
      await redis.hset(pointer, 'version', 'garbage');
      const [summary] = await runRollup(cfg, { log, fromMs: DAY0, toMs: DAY0 + DAY_MS, resolutions: ['1h'] });
      expect(summary!.files).toEqual([rollupKey('1h', DAY0)]);
      await redis.del(pointer);
      expect((await commit(cfg)).rollups).toMatchObject({ added: 1 });
      await expectTableIsRollupFiles(cfg);
    } finally {
      redis.disconnect();
    }
  });
});
