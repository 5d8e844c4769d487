// The automatic reconcile: once at start, then every SLUICE_RECONCILE_INTERVAL, over the event-time range
// [now − SLUICE_RECONCILE_LOOKBACK, now + 1h). A run waits while the batch queue holds any message (visible, in
// flight or delayed): every batch then is either delivered (in the ledger) or unannounced, so nothing in flight is
// announced twice; objects written within SLUICE_RECONCILE_GRACE are left to the ingest that is announcing them.
import type { Config } from '../../shared/config.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { queueBacklog } from '../../shared/queue-stats.js';
import { reconcile, type ReconcileDeps, type ReconcileSummary } from './reconcile.js';

const HOUR_MS = 3_600_000;

export interface ReconcileSchedule {
  /** Resolves when the run in progress (if any) has finished. */
  stop(): Promise<void>;
  /** Runs once now (unless one is running) and returns its summary, or undefined when it waited for the queue. */
  runOnce(): Promise<ReconcileSummary | undefined>;
}

export function startReconcileSchedule(
  deps: ReconcileDeps,
  cfg: Pick<Config, 'SLUICE_RECONCILE_INTERVAL' | 'SLUICE_RECONCILE_GRACE' | 'SLUICE_RECONCILE_LOOKBACK'>,
  log: Logger,
): ReconcileSchedule {
  let running: Promise<ReconcileSummary | undefined> | undefined;
  let stopped = false;
  const runOnce = (): Promise<ReconcileSummary | undefined> => {
    running ??= (async () => {
      try {
        const backlog = await queueBacklog(deps.sqs, deps.queueName);
        if (backlog > 0) {
          log.debug({ backlog }, 'reconcile waits: the batch queue is not empty');
          return undefined;
        }
        const now = Date.now();
        const s = await reconcile(deps, { fromMs: now - cfg.SLUICE_RECONCILE_LOOKBACK, toMs: now + HOUR_MS, graceMs: cfg.SLUICE_RECONCILE_GRACE, nowMs: now });
        const line = { listed: s.listed, delivered: s.delivered, announced: s.announced, recent: s.recent, problems: s.problems.length, seconds: s.seconds };
        if (s.announced || s.problems.length) log.warn({ ...line, problems: s.problems.slice(0, 5) }, 'reconcile announced undelivered batches again');
        else log.info(line, 'reconcile: every archived batch is delivered or on its way');
        return s;
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'reconcile run failed; the next run tries again');
        return undefined;
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  const timer = cfg.SLUICE_RECONCILE_INTERVAL > 0 ? setInterval(() => void (stopped || runOnce()), cfg.SLUICE_RECONCILE_INTERVAL) : undefined;
  timer?.unref();
  if (cfg.SLUICE_RECONCILE_INTERVAL > 0) void runOnce();
  return {
    runOnce,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
