// The Iceberg REST catalog of the query API (/iceberg/v1), read with a REST catalog client (iceberg-js) and the
// table it names read with an independent Iceberg reader (icebird: manifests and Parquet data from the real S3
// emulator): the rows equal the archive as DuckDB reads it, each event id once — after appends, after a compaction,
// without Redis (the published version), and behind query API keys.
import net from 'node:net';
import { IcebergError, IcebergRestCatalog } from 'iceberg-js';
import { icebergRead } from 'icebird';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config.js';
import { DAY_MS } from '../../shared/contracts/cold-layout.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { startQuery } from '../../query/main.js';
import { runCompaction } from '../../workers/cold/compaction.js';
import { openArchiveTable, runCommitJob } from '../../workers/iceberg/commit-job.js';
import { testConfig } from '../support/config.js';
import { randomEvents } from '../support/batches.js';
import { TEST_ENDPOINTS } from '../support/endpoints.js';
import { archiveBatches, archiveRows, routeS3ToLocal } from '../support/iceberg.js';

const log = createLogger('iceberg-catalog-test', process.env.SLUICE_LOG_LEVEL ?? 'silent');
const OLD_DAY = Math.floor(Date.now() / DAY_MS) * DAY_MS - 3 * DAY_MS;
const OLD_DT = new Date(OLD_DAY).toISOString().slice(0, 10);
const DT = '2026-01-10';
const START = Date.parse(`${DT}T08:00:00Z`);

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function commit(cfg: Config): Promise<void> {
  const t = openArchiveTable(cfg, log);
  try {
    await runCommitJob(t.deps);
  } finally {
    t.close();
  }
}

/** The table's rows read by icebird from the metadata the catalog returned, by event id: [time ms, entity, value]. */
async function rowsOf(metadata: Record<string, unknown>): Promise<Map<string, [number, string, number]>> {
  const rows = await icebergRead({ tableUrl: String(metadata.location), metadata: metadata as never });
  const out = new Map<string, [number, string, number]>();
  for (const r of rows) {
    const id = String(r.event_id);
    const t = r.event_time instanceof Date ? r.event_time.getTime() : Number(r.event_time);
    out.set(out.has(id) ? `${id}#dup${out.size}` : id, [t, String(r.entity_id), Number(r.value)]);
  }
  return out;
}

let restore: () => void;
beforeAll(() => {
  restore = routeS3ToLocal(TEST_ENDPOINTS.awsEndpoint);
});
afterAll(() => restore());

