// GET /v1/ops/summary: the operational numbers the dashboard plots, in one JSON answer — batch and dead-letter queue
// depths read from SQS, and the ingest node's and fleet supervisor's counters scraped from their /metrics
// (SLUICE_INGEST_URL, SLUICE_FLEET_URL). A part that cannot be read is null with its reason; the rest still answers.
// The queue depths are also exported on the query API's own /metrics (sluice_queue_messages), for alerting.
// Internal URLs and error texts are shown only to a caller with an operator key (SLUICE_OPERATOR_KEYS, compared in
// constant time); anyone else sees health states and numbers only (`detailed: false`, no `url`, empty `errors`).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ApiKeys, bearerKey } from '../shared/api-keys.js';
import type { Config } from '../shared/config.js';
import { createSqs } from '../shared/clients/aws.js';
import { errorMessage } from '../shared/errors.js';
import { prom } from '../shared/metrics.js';
import { scrapeMetrics, sumOf, type Sample } from '../shared/prom-text.js';
import { readQueueStats, type QueueStats } from '../shared/queue-stats.js';

export interface OpsSummary {
  time: string;
  queue: QueueStats | null;
  deadLetters: QueueStats | null;
  /** Whether URLs and error texts are included (the caller gave an operator key). */
  detailed: boolean;
  ingest: {
    /** Only in the detailed view. */
    url?: string;
    up: boolean;
    /** Counters since the ingest node started; the dashboard turns successive values into rates. */
    eventsAccepted: number | null;
    eventsRejected: number | null;
    requests: number | null;
    /** Requests answered 503 (backpressure or shutting down): producers are being pushed back. */
    requests503: number | null;
    backlogBytes: number | null;
  };
  fleet: {
    /** Only in the detailed view. */
    url?: string;
    up: boolean;
    desiredWorkers: number | null;
    workers: { starting: number; running: number; draining: number } | null;
    /** Events counted into InfluxDB by the fleet's workers since the fleet started. */
    eventsProcessed: number | null;
    oldestMessageAgeSeconds: number | null;
    freshnessSeconds: number | null;
  };
  /** Why a part is null; empty in the public view. */
  errors: string[];
}

/**
 * Whether the request carries one of the operator keys (`Authorization: Bearer <key>`), compared in constant time
 * against every configured key (shared/api-keys.ts), so timing tells nothing about a key.
 */
export function operatorKeyCheck(keys: readonly string[]): (req: FastifyRequest) => boolean {
  const known = new ApiKeys(new Map(keys.map((k) => [k, 'operator'])));
  return (req) => {
    if (known.empty) return false;
    const key = bearerKey(req.headers.authorization);
    return typeof key === 'string' && known.nameOf(key) !== undefined;
  };
}

/** The summary without anything internal: URLs and error texts removed. */
export function publicSummary(s: OpsSummary): OpsSummary {
  const { url: _i, ...ingest } = s.ingest;
  const { url: _f, ...fleet } = s.fleet;
  return { ...s, detailed: false, ingest, fleet, errors: [] };
}

export interface OpsSummaryDeps {
  cfg: Config;
  registry: prom.Registry;
}

/** Dashboards poll every few seconds; one summary serves every request of this window. */
const SUMMARY_TTL_MS = 1_000;
const SCRAPE_TIMEOUT_MS = 1_500;

