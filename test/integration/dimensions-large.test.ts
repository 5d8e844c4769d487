// A dimension table larger than the engine's memory limit: the table has 1,000,000 rows with a unique 64-character
// attribute per row (its database file is larger than the limit); it is loaded, then this file's engine (one per test
// process, shared with the worker) is set to a 32MB memory_limit, and a real worker still builds, attaches and
// enriches a batch exactly — DuckDB reads the attached file from disk.
import { createHash } from 'node:crypto';
import { createWriteStream, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3 } from '../../shared/clients/aws.js';
import { createInflux } from '../../shared/clients/influx.js';
import { PROJECT_ROOT, type Config } from '../../shared/config.js';
import { attributeMeasurement } from '../../shared/contracts/influx-series.js';
import type { Event } from '../../shared/contracts/event.js';
import { createLogger } from '../../shared/logger.js';
import { openEngine, queryParquet, withConnection } from '../../shared/parquet.js';
import type { Service } from '../../shared/service.js';
import { loadDimensionTable } from '../../workers/dimensions/table-load.js';
import { startWorker } from '../../workers/main.js';
import { testConfig } from '../support/config.js';
import { FAST_WORKER_ENV, metricValueOrZero, pastHour, sendManifests, uploadBatches, waitUntil } from '../support/batches.js';

const log = createLogger('dimensions-large-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const ROWS = 1_000_000;
const LIMIT_BYTES = 32 * 1024 * 1024;
const running: Service[] = [];
const entity = (i: number) => `ent-${String(i).padStart(7, '0')}`;
const owner = (i: number) => createHash('sha256').update(String(i)).digest('hex');
const channel = (i: number) => `channel-${i % 1000}`;

beforeAll(async () => {
  // First open in this process: every later openEngine (the worker's) gets this instance.
  await openEngine({ tempDir: path.join(PROJECT_ROOT, '.data', 'tests', 'dimensions-large-duckdb-tmp'), threads: 2 });
});
afterAll(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

async function writeTable(file: string): Promise<void> {
  const out = createWriteStream(file);
  out.write('entity_id,channel,owner\n');
  let buf = '';
  for (let i = 0; i < ROWS; i++) {
    buf += `${entity(i)},${channel(i)},${owner(i)}\n`;
    if (buf.length > 1 << 20) {
      if (!out.write(buf)) await once(out, 'drain');
      buf = '';
    }
  }
  out.end(buf);
  await once(out, 'finish');
}

describe('a dimension table larger than the engine memory', () => {
  it('enriches a batch exactly with a 1M-row table under a 32MB engine memory limit', async () => {
    const cfg: Config = await testConfig({ ...FAST_WORKER_ENV, SLUICE_DIMENSIONS: 'channel,owner', SLUICE_DIMENSIONS_POLL: '1s' });
    const csv = path.join(cfg.SLUICE_DATA_DIR, 'large.csv');
    await writeTable(csv);
    const s3 = createS3(cfg);
    try {
      const m = await loadDimensionTable(s3, cfg.SLUICE_RAW_BUCKET, {
        input: csv,
        table: cfg.SLUICE_DIMENSIONS_TABLE,
        tempDir: path.join(cfg.SLUICE_DATA_DIR, 'tmp'),
      });
      expect(m.rows).toBe(ROWS);
    } finally {
      s3.destroy();
    }
    const start = pastHour();
    const events: Event[] = [];
    for (let i = 0; i < 6_000; i++) {
      // Entities spread over the whole table, a few unknown ones.
      const e = i % 50 === 0 ? `unknown-${i}` : entity((i * 7_919) % ROWS);
      events.push({ eventId: `large-${i}`, entityId: e, eventType: 'view', timestamp: start + (i % 180) * 1_000, value: 1, dims: null });
    }
    // The batch is written first (ingest's JSON reader needs a 32MB buffer); from here on the engine, which the worker
    // shares, may use 32MB.
    const [batch] = await uploadBatches(cfg, events);
    await withConnection((c) => c.run(`SET GLOBAL memory_limit = '32MB'`));
    expect((await queryParquet(`SELECT current_setting('memory_limit') AS m`))[0]!.m).toBe('30.5 MiB');
    const w = await startWorker(cfg, log);
    running.push(w);
    const dbDir = path.join(cfg.SLUICE_DATA_DIR, 'worker-dimensions', cfg.SLUICE_DIMENSIONS_TABLE);
    const dbFile = readdirSync(dbDir).find((f) => f.endsWith('.duckdb'));
    expect(dbFile).toBe('v1.duckdb');
    expect(statSync(path.join(dbDir, dbFile!)).size).toBeGreaterThan(LIMIT_BYTES);
    await sendManifests(cfg, [batch!.body]);
    await waitUntil('batch delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1, 120_000);

    const want = new Map<string, number>();
    for (const e of events) {
      if (!e.entityId.startsWith('ent-')) continue;
      const c = channel(Number(e.entityId.slice(4)));
      want.set(c, (want.get(c) ?? 0) + 1);
    }
    const rows = await createInflux(cfg).query<{ value: string; n: number }>(
      `SELECT sum("count") AS n FROM "${attributeMeasurement('channel', '1m')}" WHERE time >= ${start}ms AND time < ${start + 3_600_000}ms GROUP BY "value"`,
    );
    expect(new Map(rows.map((r) => [r.value, r.n]))).toEqual(want);
    const owners = await createInflux(cfg).query<{ n: number }>(`SELECT sum("count") AS n FROM "${attributeMeasurement('owner', '1m')}"`);
    expect(owners[0]!.n).toBe(events.filter((e) => e.entityId.startsWith('ent-')).length);
  });
});
