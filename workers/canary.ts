// The canary (`sluice canary`, a weak continuous audit): sends one known event to ingest every
// SLUICE_CANARY_INTERVAL and watches the query API count it. Each event counted sets the last-success time
// and the lag; one not counted within SLUICE_CANARY_MAX_DELAY is a failure. Its own series per run, so
// nothing else's counts move.
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import type { Config } from '../shared/config.js';
import { ConfigError, errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { addOpsRoutes, createRegistry, prom } from '../shared/metrics.js';
import type { Service } from '../shared/service.js';

export const CANARY_EVENT_TYPE = 'canary';
/** How often the query API is asked whether pending canary events were counted. */
export const CANARY_CHECK_MS = 1_000;

interface Pending {
  seq: number;
  sentAt: number;
  failed: boolean;
}

export async function startCanary(cfg: Config, log: Logger, opts: { now?: () => number } = {}): Promise<Service> {
  if (!cfg.SLUICE_CANARY_ENABLED) throw new ConfigError('the canary is switched off: set SLUICE_CANARY_ENABLED=true to run `sluice canary`');
  const now = opts.now ?? Date.now;
  const registry = createRegistry('canary');
  const lastSuccess = new prom.Gauge({
    name: 'sluice_canary_last_success_timestamp_seconds',
    help: 'When the query API last counted a canary event (Unix seconds).',
    registers: [registry],
  });
  const failures = new prom.Counter({
    name: 'sluice_canary_failures_total',
    help: 'Canary events not counted within SLUICE_CANARY_MAX_DELAY, or that ingest refused.',
    labelNames: ['reason'],
    registers: [registry],
  });
  const lag = new prom.Gauge({
    name: 'sluice_canary_lag_seconds',
    help: 'Time from sending the last counted canary event to seeing it in the query API; while events are pending, the age of the oldest.',
    registers: [registry],
  });
  const lagHist = new prom.Histogram({
    name: 'sluice_canary_lag_distribution_seconds',
    help: 'End-to-end lag of counted canary events.',
    buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
    registers: [registry],
  });
  const sent = new prom.Counter({ name: 'sluice_canary_sent_total', help: 'Canary events accepted by ingest.', registers: [registry] });

  const entityId = `canary:${cfg.SLUICE_NODE_ID}:${now().toString(36)}`;
  const apiKey = [...cfg.SLUICE_API_KEYS.keys()][0];
  const pending: Pending[] = [];
  let seq = 0;
  let stopped = false;

  const send = async () => {
    const s = ++seq;
    const event = { eventId: `${entityId}:${s}`, entityId, eventType: CANARY_EVENT_TYPE, timestamp: now(), value: 1 };
    try {
      const res = await fetch(`${cfg.SLUICE_INGEST_URL}/v1/events`, {
        method: 'POST',
        body: JSON.stringify([event]),
        signal: AbortSignal.timeout(10_000),
        headers: { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
      });
      if (!res.ok) throw new Error(`ingest answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
      sent.inc();
      pending.push({ seq: s, sentAt: event.timestamp, failed: false });
    } catch (err) {
      failures.inc({ reason: 'ingest' });
      log.warn({ err: errorMessage(err) }, 'canary event not accepted by ingest');
    }
  };

  const check = async () => {
    if (!pending.length) return;
    let counted: number;
    try {
      const res = await fetch(`${cfg.SLUICE_QUERY_URL}/v1/entities/${encodeURIComponent(entityId)}/total?eventType=${CANARY_EVENT_TYPE}`, {
        signal: AbortSignal.timeout(10_000),
      });
      if (!res.ok) throw new Error(`query API answered ${res.status}`);
      counted = ((await res.json()) as { count: number }).count;
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'canary could not read the query API');
      counted = -1;
    }
    const t = now();
    // Event n is counted once the total reaches n (each has its own id; the series is this run's alone).
    while (pending.length && pending[0]!.seq <= counted) {
      const p = pending.shift()!;
      const seconds = (t - p.sentAt) / 1000;
      lag.set(seconds);
      lagHist.observe(seconds);
      lastSuccess.set(t / 1000);
    }
    for (const p of pending) {
      if (!p.failed && t - p.sentAt > cfg.SLUICE_CANARY_MAX_DELAY) {
        p.failed = true;
        failures.inc({ reason: 'not_counted' });
        log.warn({ seq: p.seq, entityId, waitedMs: t - p.sentAt }, 'canary event not counted within SLUICE_CANARY_MAX_DELAY');
      }
    }
    if (pending.length) lag.set((t - pending[0]!.sentAt) / 1000);
  };

  const sendTimer = setInterval(() => {
    if (!stopped) void send();
  }, cfg.SLUICE_CANARY_INTERVAL);
  const checkTimer = setInterval(
    () => {
      if (!stopped) void check();
    },
    Math.min(CANARY_CHECK_MS, cfg.SLUICE_CANARY_INTERVAL),
  );
  void send();

  const app = Fastify({ logger: false });
  addOpsRoutes(app, registry);
  await app.listen({ host: '127.0.0.1', port: cfg.SLUICE_CANARY_PORT });
  const address = app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${address.port}`;
  log.info({ url, entityId, interval: cfg.SLUICE_CANARY_INTERVAL }, 'canary started');
  return {
    url,
    async close() {
      stopped = true;
      clearInterval(sendTimer);
      clearInterval(checkTimer);
      await app.close();
    },
  };
}
