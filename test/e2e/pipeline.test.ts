// The whole path on real services: 10,000 events over HTTP (100 entities, 3 event types, 3 minutes) →
// ingest WAL → Parquet on S3 → SQS → two worker processes → InfluxDB → query API. The API must return exactly
// the expected counts and sums, and DuckDB reading the archived Parquet objects must agree.
// (The same flow on a Redis Cluster: pipeline-cluster.test.ts; the shared steps: test/support/pipeline-flow.ts.)
import { afterAll, beforeAll, describe, it } from 'vitest';
import { testConfig } from '../support/config.js';
import {
  type PipelineStack,
  expectArchiveAgrees,
  expectExactStats,
  pipelineEvents,
  postEvents,
  startPipeline,
  waitUntilCounted,
} from '../support/pipeline-flow.js';

describe('end to end', () => {
  let cfg: Awaited<ReturnType<typeof testConfig>>;
  let stack: PipelineStack | undefined;
  beforeAll(async () => {
    cfg = await testConfig({ SLUICE_FLUSH_MAX_EVENTS: '4000', SLUICE_FLUSH_MAX_AGE: '1s' });
    stack = await startPipeline(cfg.env);
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('counts exactly what was sent, and the archive agrees', async () => {
    const run = pipelineEvents(10_000);
    await postEvents(stack!.ingestUrl, run.events);
    // Wait until every series is complete (the pipeline is asynchronous), then compare exactly.
    await waitUntilCounted(stack!.queryUrl, run);
    await expectExactStats(stack!.queryUrl, run);
    // The archive, read by DuckDB, holds the same totals.
    await expectArchiveAgrees(cfg, run);
  });
});
