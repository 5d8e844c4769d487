// Retention end to end on real services: batches (v1 and a v2 file with session_id) go through a real worker,
// the rollup job and compaction run, and the minutes of the old day are dropped as retention would. The query
// API must then answer a range spanning cold hours (Parquet only), hot rollups and minutes with exactly what
// the audit recomputes from the archive; `sluice audit` must catch one extra InfluxDB point and exit non-zero.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MEASUREMENT_1M, TAG_ENTITY, TAG_TYPE } from '../../shared/contracts/influx-series.js';
import { createInflux } from '../../shared/clients/influx.js';
import { DAY_MS, HOUR_MS } from '../../shared/contracts/cold-layout.js';
import type { Config } from '../../shared/config.js';
import type { Event } from '../../shared/contracts/event.js';
import { encodeManifest } from '../../shared/contracts/manifest.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { nodeEntry } from '../../localstack/services.js';
import { startQuery } from '../../query/main.js';
import { runAudit } from '../../workers/cold/audit.js';
import { runCompaction } from '../../workers/cold/compaction.js';
import { startWorker } from '../../workers/main.js';
import { runRollup } from '../../workers/cold/rollup.js';
import { testConfig } from '../support/config.js';
import { FAST_WORKER_ENV, metricValueOrZero, pastHour, randomEvents, sendManifests, uploadBatches, waitUntil } from '../support/batches.js';
import { expectedTotals, uploadRawFile, writeV2File } from '../support/archive.js';

