// Prometheus metrics: one registry per process with default Node metrics, and the small HTTP surface
// every service shares (/healthz, /readyz, /metrics). Processes of one node (node:cluster workers of
// `sluice ingest --processes N`) answer /metrics with the sum over all of them, asked of their primary over IPC
// (prom-client's AggregatorRegistry); when the primary cannot answer in time a process answers with its own metrics
// and says so (`sluice_metrics_aggregated 0`, header x-sluice-metrics-scope: process), never with a silent part.
import cluster, { type Worker } from 'node:cluster';
import client from 'prom-client';
import type { FastifyInstance } from 'fastify';
import type { Logger } from './logger.js';

export { client as prom };

export function createRegistry(service: string): client.Registry {
  const registry = new client.Registry();
  registry.setDefaultLabels({ service });
  client.collectDefaultMetrics({ register: registry });
  return registry;
}

/** Undefined when ready, otherwise the reason the service should not receive traffic. */
export type Readiness = () => Promise<string | undefined> | string | undefined;

/**
 * How long a process waits for its primary's sum before answering with its own metrics: below the dashboard's scrape
 * timeout (query/ops-summary.ts, 1.5 s) and far below Prometheus's (10 s by default). A sum takes a few milliseconds.
 */
export const CLUSTER_METRICS_TIMEOUT_MS = 1_000;

/** The header that says what a /metrics answer covers: every process of the node, or only the one that answered. */
export const METRICS_SCOPE_HEADER = 'x-sluice-metrics-scope';
/** The process (node id) that answered a /metrics request of a node with several processes. */
export const METRICS_PROCESS_HEADER = 'x-sluice-metrics-process';
/** Why an answer holds only the answering process's metrics. */
export const METRICS_FALLBACK_HEADER = 'x-sluice-metrics-fallback';

// One request of a process to its primary and the primary's answer (prom-client's own messages carry the parts).
const SUM_REQUEST = 'sluice:metrics-sum-request';
const SUM_ANSWER = 'sluice:metrics-sum-answer';
interface SumRequest {
  type: typeof SUM_REQUEST;
  id: number;
}
type SumAnswer = { type: typeof SUM_ANSWER; id: number } & ({ text: string } | { error: string });
const isMessage = <T extends { type: string }>(m: unknown, type: T['type']): m is T =>
  typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type;

export interface ClusterShare {
  /** The registry's service label (createRegistry). */
  service: string;
  /** This process's name in the answers' header (its node id). */
  process: string;
  /** Where an answer that is not a sum is reported. */
  log: Logger;
}
/** Registries whose process answers /metrics with its primary's sum. */
const shared = new WeakMap<client.Registry, ClusterShare>();

/**
 * In a node:cluster worker (a process of `sluice ingest --processes N`): lets the primary read `registry` (prom-client
 * answers its requests over IPC) and makes /metrics answer with the primary's sum. No-op in any other process.
 */
export function shareWithClusterPrimary(registry: client.Registry, share: ClusterShare): void {
  if (!cluster.isWorker) return;
  // Constructing one installs prom-client's listener for the primary's requests; setRegistries says what it reads.
  new client.AggregatorRegistry();
  client.AggregatorRegistry.setRegistries([registry]);
  shared.set(registry, share);
  // Every process says 1; the sum says how many processes an answer covers.
  new client.Gauge({
    name: 'sluice_metrics_processes',
    help: 'Processes of this node whose metrics this answer sums (sluice ingest --processes); see sluice_metrics_aggregated',
    aggregator: 'sum',
    registers: [registry],
  }).set(1);
}

let nextRequestId = 0;
const waiting = new Map<number, (a: SumAnswer) => void>();
let listening = false;

