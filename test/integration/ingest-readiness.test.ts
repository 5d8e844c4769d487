// An ingest node whose S3 or SQS goes away keeps acknowledging into its WAL, opens that dependency's circuit
// breaker, reports not ready on /readyz (with the reason) and, once the undelivered backlog passes
// SLUICE_BACKLOG_MAX_BYTES, answers 503 with Retry-After; when the dependency is back everything held is delivered.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIngest } from '../../ingest/main.js';
import { createSqs } from '../../shared/clients/aws.js';
import { loadConfig } from '../../shared/config.js';
import { decodeManifest } from '../../shared/contracts/manifest.js';
import { createLogger } from '../../shared/logger.js';
import { metricValue, metricValueOrZero, waitUntil } from '../support/batches.js';
import { startAwsProxy, type AwsProxy } from '../support/aws-proxy.js';
import { testConfig } from '../support/config.js';
import { TEST_ENDPOINTS } from '../support/endpoints.js';
import { receiveAll } from '../support/sqs.js';

const log = createLogger('ingest-readiness', process.env.SLUICE_LOG_LEVEL ?? 'silent');
type Started = Awaited<ReturnType<typeof startIngest>>;

describe('ingest readiness, circuit breakers and the backlog limit', () => {
  let proxy: AwsProxy;
  let cfg: Awaited<ReturnType<typeof testConfig>>;
  let ingest: Started;
  let seq = 0;
  const post = (n: number) =>
    fetch(`${ingest.url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(
        Array.from({ length: n }, () => ({ eventId: `r-${seq++}`, entityId: `video-${seq % 5}`, eventType: 'view', timestamp: Date.now(), value: 1 })),
      ),
    });
  const readyz = async () => {
    const r = await fetch(`${ingest.url}/readyz`);
    return { status: r.status, body: (await r.json()) as { status: string; reason?: string } };
  };
  /** Events announced by the manifests on the queue so far (deleted as they are read). */
  let announced = 0;
  const collectManifests = async () => {
    const sqs = createSqs(cfg);
    try {
      for (const m of await receiveAll(sqs, cfg.SLUICE_QUEUE_NAME, { deleteThem: true, waitMs: 500 })) announced += decodeManifest(m.body).eventCount;
    } finally {
      sqs.destroy();
    }
    return announced;
  };

  beforeAll(async () => {
    proxy = await startAwsProxy(TEST_ENDPOINTS.awsEndpoint);
    cfg = await testConfig({ SLUICE_FLUSH_MAX_AGE: '200ms', SLUICE_BACKLOG_MAX_BYTES: '16KiB' });
    // The node talks to S3 and SQS through the proxy; the test itself reads the emulator directly.
    ingest = await startIngest(loadConfig({ ...process.env, ...cfg.env, AWS_ENDPOINT_URL: proxy.url }), log);
  });
  afterAll(async () => {
    proxy.mode = 'up';
    await ingest?.close();
    await proxy?.close();
  });

  for (const dependency of ['s3', 'sqs'] as const) {
    it(`with ${dependency.toUpperCase()} down: not ready, breaker open, 503 + Retry-After past the backlog limit; all delivered after`, async () => {
      expect(await readyz()).toEqual({ status: 200, body: { status: 'ready' } });
      // The breaker gauge gets its label only at the first state change.
      expect(await metricValueOrZero(ingest.url, 'sluice_ingest_breaker_open', `dependency="${dependency}"`)).toBe(0);
      const before = await collectManifests();

      proxy.mode = dependency === 's3' ? 's3-down' : 'sqs-down';
      let accepted = 0;
      const r1 = await post(20);
      expect(r1.status).toBe(202); // durable in the WAL: acknowledged although the dependency is down
      accepted += ((await r1.json()) as { accepted: number }).accepted;
      await waitUntil(`${dependency} breaker open`, async () => (await readyz()).status === 503, 60_000);
      expect(await readyz()).toEqual({ status: 503, body: { status: 'not_ready', reason: `${dependency.toUpperCase()} circuit breaker is open` } });
      expect(await metricValue(ingest.url, 'sluice_ingest_breaker_open', `dependency="${dependency}"`)).toBe(1);

      // Fill the backlog past SLUICE_BACKLOG_MAX_BYTES (16 KiB): then requests are turned away with 503 + Retry-After.
      let refused: Response | undefined;
      for (let i = 0; i < 50 && !refused; i++) {
        const r = await post(100);
        if (r.status === 503) refused = r;
        else {
          expect(r.status).toBe(202);
          accepted += ((await r.json()) as { accepted: number }).accepted;
        }
      }
      expect(refused?.status).toBe(503);
      expect(Number(refused!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(((await refused!.json()) as { error: string }).error).toMatch(/backlog/);

      // Back up: the breaker closes, the node is ready again, and every acknowledged event is announced.
      proxy.mode = 'up';
      await waitUntil('ready again', async () => (await readyz()).status === 200, 60_000);
      await waitUntil('backlog delivered', () => ingest.delivery.pendingSegments === 0 && ingest.delivery.backlogBytes === 0, 60_000);
      await waitUntil('all acknowledged events announced', async () => (await collectManifests()) - before === accepted, 30_000);
      expect(await metricValue(ingest.url, 'sluice_ingest_breaker_open', `dependency="${dependency}"`)).toBe(0);
      expect((await post(5)).status).toBe(202);
    }, 150_000);
  }
});
