// haproxy in front of two real ingest nodes (the load balancer of `SLUICE_INGEST_NODES=2 npm start`,
// localstack/load-balancer.ts), on free loopback ports: requests are split over both nodes; a node whose S3 goes away
// (its breaker opens, /readyz answers 503) is taken out within the health-check interval while every request keeps
// being acknowledged by the other, and comes back once it is ready; a node stopped with SIGTERM drains while every
// request keeps succeeding; every acknowledged event is announced in a manifest once.
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type LoadBalancer, startLoadBalancer } from '../../localstack/load-balancer.js';
import { ensureDebianPackages } from '../../localstack/services.js';
import { createSqs } from '../../shared/clients/aws.js';
import { decodeManifest } from '../../shared/contracts/manifest.js';
import { createLogger } from '../../shared/logger.js';
import { startAwsProxy, type AwsProxy } from '../support/aws-proxy.js';
import { metricValueOrZero, waitUntil } from '../support/batches.js';
import { testConfig } from '../support/config.js';
import { TEST_ENDPOINTS } from '../support/endpoints.js';
import { freePort } from '../support/ports.js';
import { startProcess, type ChildService } from '../support/processes.js';
import { receiveAll } from '../support/sqs.js';

const log = createLogger('load-balancer-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');

/** Why haproxy is unavailable (the suite is skipped), or undefined once it is installed. */
const haproxyMissing = (() => {
  try {
    ensureDebianPackages(log, { haproxy: true });
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
})();
if (haproxyMissing) process.stderr.write(`load-balancer.test.ts skipped: haproxy cannot be installed here: ${haproxyMissing}\n`);

const CHECK_INTERVAL_MS = 500;
const FALL = 2;

describe.skipIf(haproxyMissing !== undefined)('haproxy in front of two ingest nodes', () => {
  const children: ChildService[] = [];
  let proxy: AwsProxy | undefined;
  let lb: LoadBalancer | undefined;
  afterAll(async () => {
    await lb?.stop();
    for (const c of children) await c.kill('SIGKILL');
    await proxy?.close();
  });

  it('splits requests, takes out a node that is not ready or draining within the check interval, and every request succeeds', async () => {
    const cfg = await testConfig({ SLUICE_FLUSH_MAX_AGE: '200ms', SLUICE_LOG_LEVEL: 'info' });
    // Node b reaches S3 and SQS through a proxy that can take S3 down (its breaker then opens: /readyz 503).
    proxy = await startAwsProxy(TEST_ENDPOINTS.awsEndpoint);
    const [a, b] = await Promise.all([
      startProcess('ingest', { ...cfg.env, SLUICE_NODE_ID: 'lb-a' }, 'lb-a'),
      startProcess('ingest', { ...cfg.env, SLUICE_NODE_ID: 'lb-b', AWS_ENDPOINT_URL: proxy.url }, 'lb-b'),
    ]);
    children.push(a, b);
    lb = await startLoadBalancer(
      {
        host: '127.0.0.1',
        port: await freePort(),
        backends: [
          { name: 'lb-a', url: a.url },
          { name: 'lb-b', url: b.url },
        ],
        dir: path.join(cfg.SLUICE_DATA_DIR, 'haproxy'),
        checkIntervalMs: CHECK_INTERVAL_MS,
        fall: FALL,
        rise: 2,
        requestTimeoutMs: cfg.SLUICE_INGEST_REQUEST_TIMEOUT,
        idleTimeoutMs: cfg.SLUICE_INGEST_IDLE_TIMEOUT,
        keepAliveTimeoutMs: cfg.SLUICE_INGEST_KEEPALIVE_TIMEOUT,
      },
      log,
    );
    const front = lb;
    const states = () => front.serverStates();
    await waitUntil('both nodes UP', async () => Object.values(await states()).join() === 'UP,UP', 30_000);

    let seq = 0;
    let acknowledged = 0;
    const failures: string[] = [];
    /** One request of 10 events through the load balancer; every answer but 202 is a failure of the test. */
    const send = async () => {
      const now = Date.now();
      const body = Array.from({ length: 10 }, () => ({ eventId: `lb-${seq++}`, entityId: `video-${seq % 5}`, eventType: 'view', timestamp: now }));
      try {
        const r = await fetch(`${front.url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        const text = await r.text();
        if (r.status === 202) acknowledged += (JSON.parse(text) as { accepted: number }).accepted;
        else failures.push(`${r.status} ${text}`);
      } catch (err) {
        failures.push(String(err));
      }
    };
    const sendMany = async (n: number) => {
      for (let i = 0; i < n; i += 4) await Promise.all([send(), send(), send(), send()]);
    };
    /** Sends continuously (4 in flight) until the returned stop() is called. */
    const background = () => {
      let running = true;
      const loop = (async () => {
        while (running) await Promise.all([send(), send(), send(), send()]);
      })();
      return async () => {
        running = false;
        await loop;
      };
    };
    const accepted = (url: string) => metricValueOrZero(url, 'sluice_ingest_events_total', 'outcome="accepted"');

    // 1. Requests are split over both nodes.
    await sendMany(40);
    const [a1, b1] = [await accepted(a.url), await accepted(b.url)];
    expect(a1).toBeGreaterThan(0);
    expect(b1).toBeGreaterThan(0);
    expect(a1 + b1).toBe(400);
    expect(failures).toEqual([]);

    // 2. Node b's S3 goes away: its breaker opens, /readyz answers 503, haproxy takes it out within the interval.
    proxy.mode = 's3-down';
    const stopSending = background();
    await waitUntil('lb-b not ready', async () => (await fetch(`${b.url}/readyz`)).status === 503, 90_000);
    const notReadyAt = Date.now();
    await waitUntil('haproxy marks lb-b DOWN', async () => (await states())['lb-b']?.startsWith('DOWN') === true, 20_000);
    const takenOutMs = Date.now() - notReadyAt;
    // fall × interval, plus one interval for the check in progress and some scheduling slack on a busy machine.
    expect(takenOutMs).toBeLessThan((FALL + 1) * CHECK_INTERVAL_MS + 3_000);
    await stopSending();
    const bWhileDown = await accepted(b.url);
    const aWhileDown = await accepted(a.url);
    await sendMany(40);
    expect(await accepted(b.url)).toBe(bWhileDown); // no request reached the node that is not ready
    expect(await accepted(a.url)).toBe(aWhileDown + 400);
    expect(failures).toEqual([]);

    // 3. S3 is back: b delivers what it held, is ready again, and haproxy sends it requests again.
    proxy.mode = 'up';
    await waitUntil('haproxy marks lb-b UP again', async () => (await states())['lb-b'] === 'UP', 90_000);
    await sendMany(20);
    expect(await accepted(b.url)).toBeGreaterThan(bWhileDown);

    // 4. Node b drains (SIGTERM) under load: every request keeps being acknowledged, b exits after delivering.
    const stopLoad = background();
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await b.kill('SIGTERM')).toBe(0);
    await waitUntil('haproxy marks lb-b DOWN after its exit', async () => (await states())['lb-b']?.startsWith('DOWN') === true, 20_000);
    await new Promise((r) => setTimeout(r, 1_000));
    await stopLoad();
    expect(failures).toEqual([]);
    expect(await a.kill('SIGTERM')).toBe(0);

    // Every acknowledged event is announced once: both nodes delivered everything they took.
    const sqs = createSqs(cfg);
    try {
      const manifests = (await receiveAll(sqs, cfg.SLUICE_QUEUE_NAME, { waitMs: 3_000, deleteThem: true })).map((m) => decodeManifest(m.body));
      expect(new Set(manifests.map((m) => m.key)).size).toBe(manifests.length);
      expect(manifests.reduce((n, m) => n + m.eventCount, 0)).toBe(acknowledged);
      expect(manifests.some((m) => m.key.includes('/lb-a-'))).toBe(true);
      expect(manifests.some((m) => m.key.includes('/lb-b-'))).toBe(true);
    } finally {
      sqs.destroy();
    }
  }, 300_000);
});
