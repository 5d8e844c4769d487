// A private, throwaway 3-master Redis Cluster for one test file (localstack/redis-cluster.ts on free ports, data in a
// temporary folder removed on stop), and the settings that point a test pipeline at it.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLUSTER_MASTERS, type RunningRedisCluster, startRedisCluster } from '../../localstack/redis-cluster.js';
import { createLogger } from '../../shared/logger.js';
import { freePorts } from './ports.js';

export interface TestRedisCluster extends RunningRedisCluster {
  /** SLUICE_REDIS_URL (every node) and SLUICE_REDIS_CLUSTER=true, to merge into a test's settings. */
  env: { SLUICE_REDIS_URL: string; SLUICE_REDIS_CLUSTER: 'true' };
}

export async function startTestRedisCluster(): Promise<TestRedisCluster> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-cluster-'));
  const ports = await freePorts(2 * CLUSTER_MASTERS);
  const cluster = await startRedisCluster({
    ports: ports.slice(0, CLUSTER_MASTERS),
    busPorts: ports.slice(CLUSTER_MASTERS),
    dir,
    log: createLogger('test-redis-cluster', process.env.SLUICE_LOG_LEVEL ?? 'warn'),
    appendOnly: false,
  });
  return {
    ...cluster,
    env: { SLUICE_REDIS_URL: cluster.url, SLUICE_REDIS_CLUSTER: 'true' },
    async stop() {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
