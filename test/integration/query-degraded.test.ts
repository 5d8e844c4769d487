// The query API when a dependency is down (real closed ports, no mocks): without InfluxDB it answers 503
// with Retry-After and no internals, and is not ready; without Redis it still answers from InfluxDB, uncached.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInflux } from '../../shared/clients/influx.js';
import { MEASUREMENT_1M } from '../../shared/contracts/influx-series.js';
import type { Config } from '../../shared/config.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { startQuery } from '../../query/main.js';
import { testConfig } from '../support/config.js';

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function get(service: Service, path: string): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(service.url + path);
  return { status: res.status, text: await res.text(), headers: res.headers };
}

const T0 = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 5 * 3_600_000;

describe('InfluxDB unavailable', () => {
  let service: Service;
  beforeAll(async () => {
    const cfg: Config = { ...(await testConfig()), SLUICE_INFLUX_URL: `http://127.0.0.1:${await closedPort()}` };
    service = await startQuery(cfg, createLogger('query-test', 'silent'));
  });
  afterAll(() => service?.close());

  it('answers 503 with Retry-After and a plain error on every InfluxDB route, also once the breaker is open', async () => {
    for (let i = 0; i < 8; i++) {
      for (const path of [`/v1/stats?entityId=e&eventType=click&fn=count&from=${T0}`, '/v1/entities/e/total?eventType=click']) {
        const res = await get(service, path);
        expect(res.status).toBe(503);
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
        const body = JSON.parse(res.text) as Record<string, unknown>;
        expect(Object.keys(body)).toEqual(['error']);
        expect(res.text).not.toMatch(/ECONNREFUSED|at .*\.(ts|js):\d+|stack/);
      }
    }
  });

  it('still validates parameters (400) and reports not ready', async () => {
    expect((await get(service, '/v1/stats?entityId=e&eventType=click&fn=nope')).status).toBe(400);
    expect((await get(service, '/healthz')).status).toBe(200);
    const ready = await get(service, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.text).toContain('InfluxDB');
  });
});

describe('Redis unavailable', () => {
  let service: Service;
  beforeAll(async () => {
    const base = await testConfig();
    await createInflux(base).writePoints(
      [
        {
          measurement: MEASUREMENT_1M,
          tags: { entity_id: 'e', event_type: 'click' },
          fields: { count: 4, sum: 8, min: 1, max: 3 },
          timestamp: (BigInt(T0) * 1_000_000n + 123n).toString(),
        },
      ],
      { precision: 'n' },
    );
    const cfg: Config = { ...base, SLUICE_REDIS_URL: `redis://127.0.0.1:${await closedPort()}` };
    service = await startQuery(cfg, createLogger('query-test', 'silent'));
  });
  afterAll(() => service?.close());

  it('answers stats and totals from InfluxDB, uncached, and counts the cache failures', async () => {
    for (let i = 0; i < 2; i++) {
      const stats = await get(service, `/v1/stats?entityId=e&eventType=click&fn=avg&from=${T0}&to=${T0 + 3_600_000}&step=1h`);
      expect(stats.status).toBe(200);
      expect(stats.headers.get('x-sluice-cache')).toBe('error');
      expect(JSON.parse(stats.text)).toMatchObject({ total: 2, points: [{ t: new Date(T0).toISOString(), value: 2 }] });
    }
    const total = await get(service, '/v1/entities/e/total?eventType=click');
    expect(total.status).toBe(200);
    expect(JSON.parse(total.text)).toEqual({ entityId: 'e', eventType: 'click', count: 4, sum: 8 });
    const metrics = (await get(service, '/metrics')).text;
    expect(metrics).toMatch(/sluice_query_cache_requests_total\{[^}]*kind="stats"[^}]*result="error"[^}]*\} 2/);
    expect(metrics).toMatch(/sluice_query_cache_errors_total\{[^}]*op="get"[^}]*\} [1-9]/);
    expect((await get(service, '/readyz')).status).toBe(200);
  });

  it('answers top-K (which lives in Redis) with 503', async () => {
    const res = await get(service, '/v1/topk?eventType=click&window=1h');
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBeTruthy();
  });
});