describe('the Iceberg REST catalog', () => {
  let cfg: Config;
  let query: Service;
  let catalog: IcebergRestCatalog;
  const day1 = randomEvents(700, { start: START, minutes: 150, entities: 6, idPrefix: 'a' });
  const old = randomEvents(500, { start: OLD_DAY + 3_600_000, minutes: 120, entities: 6, idPrefix: 'o' });

  beforeAll(async () => {
    cfg = await testConfig({ SLUICE_RECONCILE_GRACE: '0s' });
    query = await startQuery(cfg, log);
    catalog = new IcebergRestCatalog({ baseUrl: `${query.url}/iceberg` });
  });
  afterAll(() => query?.close());

  it('before the first commit: the namespace exists, the table does not (404 NoSuchTableException)', async () => {
    expect(await catalog.listNamespaces()).toEqual([{ namespace: ['sluice'] }]);
    expect(await catalog.listTables({ namespace: ['sluice'] })).toEqual([]);
    const err = await catalog.loadTable({ namespace: ['sluice'], name: 'events' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IcebergError);
    expect(err).toMatchObject({ status: 404, icebergType: 'NoSuchTableException' });
  });

  it('config, namespaces and tables as the protocol defines them; unknown ones answer 404 with the error model', async () => {
    await archiveBatches(cfg, day1);
    await commit(cfg);
    const config = await (await fetch(`${query.url}/iceberg/v1/config`)).json();
    expect(config).toEqual({ defaults: {}, overrides: {}, endpoints: expect.arrayContaining(['GET /v1/{prefix}/namespaces/{namespace}/tables/{table}']) });
    expect(await catalog.loadNamespaceMetadata({ namespace: ['sluice'] })).toMatchObject({ properties: expect.any(Object) });
    expect(await catalog.listTables({ namespace: ['sluice'] })).toEqual([
      { namespace: ['sluice'], name: 'events' },
      { namespace: ['sluice'], name: 'rollups' },
    ]);
    expect(await catalog.tableExists({ namespace: ['sluice'], name: 'events' })).toBe(true);
    expect(await catalog.tableExists({ namespace: ['sluice'], name: 'other' })).toBe(false);
    await expect(catalog.listTables({ namespace: ['nope'] })).rejects.toMatchObject({ status: 404, icebergType: 'NoSuchNamespaceException' });
    const res = await fetch(`${query.url}/iceberg/v1/namespaces/sluice/views`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('BadRequestException');
  });

  it('LoadTableResult: metadata location and metadata of the current version; icebird reads the archive from it, each event once', async () => {
    const res = await fetch(`${query.url}/iceberg/v1/namespaces/sluice/tables/events`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { 'metadata-location': string; metadata: Record<string, unknown>; config: Record<string, string> };
    expect(body['metadata-location']).toMatch(new RegExp(`^s3://${cfg.SLUICE_RAW_BUCKET}/iceberg/events/metadata/00002-[0-9a-f-]+\\.metadata\\.json$`));
    expect(body.config).toMatchObject({ 's3.endpoint': cfg.AWS_ENDPOINT_URL, 's3.path-style-access': 'true' });
    expect(res.headers.get('etag')).toBe('"v2"');
    expect((await fetch(`${query.url}/iceberg/v1/namespaces/sluice/tables/events`, { headers: { 'if-none-match': '"v2"' } })).status).toBe(304);
    const metadata = await catalog.loadTable({ namespace: ['sluice'], name: 'events' });
    expect(metadata).toEqual(body.metadata);
    const rows = await rowsOf(body.metadata);
    expect(rows.size).toBe(day1.length);
    expect(rows).toEqual(await archiveRows(cfg, [DT]));
  });

  it('after more batches and a compaction the catalog serves the new version, still equal to the archive', async () => {
    await archiveBatches(cfg, old);
    await commit(cfg);
    await runCompaction(cfg, { log, days: [OLD_DT] });
    const metadata = (await catalog.loadTable({ namespace: ['sluice'], name: 'events' })) as unknown as Record<string, unknown> & {
      snapshots: { summary: { operation: string } }[];
    };
    expect(metadata.snapshots.map((s) => s.summary.operation)).toEqual(['append', 'append', 'replace']);
    const rows = await rowsOf(metadata);
    expect(rows.size).toBe(day1.length + old.length);
    expect(rows).toEqual(await archiveRows(cfg, [DT, OLD_DT]));
  });

  it('without Redis the catalog serves the version published in S3', async () => {
    const noRedis = await startQuery({ ...cfg, SLUICE_REDIS_URL: `redis://127.0.0.1:${await closedPort()}` }, log);
    try {
      const res = await fetch(`${noRedis.url}/iceberg/v1/namespaces/sluice/tables/events`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { 'metadata-location': string; metadata: Record<string, unknown> };
      expect(body['metadata-location']).toBe(`s3://${cfg.SLUICE_RAW_BUCKET}/iceberg/events/metadata/v4.metadata.json`);
      const viaPointer = await catalog.loadTable({ namespace: ['sluice'], name: 'events' });
      expect(body.metadata).toEqual(viaPointer);
    } finally {
      await noRedis.close();
    }
  });
});

describe('the Iceberg REST catalog behind query API keys', () => {
  let cfg: Config;
  let query: Service;
  beforeAll(async () => {
    const base = await testConfig({
      SLUICE_RECONCILE_GRACE: '0s',
      SLUICE_QUERY_API_KEYS: 'analyst:k-analyst-0123456789,partner:k-partner-0123456789',
      SLUICE_QUERY_KEY_SCOPES: 'partner:entity=acme-',
    });
    cfg = base;
    await archiveBatches(cfg, randomEvents(50, { start: START, minutes: 10, entities: 2 }));
    await commit(cfg);
    query = await startQuery(cfg, log);
  });
  afterAll(() => query?.close());

  it('needs a bearer key (401 without, 403 for a wrong one or one limited to some entities); the right key reads the table', async () => {
    const url = `${query.url}/iceberg`;
    const load = (auth?: string) =>
      new IcebergRestCatalog({ baseUrl: url, ...(auth ? { auth: { type: 'bearer' as const, token: auth } } : {}) }).loadTable({
        namespace: ['sluice'],
        name: 'events',
      });
    await expect(load()).rejects.toMatchObject({ status: 401 });
    await expect(load('wrong-key-0123456789')).rejects.toMatchObject({ status: 403 });
    await expect(load('k-partner-0123456789')).rejects.toMatchObject({ status: 403 });
    const metadata = (await load('k-analyst-0123456789')) as unknown as Record<string, unknown>;
    expect((await rowsOf(metadata)).size).toBe(50);
  });
});
