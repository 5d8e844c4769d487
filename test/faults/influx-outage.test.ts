// InfluxDB stopped for 30 s in the middle of a run: workers treat it as transient (retry with backoff, keep or
// release their messages, never dead-letter), and once it is back every batch is counted exactly once.
import { describe, expect, it } from 'vitest';
import net from 'node:net';
import path from 'node:path';
import { createInflux, ensureDatabase } from '../../shared/clients/influx.js';
import { loadConfig } from '../../shared/config.js';
import { createLogger } from '../../shared/logger.js';
import { ensureInflux } from '../../localstack/services.js';
import { testConfig } from '../support/config.js';
import { startProcess, type ChildService } from '../support/processes.js';
import {
  FAST_WORKER_ENV,
  diffAggregates,
  groundTruth,
  influxAggregates,
  pastHour,
  queueDepth,
  randomEvents,
  sendManifests,
  uploadBatches,
  waitUntil,
} from '../support/batches.js';

const log = createLogger('faults', 'warn');
const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });

describe('InfluxDB outage', () => {
  it('ends with exact totals and an empty dead-letter queue after 30 s without InfluxDB', async () => {
    const influxUrl = `http://127.0.0.1:${await freePort()}`;
    const base = await testConfig();
    const svcDir = path.join(base.SLUICE_DATA_DIR, 'services');
    let influx = await ensureInflux(influxUrl, svcDir, log);
    const env = { ...base.env, ...FAST_WORKER_ENV, SLUICE_INFLUX_URL: influxUrl, SLUICE_MAX_TRANSIENT_RETRY: '10s' };
    const cfg = loadConfig({ ...process.env, ...env });
    await ensureDatabase(createInflux(cfg), cfg.SLUICE_INFLUX_DB);
    const workers: ChildService[] = [await startProcess('worker', env, 'worker-0'), await startProcess('worker', env, 'worker-1')];
    try {
      const start = pastHour();
      const events = randomEvents(40_000, { start, minutes: 30, entities: 50 });
      const batches = [];
      for (let i = 0; i < events.length; i += 2_500) batches.push(...(await uploadBatches(cfg, events.slice(i, i + 2_500))));
      await sendManifests(
        cfg,
        batches.slice(0, 4).map((b) => b.body),
      );
      await influx.stop(); // mid-run: some batches done, the rest arrive while InfluxDB is down
      await sendManifests(
        cfg,
        batches.slice(4).map((b) => b.body),
      );
      await new Promise((r) => setTimeout(r, 30_000));
      expect(await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)).toBeGreaterThan(0); // nothing was dropped meanwhile
      expect(await queueDepth(cfg, cfg.SLUICE_DLQ_NAME)).toBe(0);
      influx = await ensureInflux(influxUrl, svcDir, log);
      await waitUntil('the queue drains once InfluxDB is back', async () => (await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)) === 0, 120_000);
      expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(events))).toEqual([]);
      expect(await queueDepth(cfg, cfg.SLUICE_DLQ_NAME)).toBe(0);
    } finally {
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
      await influx.stop();
    }
  }, 240_000);
});
