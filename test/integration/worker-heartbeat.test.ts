// A batch that takes longer than the visibility timeout stays with its worker (the heartbeat extends it),
// so no other worker receives it meanwhile; and a worker is not ready while Redis is unreachable.
import { describe, expect, it } from 'vitest';
import { sleep } from '../../shared/retry.js';
import { startWorker } from '../../workers/main.js';
import { testConfig } from '../support/config.js';
import { closedAfterEach, workerTestLog } from '../support/in-process.js';
import { FAST_WORKER_ENV, metricValueOrZero, pastHour, queueDepth, randomEvents, sendManifests, uploadBatches, waitUntil } from '../support/batches.js';

const log = workerTestLog;
const running = closedAfterEach();

describe('worker heartbeat and readiness', () => {
  it('keeps a slow batch invisible to other workers until it is done', async () => {
    const cfg = await testConfig({ ...FAST_WORKER_ENV, SLUICE_VISIBILITY_TIMEOUT: '2s' });
    const [batch] = await uploadBatches(cfg, randomEvents(500, { start: pastHour() }));
    const received: string[] = [];
    const slow = (name: string) => async (step: string) => {
      if (step !== 'decoded') return;
      received.push(name);
      await sleep(7_000); // 3.5 visibility timeouts
    };
    const a = await startWorker(cfg, log, { workerId: 'a', onStep: slow('a') });
    const b = await startWorker(cfg, log, { workerId: 'b', onStep: slow('b') });
    running.push(a, b);
    await sendManifests(cfg, [batch!.body]);
    await waitUntil(
      'delivered',
      async () =>
        (await metricValueOrZero(a.url, 'sluice_worker_batches_total', 'outcome="delivered"')) +
          (await metricValueOrZero(b.url, 'sluice_worker_batches_total', 'outcome="delivered"')) ===
        1,
      20_000,
    );
    expect(received).toHaveLength(1);
    expect(await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)).toBe(0);
  });

  it('reports not ready while Redis is unreachable', async () => {
    const cfg = await testConfig({ ...FAST_WORKER_ENV, SLUICE_REDIS_URL: 'redis://127.0.0.1:1' });
    const w = await startWorker(cfg, log);
    running.push(w);
    const res = await fetch(`${w.url}/readyz`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { reason: string }).reason).toMatch(/Redis/);
    expect((await fetch(`${w.url}/healthz`)).status).toBe(200);
  });
});
