// The canary (`sluice canary`, a weak continuous audit): sends one known event to ingest every
// SLUICE_CANARY_INTERVAL and watches the query API count it. Each event counted sets the last-success time
// and the lag; one not counted within SLUICE_CANARY_MAX_DELAY is a failure. Its own series per run, so
// nothing else's counts move.
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import type { Config } from '../../shared/config.js';
import { ConfigError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { addOpsRoutes, createRegistry } from '../../shared/metrics.js';
import type { Service } from '../../shared/service.js';
import { type CanaryMetrics, canaryMetrics } from './canary-metrics.js';

export const CANARY_EVENT_TYPE = 'canary';
/** How often the query API is asked whether pending canary events were counted. */
export const CANARY_CHECK_MS = 1_000;
const REQUEST_TIMEOUT_MS = 10_000;

interface Pending {
  seq: number;
  sentAt: number;
  failed: boolean;
}

type CanarySettings = Pick<Config, 'SLUICE_INGEST_URL' | 'SLUICE_QUERY_URL' | 'SLUICE_API_KEYS' | 'SLUICE_CANARY_MAX_DELAY' | 'SLUICE_NODE_ID'>;

/** Sends numbered events of this run's own entity and matches them against the count the query API answers. */
class CanaryProbe {
  readonly entityId: string;
  private readonly apiKey: string | undefined;
  private readonly pending: Pending[] = [];
  private seq = 0;

  constructor(
    private readonly cfg: CanarySettings,
    private readonly m: CanaryMetrics,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    this.entityId = `canary:${cfg.SLUICE_NODE_ID}:${now().toString(36)}`;
    this.apiKey = [...cfg.SLUICE_API_KEYS.keys()][0];
  }

  async send(): Promise<void> {
    const s = ++this.seq;
    const event = { eventId: `${this.entityId}:${s}`, entityId: this.entityId, eventType: CANARY_EVENT_TYPE, timestamp: this.now(), value: 1 };
    try {
      const res = await fetch(`${this.cfg.SLUICE_INGEST_URL}/v1/events`, {
        method: 'POST',
        body: JSON.stringify([event]),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        headers: { 'content-type': 'application/json', ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}) },
      });
      if (!res.ok) throw new Error(`ingest answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
      this.m.sent.inc();
      this.pending.push({ seq: s, sentAt: event.timestamp, failed: false });
    } catch (err) {
      this.m.failures.inc({ reason: 'ingest' });
      this.log.warn({ err: errorMessage(err) }, 'canary event not accepted by ingest');
    }
  }

  /** The total the query API counts for this run's entity, or -1 when it cannot be read. */
  private async counted(): Promise<number> {
    try {
      const res = await fetch(`${this.cfg.SLUICE_QUERY_URL}/v1/entities/${encodeURIComponent(this.entityId)}/total?eventType=${CANARY_EVENT_TYPE}`, {
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      if (!res.ok) throw new Error(`query API answered ${res.status}`);
      return ((await res.json()) as { count: number }).count;
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'canary could not read the query API');
      return -1;
    }
  }

  async check(): Promise<void> {
    const { pending, m } = this;
    if (!pending.length) return;
    const counted = await this.counted();
    const t = this.now();
    // Event n is counted once the total reaches n (each has its own id; the series is this run's alone).
    while (pending.length && pending[0]!.seq <= counted) {
      const p = pending.shift()!;
      const seconds = (t - p.sentAt) / 1000;
      m.lag.set(seconds);
      m.lagHist.observe(seconds);
      m.lastSuccess.set(t / 1000);
    }
    for (const p of pending) {
      if (!p.failed && t - p.sentAt > this.cfg.SLUICE_CANARY_MAX_DELAY) {
        p.failed = true;
        m.failures.inc({ reason: 'not_counted' });
        this.log.warn({ seq: p.seq, entityId: this.entityId, waitedMs: t - p.sentAt }, 'canary event not counted within SLUICE_CANARY_MAX_DELAY');
      }
    }
    if (pending.length) m.lag.set((t - pending[0]!.sentAt) / 1000);
  }
}

export async function startCanary(cfg: Config, log: Logger, opts: { now?: () => number } = {}): Promise<Service> {
  if (!cfg.SLUICE_CANARY_ENABLED) throw new ConfigError('the canary is switched off: set SLUICE_CANARY_ENABLED=true to run `sluice canary`');
  const registry = createRegistry('canary');
  const probe = new CanaryProbe(cfg, canaryMetrics(registry), log, opts.now ?? Date.now);
  let stopped = false;
  const sendTimer = setInterval(() => {
    if (!stopped) void probe.send();
  }, cfg.SLUICE_CANARY_INTERVAL);
  const checkTimer = setInterval(
    () => {
      if (!stopped) void probe.check();
    },
    Math.min(CANARY_CHECK_MS, cfg.SLUICE_CANARY_INTERVAL),
  );
  void probe.send();

  const app = Fastify({ logger: false });
  addOpsRoutes(app, registry);
  await app.listen({ host: '127.0.0.1', port: cfg.SLUICE_CANARY_PORT });
  const address = app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${address.port}`;
  log.info({ url, entityId: probe.entityId, interval: cfg.SLUICE_CANARY_INTERVAL }, 'canary started');
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
