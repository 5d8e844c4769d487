// Redis down, for real (a private instance, SIGKILLed). The per-producer rate limit (ingest/rate-limit.ts) is not
// enforced while Redis is unavailable (availability over fairness): with dedup off (SLUICE_DEDUP_WINDOW=0) requests are
// acknowledged, none is answered 429 or 5xx, and once Redis is back the limit applies again. With dedup on (the
// default) the event-id reservations cannot be checked, so nothing is stored: 503 + Retry-After, /readyz not ready,
// nothing of the refused requests reaches the WAL, and once Redis is back requests are acknowledged again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import path from 'node:path';
import { startIngest } from '../../ingest/main.js';
import { ensureRedis, type RunningService } from '../../localstack/services.js';
import { createLogger } from '../../shared/logger.js';
import { waitUntil } from '../support/batches.js';
import { testConfig } from '../support/config.js';

const log = createLogger('rate-limit-redis-down', process.env.SLUICE_LOG_LEVEL ?? 'silent');
const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });

describe('rate limit with Redis down', () => {
  let redis: RunningService;
  let redisUrl: string;
  let svcDir: string;
  let ingest: Awaited<ReturnType<typeof startIngest>>;
  let dedupOn: Awaited<ReturnType<typeof startIngest>>;
  let seq = 0;
  const post = (n: number, node = ingest) =>
    fetch(`${node.url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(Array.from({ length: n }, () => ({ eventId: `rl-${seq++}`, entityId: 'video-1', eventType: 'view', timestamp: Date.now() }))),
    });
  /** Sends `requests` requests of 20 events back to back (10 events/s, burst 20: only the first may pass). */
  const burst = async (requests: number) => {
    const statuses: number[] = [];
    for (let i = 0; i < requests; i++) statuses.push((await post(20)).status);
    return statuses;
  };

  beforeAll(async () => {
    redisUrl = `redis://127.0.0.1:${await freePort()}`;
    const cfg = await testConfig({ SLUICE_REDIS_URL: redisUrl, SLUICE_RATE_LIMIT_EVENTS: '10', SLUICE_RATE_LIMIT_BURST: '20', SLUICE_DEDUP_WINDOW: '0' });
    svcDir = path.join(cfg.SLUICE_DATA_DIR, 'services');
    redis = await ensureRedis(redisUrl, svcDir, log);
    expect(redis.started).toBe(true); // a private instance: it is SIGKILLed below
    ingest = await startIngest(cfg, log);
    const withDedup = await testConfig({ SLUICE_REDIS_URL: redisUrl, SLUICE_NODE_ID: 'dedup-on' });
    dedupOn = await startIngest(withDedup, log);
  });
  afterAll(async () => {
    await ingest?.close();
    await dedupOn?.close();
    await redis?.stop();
  });

  it('enforces the limit with Redis, lets traffic through while Redis is down, and enforces it again once Redis is back', async () => {
    const up = await burst(3);
    expect(up[0]).toBe(202);
    expect(up.slice(1)).toContain(429);
    const limited = await post(20);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);

    expect((await post(5, dedupOn)).status).toBe(202);

    await redis.kill!('SIGKILL');
    // Not enforced while Redis is away: six requests of 20 events in a row (6× the burst) are all acknowledged.
    await waitUntil('requests pass without Redis', async () => (await post(20)).status === 202, 15_000);
    const down = await burst(6);
    expect(down).toEqual([202, 202, 202, 202, 202, 202]);
    // With dedup on, nothing may be stored without its reservation: refused at once, with the reason, not ready.
    const refused = await post(5, dedupOn);
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await refused.json()) as { error: string }).error).toMatch(/cannot check event ids for duplicates.*nothing from this request was stored/);
    const ready = await fetch(`${dedupOn.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toMatch(/Redis is unavailable/);
    await dedupOn.wal.seal();
    expect(dedupOn.wal.openSegment.events).toBe(0);

    redis = await ensureRedis(redisUrl, svcDir, log);
    await waitUntil('the limit applies again', async () => (await burst(3)).includes(429), 30_000);
    await waitUntil('dedup works again', async () => (await post(5, dedupOn)).status === 202, 30_000);
  }, 90_000);
});
