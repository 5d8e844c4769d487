// The worker's close sequence, in order: readiness turns false, consumers stop receiving (their last long poll is not
// aborted: SQS may hand a message to a receive whose connection was dropped and hide it for a whole visibility
// timeout; what it brings is released at once), in-flight batches may finish for SLUICE_WORKER_SHUTDOWN_GRACE, the
// rest are released (visibility 0), attempts still running after their release are awaited (bounded), then the ops
// server and the clients close.
import type { FastifyInstance } from 'fastify';
import type { Consumer } from 'sqs-consumer';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { sleep } from '../shared/retry.js';
import { pollsEnded } from './consumers.js';
import type { MessageHandler } from './message-handler.js';
import type { WorkerClients } from './worker-clients.js';
import type { WorkerMetrics } from './worker-metrics.js';

/** How long close() waits for attempts that kept running after their message was released. */
const BACKGROUND_DRAIN_MS = 5_000;
/** How much longer than a long poll a last receive may take to come back. */
const POLL_SLACK_MS = 2_000;

export interface RunningWorker {
  cfg: Pick<Config, 'SLUICE_WORKER_POLL_WAIT' | 'SLUICE_WORKER_SHUTDOWN_GRACE'>;
  consumers: readonly Consumer[];
  handler: MessageHandler;
  metrics: WorkerMetrics;
  app: FastifyInstance;
  clients: WorkerClients;
  /** Turns readiness false and makes the handler release whatever still arrives. */
  markStopping(): void;
  /** Aborts the batches still running: they are released at their next step. */
  releaseInFlight(): void;
  log: Logger;
}

export async function closeWorker(w: RunningWorker): Promise<void> {
  w.markStopping();
  for (const c of w.consumers) c.stop();
  const pollsDone = pollsEnded(w.consumers, w.cfg.SLUICE_WORKER_POLL_WAIT + POLL_SLACK_MS);
  const inFlight = async () => (await w.metrics.inFlight.get()).values[0]?.value ?? 0;
  const deadline = Date.now() + w.cfg.SLUICE_WORKER_SHUTDOWN_GRACE;
  while (Date.now() < deadline && (await inFlight()) > 0) await sleep(50);
  w.releaseInFlight();
  await pollsDone;
  while ((await inFlight()) > 0) await sleep(20);
  await Promise.race([Promise.all(w.handler.background), sleep(BACKGROUND_DRAIN_MS)]);
  await w.app.close();
  await w.clients.close();
  w.log.info('worker stopped');
}
