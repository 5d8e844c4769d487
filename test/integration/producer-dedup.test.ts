// Producer dedup on a real Redis: ids marked in any minute of the window are seen, older ones are not, large
// requests are checked in slices, producers' ids are apart, and Redis being down means "not seen" (ingest never fails because of dedup).
import { describe, expect, it } from 'vitest';
import { createRedis } from '../../shared/clients/redis.js';
import { createLogger } from '../../shared/logger.js';
import { ProducerDedup } from '../../ingest/producer-dedup.js';
import { testConfig } from '../support/config.js';

const log = createLogger('test', 'silent');

describe('producer dedup', () => {
  it('sees ids marked anywhere in the window and forgets them after it', async () => {
    const cfg = await testConfig();
    const redis = createRedis(cfg);
    await new Promise((r) => redis.once('ready', r));
    try {
      const d = new ProducerDedup(redis, cfg.SLUICE_REDIS_PREFIX, 10 * 60_000, log);
      const t = Math.floor(Date.now() / 300_000) * 300_000 + 1_000; // aligned to the 5-minute sets
      const ids = Array.from({ length: 9_000 }, (_, i) => `p-${i}`); // more than one slice
      await d.mark('web', ids.slice(0, 5_000), t - 9 * 60_000);
      await d.mark('web', ['late'], t);
      const seen = await d.seen('web', [...ids, 'late', 'never'], t);
      expect(seen.filter(Boolean)).toHaveLength(5_001);
      expect(seen.slice(0, 5_000).every(Boolean)).toBe(true);
      expect(seen.slice(5_000, 9_000).some(Boolean)).toBe(false);
      expect(seen.slice(-2)).toEqual([true, false]);
      expect((await d.seen('web', ['p-1'], t + 6 * 60_000))[0]).toBe(false); // marked 15 minutes before: out of the window
    } finally {
      redis.disconnect();
    }
  });

  it("keeps producers' id spaces apart, each producer's sets in one cluster slot", async () => {
    const cfg = await testConfig();
    const redis = createRedis(cfg);
    await new Promise((r) => redis.once('ready', r));
    try {
      const d = new ProducerDedup(redis, cfg.SLUICE_REDIS_PREFIX, 10 * 60_000, log);
      const t = Date.now();
      await d.mark('web', ['shared-1', 'shared-2'], t);
      expect(await d.seen('app', ['shared-1', 'shared-2'], t)).toEqual([false, false]); // another producer's ids
      expect(await d.seen('web', ['shared-1', 'other'], t)).toEqual([true, false]);
      // Redis Cluster hashes only the first {…} of a key: every set of a producer carries the same one.
      const tags = new Set([0, 1, 2].map((b) => /\{([^}]*)\}/.exec(d.bucketKey('web', b))?.[1]));
      expect([...tags]).toEqual(['web']);
    } finally {
      redis.disconnect();
    }
  });

  it('treats every id as new when Redis is unreachable', async () => {
    const cfg = await testConfig({ SLUICE_REDIS_URL: 'redis://127.0.0.1:1' });
    const redis = createRedis(cfg);
    redis.on('error', () => undefined);
    try {
      const d = new ProducerDedup(redis, cfg.SLUICE_REDIS_PREFIX, 60_000, log);
      expect(await d.seen('web', ['a', 'b'])).toEqual([false, false]);
      await d.mark('web', ['a']); // does not throw
    } finally {
      redis.disconnect();
    }
  });
});
