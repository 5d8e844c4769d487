// The producer client against a real ingest node: batching + gzip, honouring 429 Retry-After until everything
// is accepted, per-event rejections reported, the breaker and the bounded queue when the node is unreachable.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIngest } from '../../ingest/main.js';
import { SluiceClient, QueueFullError, type DeliveryError } from '../../ingest/client/index.js';
import { createLogger } from '../../shared/logger.js';
import { testConfig } from '../support/config.js';

const log = createLogger('test', 'warn');

describe('producer client', () => {
  let ingest: Awaited<ReturnType<typeof startIngest>>;
  beforeAll(async () => {
    const cfg = await testConfig({ SLUICE_API_KEYS: 'web:k', SLUICE_RATE_LIMIT_EVENTS: '1000', SLUICE_RATE_LIMIT_BURST: '1000' });
    ingest = await startIngest(cfg, log);
  });
  afterAll(async () => {
    await ingest?.close();
  });
  const ev = (id: string, extra: Record<string, unknown> = {}) => ({ eventId: id, entityId: 'video-A', eventType: 'view', timestamp: Date.now(), ...extra });

  it('delivers everything through 429s by honouring Retry-After, and reports rejected events by id', async () => {
    const errors: DeliveryError[] = [];
    const client = new SluiceClient({ url: ingest.url, apiKey: 'k', maxBatchEvents: 250, concurrency: 2, onError: (e) => errors.push(e) });
    for (let i = 0; i < 2_500; i++) client.add(ev(`c-${i}`));
    client.add(ev('bad', { eventType: 'Not Valid' }));
    await client.close();
    expect(client.stats.accepted).toBe(2_500);
    expect(client.stats.retries).toBeGreaterThan(0); // the 1,000 events/s limit was hit and waited out
    expect(client.stats.failed).toBe(0);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.rejected[0]).toMatchObject({ eventId: 'bad', reason: expect.stringMatching(/eventType must match/) });
  });

  it('does not retry a request the node refuses for good (wrong key)', async () => {
    const errors: DeliveryError[] = [];
    const client = new SluiceClient({ url: ingest.url, apiKey: 'wrong', onError: (e) => errors.push(e) });
    client.add(ev('x'));
    await client.close();
    expect(client.stats.retries).toBe(0);
    expect(errors[0]!.status).toBe(403);
  });

  it('opens its breaker against an unreachable node, gives up after maxAttempts, and bounds its queue', async () => {
    const errors: DeliveryError[] = [];
    const client = new SluiceClient({
      url: 'http://127.0.0.1:9',
      maxBatchEvents: 10,
      maxQueuedEvents: 50,
      maxAttempts: 3,
      backoffBaseMs: 10,
      backoffMaxMs: 20,
      breakerFailures: 2,
      breakerOpenMs: 300,
      concurrency: 1,
      onError: (e) => errors.push(e),
    });
    for (let i = 0; i < 50; i++) client.add(ev(`q-${i}`));
    expect(() => client.add(ev('one-too-many'))).toThrow(QueueFullError);
    expect(() => client.add(ev('one-too-many'))).toThrow(/queue is full \(50 events buffered\)/);
    await new Promise((r) => setTimeout(r, 100));
    expect(client.breakerOpen).toBe(true);
    await client.close();
    expect(client.stats.failed).toBe(50);
    expect(errors.every((e) => /after 3 attempts/.test(e.message))).toBe(true);
  });
});
