// The dashboard in a real headless Chromium, over the whole running pipeline (ingest, fleet with workers, query API):
// while events flow it shows ingest and processing throughput and the workers; once they are counted, the top-K
// table and the entity's totals it displays are exactly the API's answers and exactly what was sent.
// Saves a screenshot to .data/dashboard.png; SLUICE_UPDATE_SCREENSHOT=1 writes docs/dashboard.png (the README's) instead.
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../shared/config.js';
import { MEASUREMENT_1M } from '../../shared/contracts/influx-series.js';
import { createInflux } from '../../shared/clients/influx.js';
import { ensureRetentionPolicies } from '../../workers/cold/rollup.js';
import { FAST_WORKER_ENV, queueDepth, waitUntil } from '../support/batches.js';
import { testConfig } from '../support/config.js';
import { startProcess, type ChildService } from '../support/processes.js';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const HOT = 'hot-1';
/**
 * Event times a few minutes back: InfluxDB bounds a query without a time condition at now(), and a batch's point
 * sits at an offset inside its minute, so the current minute is not all in the all-time total until it has passed.
 */
const PAST_MS = 3 * 60_000;
/** Long enough for a few points on each chart of the screenshot. */
const MIN_TRAFFIC_MS = 15_000;

const procs: ChildService[] = [];
let browser: BrowserContext | undefined;
let stopTraffic: () => Promise<void> = async () => undefined;
let profileDir: string | undefined;
afterAll(async () => {
  await stopTraffic();
  await browser?.close();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  // A process that cannot finish its shutdown (e.g. a dependency went away) is killed rather than hanging the run.
  await Promise.all(procs.map((p) => Promise.race([p.kill('SIGTERM'), new Promise((r) => setTimeout(r, 20_000))]).then(() => p.kill('SIGKILL'))));
});

const text = (page: Page, selector: string) => page.locator(selector).textContent();

