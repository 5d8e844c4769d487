// What a benchmark run leaves in services that outlive it is deleted when it ends (bench/lib/stack.ts
// removeRunState): its Redis keys, on a single Redis and on every master of a Redis Cluster, and its InfluxDB
// database; another run's keys and database are untouched.
import { afterAll, describe, expect, it } from 'vitest';
import { removeRunState } from '../../bench/lib/stack.js';
import { createInflux } from '../../shared/clients/influx.js';
import type { Cluster } from 'ioredis';
import { createRedis, type RedisClient } from '../../shared/clients/redis.js';
import { testConfig } from '../support/config.js';
import { startTestRedisCluster } from '../support/redis-cluster.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** Writes `n` keys under `prefix` spread over hash tags (so over a cluster's slots), of the types the pipeline uses. */
async function fill(redis: RedisClient, prefix: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await redis.hset(`${prefix}{r:${i}}:bucket`, 'p\u001fid', 'tok');
    await redis.set(`${prefix}{topk:${i}}:version`, String(i));
  }
}
const countKeys = async (redis: RedisClient, pattern: string): Promise<number> => {
  const nodes = 'nodes' in redis ? redis.nodes('master') : [redis];
  let n = 0;
  for (const node of nodes) n += (await node.keys(pattern)).length;
  return n;
};

describe('a benchmark run ending', () => {
  it('deletes its Redis keys and InfluxDB database, and nothing of another run', async () => {
    const mine = await testConfig();
    const other = await testConfig();
    const redis = createRedis(mine);
    cleanups.push(async () => redis.disconnect());
    await fill(redis, mine.SLUICE_REDIS_PREFIX, 50);
    await fill(redis, other.SLUICE_REDIS_PREFIX, 5);
    expect(await removeRunState(mine)).toBe(100);
    expect(await countKeys(redis, `${mine.SLUICE_REDIS_PREFIX}*`)).toBe(0);
    expect(await countKeys(redis, `${other.SLUICE_REDIS_PREFIX}*`)).toBe(10);
    const dbs = await createInflux(mine).getDatabaseNames();
    expect(dbs).not.toContain(mine.SLUICE_INFLUX_DB);
    expect(dbs).toContain(other.SLUICE_INFLUX_DB);
  });

  it('deletes its keys on every master of a Redis Cluster', async () => {
    const cluster = await startTestRedisCluster();
    cleanups.push(() => cluster.stop());
    const cfg = await testConfig(cluster.env);
    const redis = createRedis(cfg);
    cleanups.push(async () => redis.disconnect());
    await fill(redis, cfg.SLUICE_REDIS_PREFIX, 60);
    const perMaster = await Promise.all((redis as Cluster).nodes('master').map((n) => n.dbsize()));
    expect(perMaster.filter((n) => n > 0).length).toBeGreaterThan(1); // the keys really are spread
    expect(await removeRunState(cfg)).toBe(120);
    expect(await countKeys(redis, `${cfg.SLUICE_REDIS_PREFIX}*`)).toBe(0);
  });
});