export function registerOpsSummaryRoute(app: FastifyInstance, deps: OpsSummaryDeps): void {
  const { cfg } = deps;
  const sqs = createSqs(cfg);
  app.addHook('onClose', async () => {
    sqs.destroy();
  });

  const scrape = async (url: string, what: string, errors: string[]): Promise<Sample[] | undefined> => {
    try {
      return await scrapeMetrics(url, SCRAPE_TIMEOUT_MS);
    } catch (err) {
      errors.push(`${what} metrics at ${url}/metrics: ${errorMessage(err)}`);
      return undefined;
    }
  };
  const queue = async (name: string, errors: string[]): Promise<QueueStats | null> => {
    try {
      return await readQueueStats(sqs, name);
    } catch (err) {
      errors.push(errorMessage(err));
      return null;
    }
  };

  const compute = async (): Promise<OpsSummary> => {
    const errors: string[] = [];
    const [main, dlq, ingest, fleet] = await Promise.all([
      queue(cfg.SLUICE_QUEUE_NAME, errors),
      queue(cfg.SLUICE_DLQ_NAME, errors),
      scrape(cfg.SLUICE_INGEST_URL, 'ingest', errors),
      scrape(cfg.SLUICE_FLEET_URL, 'fleet', errors),
    ]);
    const i = (name: string, match?: Record<string, string>) => (ingest ? (sumOf(ingest, name, match) ?? 0) : null);
    const f = (name: string, match?: Record<string, string>) => (fleet ? (sumOf(fleet, name, match) ?? null) : null);
    return {
      time: new Date().toISOString(),
      detailed: true,
      queue: main,
      deadLetters: dlq,
      ingest: {
        url: cfg.SLUICE_INGEST_URL,
        up: ingest !== undefined,
        eventsAccepted: i('sluice_ingest_events_total', { outcome: 'accepted' }),
        eventsRejected: i('sluice_ingest_events_total', { outcome: 'rejected' }),
        requests: i('sluice_ingest_requests_total'),
        requests503: i('sluice_ingest_requests_total', { status: '503' }),
        backlogBytes: i('sluice_ingest_backlog_bytes'),
      },
      fleet: {
        url: cfg.SLUICE_FLEET_URL,
        up: fleet !== undefined,
        desiredWorkers: f('sluice_fleet_desired_workers'),
        workers: fleet
          ? {
              starting: f('sluice_fleet_workers', { state: 'starting' }) ?? 0,
              running: f('sluice_fleet_workers', { state: 'running' }) ?? 0,
              draining: f('sluice_fleet_workers', { state: 'draining' }) ?? 0,
            }
          : null,
        eventsProcessed: f('sluice_fleet_worker_events_total') ?? (fleet ? 0 : null),
        oldestMessageAgeSeconds: f('sluice_queue_oldest_message_age_seconds'),
        freshnessSeconds: f('sluice_pipeline_freshness_seconds'),
      },
      errors,
    };
  };

  let cached: { at: number; value: Promise<OpsSummary> } | undefined;
  const summary = (): Promise<OpsSummary> => {
    const now = Date.now();
    if (!cached || now - cached.at >= SUMMARY_TTL_MS) cached = { at: now, value: compute() };
    return cached.value;
  };

  const isOperator = operatorKeyCheck(cfg.SLUICE_OPERATOR_KEYS);
  app.get('/v1/ops/summary', async (req, reply) => {
    void reply.header('cache-control', 'no-store');
    const s = await summary();
    return isOperator(req) ? s : publicSummary(s);
  });

  // Queue depths on the query API's /metrics too: in Kubernetes (KEDA scales the workers, no fleet runs) this is
  // where Prometheus finds them for the "dead letters" and "no workers but a backlog" alerts.
  new prom.Gauge({
    name: 'sluice_queue_messages',
    help: 'Messages in a queue (batches, dead_letter) by state (visible, in_flight, delayed), read from SQS at scrape time.',
    labelNames: ['queue', 'state'],
    registers: [deps.registry],
    async collect() {
      const s = await summary();
      for (const [queue, q] of [
        ['batches', s.queue],
        ['dead_letter', s.deadLetters],
      ] as const) {
        if (!q) continue;
        this.set({ queue, state: 'visible' }, q.visible);
        this.set({ queue, state: 'in_flight' }, q.inFlight);
        this.set({ queue, state: 'delayed' }, q.delayed);
      }
    },
  });
}