describe('dashboard', () => {
  it('shows live throughput and workers, and the same top-K and entity totals as the API', async () => {
    const cfg = await testConfig({
      ...FAST_WORKER_ENV,
      SLUICE_FLEET_MIN: '1',
      SLUICE_FLEET_MAX: '2',
      SLUICE_FLEET_POLL_INTERVAL: '500ms',
      SLUICE_FLEET_COOLDOWN: '5s',
      SLUICE_FLEET_PORT: '0',
    });
    // What a deployment has once the rollup job ran: the retention policies the query API also reads from.
    await ensureRetentionPolicies(createInflux(cfg), cfg);
    const [ingest, fleet] = await Promise.all([startProcess('ingest', cfg.env), startProcess('fleet', cfg.env)]);
    procs.push(ingest, fleet);
    const query = await startProcess('query', { ...cfg.env, SLUICE_INGEST_URL: ingest.url, SLUICE_FLEET_URL: fleet.url });
    procs.push(query);

    // Traffic: 100 events every 200 ms, skewed so the heavy hitters are clear.
    const sent = new Map<string, number>();
    let total = 0;
    let flowing = true;
    const entityOf = (i: number) => (i % 10 < 3 ? HOT : i % 10 < 5 ? 'hot-2' : i % 10 < 6 ? 'warm-3' : `e${i % 7}`);
    const trafficStarted = Date.now();
    const traffic = (async () => {
      for (let round = 0; flowing; round++) {
        const events = Array.from({ length: 100 }, (_, j) => {
          const i = round * 100 + j;
          return { eventId: `dash-${i}`, entityId: entityOf(i), eventType: 'view', timestamp: Date.now() - PAST_MS - (i % 240) * 1_000 };
        });
        const r = await fetch(`${ingest.url}/v1/events`, { method: 'POST', body: JSON.stringify(events), headers: { 'content-type': 'application/json' } });
        expect(r.status).toBe(202);
        for (const e of events) sent.set(e.entityId, (sent.get(e.entityId) ?? 0) + 1);
        total += events.length;
        await new Promise((res) => setTimeout(res, 200));
      }
    })();
    stopTraffic = async () => {
      flowing = false;
      await traffic.catch(() => undefined);
    };

    profileDir = mkdtempSync(path.join(os.tmpdir(), 'sluice-dashboard-'));
    browser = await chromium.launchPersistentContext(profileDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1050 },
    });
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${query.url}/?entity=${HOT}&eventType=view&refresh=500`);

    // While traffic flows: both throughputs and the workers are live on the page.
    const tiles = async () =>
      Object.fromEntries(await Promise.all(['#ingest-rate', '#process-rate', '#workers', '#updated', '#errors'].map(async (id) => [id, await text(page, id)])));
    let seen: Record<string, string> = {};
    await waitUntil(
      'live throughput on the page',
      async () => {
        seen = await tiles();
        return Number(seen['#ingest-rate']) > 0 && Number(seen['#process-rate']) > 0 && Number(seen['#workers']) >= 1;
      },
      40_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; the page shows ${JSON.stringify(seen)}`);
    });
    await waitUntil('heavy hitters on the page', async () => (await page.locator('#topk-table tbody tr').count()) > 0, 20_000);

    // The page keeps refreshing while traffic flows; the README's screenshot is taken with some history on the charts.
    const firstUpdate = await text(page, '#updated');
    await new Promise((r) => setTimeout(r, Math.max(0, trafficStarted + MIN_TRAFFIC_MS - Date.now())));
    expect(await text(page, '#updated')).not.toBe(firstUpdate);
    mkdirSync(path.join(PROJECT_ROOT, 'docs'), { recursive: true });
    await page.screenshot({
      path: process.env.SLUICE_UPDATE_SCREENSHOT === '1' ? path.join(PROJECT_ROOT, 'docs', 'dashboard.png') : path.join(PROJECT_ROOT, '.data', 'dashboard.png'),
      fullPage: true,
    });

    flowing = false;
    await traffic;
    const api = async <T>(p: string) => (await (await fetch(`${query.url}${p}`)).json()) as T;
    const influxTotal = async () => (await createInflux(cfg).query<{ sum: number }>(`SELECT sum("count") FROM ${MEASUREMENT_1M}`))[0]?.sum ?? 0;
    await waitUntil('every event counted', async () => (await influxTotal()) === total && (await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)) === 0, 40_000);
    let apiTotal: unknown;
    await waitUntil(
      'the API total of the hot entity',
      async () => {
        apiTotal = await api<{ count: number }>(`/v1/entities/${HOT}/total?eventType=view`);
        return (apiTotal as { count?: number }).count === sent.get(HOT);
      },
      20_000,
    ).catch(() => undefined);
    expect(apiTotal).toMatchObject({ count: sent.get(HOT) });

    // The page shows exactly what the API answers, and that is exactly what was sent.
    await waitUntil(
      'the entity totals on the page',
      async () => (await text(page, '#entity-total')) === String(sent.get(HOT)) && (await text(page, '#entity-range-total')) === String(sent.get(HOT)),
      20_000,
    );
    const topk = await api<{ items: { entityId: string; count: number }[] }>('/v1/topk?eventType=view&window=1h&k=10');
    expect(topk.items.slice(0, 3)).toMatchObject([
      { entityId: HOT, count: sent.get(HOT) },
      { entityId: 'hot-2', count: sent.get('hot-2') },
      { entityId: 'warm-3', count: sent.get('warm-3') },
    ]);
    const pageRows = async () =>
      page
        .locator('#topk-table tbody tr')
        .evaluateAll((rows) => rows.map((r) => ({ entityId: r.querySelector('.entity')!.textContent, count: Number(r.querySelector('.count')!.textContent) })));
    await waitUntil(
      'the top-K table on the page',
      async () => JSON.stringify(await pageRows()) === JSON.stringify(topk.items.map(({ entityId, count }) => ({ entityId, count }))),
      20_000,
    );
    expect(await text(page, '#dead-letters')).toBe('0');
    expect(await page.locator('#chart-entity canvas').count()).toBe(1);
    expect(pageErrors).toEqual([]);
  });
});
