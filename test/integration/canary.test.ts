// The canary against a real pipeline (ingest, worker, query API in this process): while everything runs its events
// are counted (last success and lag set, no failure); with the worker stopped an event stays uncounted past
// SLUICE_CANARY_MAX_DELAY and is a not_counted failure; a worker again catches up; ingest down is an ingest failure.
import { afterAll, describe, expect, it } from 'vitest';
import { startIngest } from '../../ingest/main.js';
import { startQuery } from '../../query/main.js';
import { loadConfig } from '../../shared/config.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { startCanary } from '../../workers/canary/canary.js';
import { startWorker } from '../../workers/main.js';
import { FAST_WORKER_ENV, metricValue, metricValueOrZero, waitUntil } from '../support/batches.js';
import { testConfig } from '../support/config.js';

const log = createLogger('canary-test', process.env.SLUICE_LOG_LEVEL ?? 'silent');
const open: Service[] = [];
afterAll(async () => {
  for (const s of open.reverse()) await s.close().catch(() => undefined);
});

describe('canary', () => {
  it('reports success while the pipeline counts, not_counted when it does not, ingest when ingest is down', async () => {
    const cfg = await testConfig({ ...FAST_WORKER_ENV, SLUICE_FLUSH_MAX_AGE: '300ms' });
    const ingest = await startIngest(cfg, log);
    const query = await startQuery(cfg, log);
    let worker = await startWorker(cfg, log);
    open.push(ingest, query);
    const canaryCfg = loadConfig({
      ...process.env,
      ...cfg.env,
      SLUICE_CANARY_ENABLED: 'true',
      SLUICE_CANARY_INTERVAL: '1s',
      SLUICE_CANARY_MAX_DELAY: '15s',
      SLUICE_CANARY_PORT: '0',
      SLUICE_INGEST_URL: ingest.url,
      SLUICE_QUERY_URL: query.url,
    });
    const canary = await startCanary(canaryCfg, log);
    open.push(canary);
    const m = (name: string, label = '') => metricValue(canary.url, name, label);

    // Healthy: canary events are counted end to end.
    await waitUntil('a canary event counted', async () => (await m('sluice_canary_last_success_timestamp_seconds')) > 0, 30_000);
    expect(await m('sluice_canary_sent_total')).toBeGreaterThan(0);
    expect(await m('sluice_canary_lag_seconds')).toBeLessThan(15);
    expect(await metricValueOrZero(canary.url, 'sluice_canary_failures_total', 'reason="not_counted"')).toBe(0);
    expect(await metricValueOrZero(canary.url, 'sluice_canary_failures_total', 'reason="ingest"')).toBe(0);

    // No worker: events are accepted but never counted; past the max delay each is a failure and the lag grows.
    await worker.close();
    const stalledAt = Date.now() / 1000;
    await waitUntil(
      'a not_counted failure',
      async () => (await metricValueOrZero(canary.url, 'sluice_canary_failures_total', 'reason="not_counted"')) > 0,
      45_000,
    );
    expect(await m('sluice_canary_lag_seconds')).toBeGreaterThan(15);
    expect(await m('sluice_canary_last_success_timestamp_seconds')).toBeLessThan(stalledAt + 2);

    // A worker again: the backlog is counted and success resumes.
    worker = await startWorker(cfg, log);
    open.push(worker);
    const resumedAt = Date.now() / 1000;
    await waitUntil('success after the worker is back', async () => (await m('sluice_canary_last_success_timestamp_seconds')) >= resumedAt, 30_000);

    // Ingest down: sends fail and are counted as ingest failures.
    await ingest.close();
    await waitUntil('an ingest failure', async () => (await metricValueOrZero(canary.url, 'sluice_canary_failures_total', 'reason="ingest"')) > 0, 15_000);
  }, 120_000);
});
