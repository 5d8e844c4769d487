// All-time totals: the query API answers from the workers' Redis totals only while they are complete (kept since
// the first event); with data counted before them, or after Redis lost them, it computes totals from InfluxDB.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInflux } from '../../shared/clients/influx.js';
import { MEASUREMENT_1M, TAG_ENTITY, TAG_TYPE } from '../../shared/contracts/influx-series.js';
import { createRedis } from '../../shared/clients/redis.js';
import { createLogger } from '../../shared/logger.js';
import type { Service } from '../../shared/service.js';
import { startQuery } from '../../query/main.js';
import { EntityTotalsUpdater } from '../../workers/entity-totals.js';
import { testConfig } from '../support/config.js';

const log = createLogger('test', 'silent');

describe('entity totals', () => {
  let cfg: Awaited<ReturnType<typeof testConfig>>;
  let query: Service;
  beforeAll(async () => {
    cfg = await testConfig();
    query = await startQuery(cfg, log);
  });
  afterAll(async () => {
    await query?.close();
  });
  const total = async (entity: string) => {
    const r = await fetch(`${query.url}/v1/entities/${entity}/total?eventType=view`);
    return { source: r.headers.get('x-sluice-cache'), body: await r.json() };
  };

  it('uses InfluxDB while the Redis totals are incomplete, and Redis once they are complete', async () => {
    // Counted before the totals existed: one point in InfluxDB, nothing in Redis.
    const t = Math.floor((Date.now() - 3_600_000) / 60_000) * 60_000;
    await createInflux(cfg).writePoints(
      [{ measurement: MEASUREMENT_1M, tags: { [TAG_ENTITY]: 'old', [TAG_TYPE]: 'view' }, fields: { count: 5, sum: 10, min: 1, max: 3 }, timestamp: t }],
      { precision: 'ms' },
    );
    const before = await total('old');
    expect(before.source).not.toBe('totals');
    expect(before.body).toMatchObject({ count: 5, sum: 10 });

    const redis = createRedis(cfg);
    try {
      const totals = new EntityTotalsUpdater(redis, cfg.SLUICE_REDIS_PREFIX);
      // Something was counted already, so a worker must not declare the totals complete.
      expect(await totals.markCompleteIfEmpty(async () => 1)).toBe(false);
      await totals.apply('b/1', [{ entityId: 'old', eventType: 'view', count: 2, sum: 4 }]);
      expect((await total('old')).source).not.toBe('totals');
      // An empty pipeline: complete from now on, and answered from Redis (an unseen entity is 0).
      expect(await totals.markCompleteIfEmpty(async () => 0)).toBe(true);
      const after = await total('old');
      expect(after).toEqual({ source: 'totals', body: { entityId: 'old', eventType: 'view', count: 2, sum: 4 } });
      expect((await total('never-seen')).body).toMatchObject({ count: 0, sum: 0 });
    } finally {
      redis.disconnect();
    }
  });
});
