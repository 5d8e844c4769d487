// The fleet supervisor (`sluice fleet`): runs `sluice worker` processes (worker-pool.ts) and sizes the fleet by the
// batch queue's depth and oldest message (scaler.ts, with scaling-policy.ts deciding), one poll every
// SLUICE_FLEET_POLL_INTERVAL. A worker is
// stopped only by draining it (SIGTERM, then SIGKILL after SLUICE_FLEET_DRAIN_GRACE) and counts as gone only once it
// has exited; a worker that dies unasked is replaced. close() stops polling, drains every worker and waits for them.
import { createSqs } from '../../shared/clients/aws.js';
import type { Config } from '../../shared/config.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { createRegistry } from '../../shared/metrics.js';
import { sluiceCommand } from '../../shared/process-commands.js';
import type { Service } from '../../shared/service.js';
import { fleetApi } from './fleet-api.js';
import { FleetMetrics } from './fleet-metrics.js';
import { FleetHistory } from './history.js';
import { Scaler } from './scaler.js';
import type { ScalingOptions } from './scaling-policy.js';
import { WorkerPool } from './worker-pool.js';

export interface FleetOptions {
  /** Command line that starts one worker process; defaults to this CLI's `worker` sub-command. */
  workerCommand?: string[];
}

/** How long start-up waits for the first SLUICE_FLEET_MIN workers before reporting ready anyway. */
const INITIAL_READY_WAIT_MS = 60_000;

/** Runs `tick` every `intervalMs` after the previous one ended, until stopped; a failed tick is logged. */
function pollLoop(intervalMs: number, tick: () => Promise<void>, log: Logger): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const next = () => {
    timer = setTimeout(() => {
      tick()
        .catch((err: unknown) => log.error({ err: errorMessage(err) }, 'fleet poll failed'))
        .finally(() => {
          if (!stopped) next();
        });
    }, intervalMs);
  };
  next();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

export async function startFleet(cfg: Config, log: Logger, opts: FleetOptions = {}): Promise<Service> {
  const flog = log.child({ component: 'fleet' });
  const policy: ScalingOptions = {
    min: cfg.SLUICE_FLEET_MIN,
    max: cfg.SLUICE_FLEET_MAX,
    targetPerWorker: cfg.SLUICE_FLEET_TARGET_PER_WORKER,
    cooldownMs: cfg.SLUICE_FLEET_COOLDOWN,
    maxAgeMs: cfg.SLUICE_FLEET_MAX_AGE,
  };
  const registry = createRegistry('fleet');
  const metrics = new FleetMetrics(registry);
  const sqs = createSqs(cfg);
  const history = new FleetHistory();
  const command = opts.workerCommand ?? sluiceCommand('worker');
  const pool = new WorkerPool({ command, drainGraceMs: cfg.SLUICE_FLEET_DRAIN_GRACE, initialTarget: policy.min, metrics, history, log: flog });
  const scaler = new Scaler({
    sqs,
    queueName: cfg.SLUICE_QUEUE_NAME,
    deadLetterQueueName: cfg.SLUICE_DLQ_NAME,
    policy,
    flushMaxAgeMs: cfg.SLUICE_FLUSH_MAX_AGE,
    pool,
    metrics,
    history,
    log: flog,
  });
  let closing = false;
  const app = fleetApi({ registry, policy, scaler, pool, history, stopping: () => closing });
  let url: string;
  try {
    url = await app.listen({ host: '127.0.0.1', port: cfg.SLUICE_FLEET_PORT });
  } catch (err) {
    sqs.destroy();
    throw err;
  }

  pool.reconcile();
  if (!(await pool.waitReady(INITIAL_READY_WAIT_MS))) flog.warn('not every initial worker is ready yet; continuing');
  await scaler.tick().catch((err: unknown) => flog.error({ err: errorMessage(err) }, 'fleet poll failed'));
  const loop = pollLoop(cfg.SLUICE_FLEET_POLL_INTERVAL, () => scaler.tick(), flog);
  flog.info({ url, ...policy, pollMs: cfg.SLUICE_FLEET_POLL_INTERVAL }, 'fleet supervisor started');

  let closed: Promise<void> | undefined;
  const close = async () => {
    closing = true;
    loop.stop();
    await pool.close();
    await app.close();
    sqs.destroy();
    flog.info('fleet supervisor stopped');
  };
  return { url, close: () => (closed ??= close()) };
}
