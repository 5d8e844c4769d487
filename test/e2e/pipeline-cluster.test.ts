// The whole path with Redis Cluster as the only Redis (SLUICE_REDIS_CLUSTER=true, a private 3-master cluster on free
// ports): 10,000 events over HTTP → ingest (event-id reservations, series budget) → WAL → Parquet on S3 → SQS → two
// worker processes (top-K, all-time totals, ledger) → InfluxDB → query API (top-K and totals from Redis, its cache).
// Counts, sums, all-time totals and top-K must be exact, a re-sent request must be recognised as duplicates, the
// archive must agree, and the shared state must really be spread over the masters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from 'ioredis';
import { createRedis } from '../../shared/clients/redis.js';
import { testConfig } from '../support/config.js';
import {
  type PipelineStack,
  expectArchiveAgrees,
  expectExactStats,
  expectExactTopK,
  pipelineEvents,
  postEvents,
  startPipeline,
  waitUntilCounted,
} from '../support/pipeline-flow.js';
import { type TestRedisCluster, startTestRedisCluster } from '../support/redis-cluster.js';

describe('end to end on a Redis Cluster', () => {
  let cluster: TestRedisCluster;
  let cfg: Awaited<ReturnType<typeof testConfig>>;
  let stack: PipelineStack | undefined;
  beforeAll(async () => {
    cluster = await startTestRedisCluster();
    cfg = await testConfig({ ...cluster.env, SLUICE_FLUSH_MAX_EVENTS: '4000', SLUICE_FLUSH_MAX_AGE: '1s' });
    expect(cfg.SLUICE_REDIS_CLUSTER).toBe(true);
    stack = await startPipeline(cfg.env);
  });
  afterAll(async () => {
    await stack?.stop();
    await cluster?.stop();
  });

  it('counts exactly what was sent, top-K and totals included, with the state spread over every master', async () => {
    const run = pipelineEvents(10_000, 'e2e-cluster');
    await postEvents(stack!.ingestUrl, run.events);
    // A producer re-sending a request it already had acknowledged: every event a duplicate, nothing counted twice.
    await postEvents(stack!.ingestUrl, run.events.slice(0, 1_000), { duplicates: true });
    await waitUntilCounted(stack!.queryUrl, run);
    await expectExactStats(stack!.queryUrl, run);
    await expectExactTopK(stack!.queryUrl, run);
    await expectArchiveAgrees(cfg, run);

    // Every master holds some of the pipeline's keys: nothing ran on a single node by accident.
    const redis = createRedis(cfg) as Cluster;
    try {
      await new Promise((r) => (redis.status === 'ready' ? r(undefined) : redis.once('ready', r)));
      const perMaster = await Promise.all(
        redis.nodes('master').map(async (node) => {
          let n = 0;
          let cursor = '0';
          do {
            const [next, keys] = await node.scan(cursor, 'MATCH', `${cfg.SLUICE_REDIS_PREFIX}*`, 'COUNT', 1_000);
            n += keys.length;
            cursor = next;
          } while (cursor !== '0');
          return n;
        }),
      );
      expect(perMaster).toHaveLength(3);
      for (const n of perMaster) expect(n).toBeGreaterThan(0);
    } finally {
      redis.disconnect();
    }
  });
});