const log = createLogger('retention-e2e', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const OLD_DAY = Math.floor(Date.now() / DAY_MS) * DAY_MS - 3 * DAY_MS;
const RECENT = pastHour();
const FROM = OLD_DAY;
const TO = RECENT + HOUR_MS;

let cfg: Config & { env: Record<string, string> };
let query: Service;
let worker: Service;
const events: Event[] = [];

async function stats(entityId: string, eventType: string, fn: string, step: string, fromMs = FROM, toMs = TO): Promise<number | null> {
  const res = await fetch(`${query.url}/v1/stats?${new URLSearchParams({ entityId, eventType, fn, step, from: String(fromMs), to: String(toMs) })}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { total: number | null }).total;
}

beforeAll(async () => {
  // Hours older than one day live only in the cold tier; minutes older than two days are gone (see below).
  cfg = await testConfig({ ...FAST_WORKER_ENV, SLUICE_RETENTION_1H: '1d', SLUICE_RETENTION_1M: '2d' });
  const old = randomEvents(1_500, { start: OLD_DAY + 5 * HOUR_MS, minutes: 240, entities: 7, idPrefix: 'old' });
  const recent = randomEvents(800, { start: RECENT, minutes: 30, entities: 7, idPrefix: 'new' });
  const bodies: string[] = [];
  for (const batch of [old, recent]) {
    for (const u of await uploadBatches(cfg, batch)) bodies.push(u.body);
    events.push(...batch);
  }
  // A schema-v2 batch (with session_id) announced like ingest would.
  const v2 = randomEvents(300, { start: OLD_DAY + 7 * HOUR_MS, minutes: 20, entities: 7, idPrefix: 'v2' });
  const file = path.join(cfg.SLUICE_DATA_DIR, 'v2.parquet');
  await writeV2File(v2, file);
  const key = await uploadRawFile(cfg, file, OLD_DAY + 7 * HOUR_MS);
  const bytes = readFileSync(file);
  bodies.push(
    encodeManifest({
      bucket: cfg.SLUICE_RAW_BUCKET,
      key,
      eventCount: v2.length,
      byteSize: bytes.length,
      minEventTime: new Date(Math.min(...v2.map((e) => e.timestamp))).toISOString(),
      maxEventTime: new Date(Math.max(...v2.map((e) => e.timestamp))).toISOString(),
      checksum: { algorithm: 'sha256', value: createHash('sha256').update(bytes).digest('hex') },
      schemaVersion: 2,
      producer: 'test',
      createdAt: new Date().toISOString(),
    }),
  );
  events.push(...v2);
  await sendManifests(cfg, bodies);
  worker = await startWorker(cfg, log);
  await waitUntil(
    'all batches delivered',
    async () => (await metricValueOrZero(worker.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === bodies.length,
    60_000,
  );
  query = await startQuery(cfg, log);

  // The rollup ran while the old day's minutes were still kept (as it does daily in production)…
  await runRollup({ ...cfg, SLUICE_RETENTION_1M: 7 * DAY_MS }, { log });
  const [compacted] = await runCompaction(cfg, { log });
  expect(compacted?.dt).toBe(new Date(OLD_DAY).toISOString().slice(0, 10));
  // …then minute retention (2d) passed over the old day: from now on only rollups (hot days, cold hours) know it.
  await createInflux(cfg).query(`DELETE FROM "${MEASUREMENT_1M}" WHERE time < ${OLD_DAY + DAY_MS}ms`);
}, 120_000);

afterAll(async () => {
  await worker?.close();
  await query?.close();
});

describe('query federation and audit', () => {
  it('answers a range spanning cold hours, hot rollups and minutes exactly as the archive does', async () => {
    const truth = expectedTotals(events);
    expect(truth.length).toBeGreaterThan(7);
    const report = await runAudit(cfg, { fromMs: FROM, toMs: TO, queryUrl: query.url });
    expect(report.files.compacted).toBe(1);
    expect(report.checked).toBe(truth.length);
    expect(report.mismatches).toEqual([]);
    for (const t of truth.slice(0, 4)) {
      expect(await stats(t.entityId, t.eventType, 'count', '1h')).toBe(t.count);
      expect(await stats(t.entityId, t.eventType, 'count', '1d')).toBe(t.count);
      const total = (await (await fetch(`${query.url}/v1/entities/${encodeURIComponent(t.entityId)}/total?eventType=${t.eventType}`)).json()) as {
        count: number;
      };
      expect(total.count).toBe(t.count);
    }
    // The old day alone: no minutes and no hot hours remain, so this is the cold Parquet's answer.
    const old = expectedTotals(events.filter((e) => e.timestamp < OLD_DAY + DAY_MS));
    expect(await stats(old[0]!.entityId, old[0]!.eventType, 'count', '1h', OLD_DAY, OLD_DAY + DAY_MS)).toBe(old[0]!.count);
  });

  it('`sluice audit` reports a corrupted InfluxDB point and exits non-zero', async () => {
    const victim = expectedTotals(events)[0]!;
    await createInflux(cfg).writePoints(
      [
        {
          measurement: MEASUREMENT_1M,
          tags: { [TAG_ENTITY]: victim.entityId, [TAG_TYPE]: victim.eventType },
          fields: { count: 3, sum: 7, min: 1, max: 4 },
          timestamp: (BigInt(RECENT + 10 * 60_000) * 1_000_000n + 123n).toString(),
        },
      ],
      { database: cfg.SLUICE_INFLUX_DB, precision: 'n' },
    );
    const [cmd, ...args] = nodeEntry('cli/sluice.ts');
    const child = spawn(cmd!, [...args, 'audit', '--from', new Date(FROM).toISOString(), '--to', String(TO)], {
      env: { ...process.env, ...cfg.env, SLUICE_QUERY_URL: query.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(err).toContain('series recomputed'); // progress goes to stderr
    expect(err).not.toContain('sluice:');
    expect(code).toBe(1);
    // The hourly rollup of that hour is still right, so only the minute view differs.
    expect(out).toContain('1 mismatch(es)');
    const recent = expectedTotals(events.filter((e) => e.timestamp >= RECENT)).find((t) => t.entityId === victim.entityId && t.eventType === victim.eventType)!;
    expect(out).toMatch(new RegExp(`minutes\\s+${victim.entityId}\\s+${victim.eventType}\\s+${recent.count}\\s+${recent.count + 3}\\s+3\\s`));
  });
});