/** Asks the primary for the sum of every process's metrics: its text, or why there is none (within `timeoutMs`). */
function sumFromPrimary(timeoutMs: number): Promise<{ text: string } | { reason: string }> {
  if (!process.send || !process.connected) return Promise.resolve({ reason: 'this process is not connected to its primary' });
  if (!listening) {
    listening = true;
    process.on('message', (m: unknown) => {
      if (isMessage<SumAnswer>(m, SUM_ANSWER)) waiting.get(m.id)?.(m);
    });
  }
  const id = nextRequestId++;
  return new Promise((resolve) => {
    const done = (r: { text: string } | { reason: string }) => {
      clearTimeout(timer);
      waiting.delete(id);
      resolve(r);
    };
    const timer = setTimeout(() => done({ reason: `the primary did not answer within ${timeoutMs} ms` }), timeoutMs);
    waiting.set(id, (a) => done('text' in a ? { text: a.text } : { reason: a.error }));
    const request: SumRequest = { type: SUM_REQUEST, id };
    process.send!(request, undefined, {}, (err) => {
      if (err) done({ reason: `cannot ask the primary: ${err.message}` });
    });
  });
}

/** `sluice_metrics_aggregated` of one answer: 1 when it sums every process, 0 when it holds only the answering one. */
async function scopeMetric(service: string, aggregated: boolean): Promise<string> {
  const r = new client.Registry();
  r.setDefaultLabels({ service });
  new client.Gauge({
    name: 'sluice_metrics_aggregated',
    help: "1 when this answer sums every process of the node, 0 when it holds only the answering process's metrics (its primary did not answer)",
    registers: [r],
  }).set(aggregated ? 1 : 0);
  return r.metrics();
}

export interface ClusterMetricsOptions {
  /** Why no sum can be made right now (e.g. a process is restarting and would not answer), or undefined. */
  unavailable?: () => string | undefined;
}

/**
 * In the node:cluster primary: answers its processes' requests for the sum of every process's metrics
 * (AggregatorRegistry.clusterMetrics(), each metric by its `aggregator`). Returns a function that stops answering.
 */
export function serveClusterMetrics(o: ClusterMetricsOptions = {}): () => void {
  const aggregator = new client.AggregatorRegistry();
  const onMessage = (worker: Worker, m: unknown) => {
    if (!isMessage<SumRequest>(m, SUM_REQUEST)) return;
    const reason = o.unavailable?.();
    const answer: Promise<{ text: string } | { error: string }> = reason
      ? Promise.resolve({ error: reason })
      : aggregator.clusterMetrics().then(
          (text) => ({ text }),
          (err: unknown) => ({ error: `summing the processes' metrics failed: ${err instanceof Error ? err.message : String(err)}` }),
        );
    void answer.then((a) => {
      const reply: SumAnswer = { type: SUM_ANSWER, id: m.id, ...a };
      // A process that exited meanwhile needs no answer.
      if (worker.isConnected()) worker.send(reply, undefined, () => undefined);
    });
  };
  cluster.on('message', onMessage);
  return () => cluster.off('message', onMessage);
}

/** Adds /healthz (process alive), /readyz (dependencies usable) and /metrics to a fastify app. */
export function addOpsRoutes(app: FastifyInstance, registry: client.Registry, readiness: Readiness = () => undefined): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const reason = await readiness();
    if (reason) return reply.code(503).send({ status: 'not_ready', reason });
    return { status: 'ready' };
  });
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', registry.contentType);
    const share = shared.get(registry);
    if (!share) return registry.metrics();
    reply.header(METRICS_PROCESS_HEADER, share.process);
    const sum = await sumFromPrimary(CLUSTER_METRICS_TIMEOUT_MS);
    if ('text' in sum) {
      reply.header(METRICS_SCOPE_HEADER, 'node');
      return withNewline(sum.text) + (await scopeMetric(share.service, true));
    }
    share.log.warn({ reason: sum.reason }, `/metrics answered with this process's metrics only, not summed over the node's processes: ${sum.reason}`);
    reply.header(METRICS_SCOPE_HEADER, 'process');
    reply.header(METRICS_FALLBACK_HEADER, sum.reason.replace(/[^\x20-\x7e]/g, '?'));
    return withNewline(await registry.metrics()) + (await scopeMetric(share.service, false));
  });
}

const withNewline = (text: string) => (text === '' || text.endsWith('\n') ? text : `${text}\n`);
