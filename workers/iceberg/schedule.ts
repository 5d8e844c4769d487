// The automatic Iceberg commit of `sluice start`: once at start, then every SLUICE_ICEBERG_COMMIT_INTERVAL, the
// commit job (workers/iceberg/commit-job.ts) over the whole archive and the rollup files, followed by the tables'
// maintenance (snapshot expiry, metadata clean-up). A run never overlaps the previous one; a failed run is logged
// and the next one tries again (every run is safe to repeat).
import type { Config } from '../../shared/config.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { runCommitJob, type CommitJobDeps, type CommitJobSummary } from './commit-job.js';

export interface IcebergSchedule {
  /** Resolves when the run in progress (if any) has finished. */
  stop(): Promise<void>;
  /** Runs once now (unless one is running) and returns its summary, or undefined when it failed. */
  runOnce(): Promise<CommitJobSummary | undefined>;
}

export function startIcebergSchedule(deps: CommitJobDeps, cfg: Pick<Config, 'SLUICE_ICEBERG_COMMIT_INTERVAL'>, log: Logger): IcebergSchedule {
  let running: Promise<CommitJobSummary | undefined> | undefined;
  let stopped = false;
  const runOnce = (): Promise<CommitJobSummary | undefined> => {
    running ??= (async () => {
      try {
        const s = await runCommitJob(deps);
        const line = {
          version: s.version,
          compactions: s.compactions,
          appended: s.appended,
          waiting: s.waiting,
          rollupsVersion: s.rollups.version,
          rollupFiles: s.rollups.added + s.rollups.replaced + s.rollups.removed,
          expiredSnapshots: s.maintenance.reduce((n, m) => n + m.expiredSnapshots, 0),
          deletedFiles: s.maintenance.reduce((n, m) => n + m.deletedExpired + m.deletedMetadata + m.deletedOrphans, 0),
          problems: s.problems.length,
          seconds: s.seconds,
        };
        if (s.problems.length) log.warn({ ...line, problems: s.problems.slice(0, 5) }, 'Iceberg commit: some objects cannot be registered');
        else log.info(line, 'Iceberg commit: the tables hold every durable batch and rollup file');
        return s;
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'Iceberg commit failed; the next run tries again');
        return undefined;
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  const interval = cfg.SLUICE_ICEBERG_COMMIT_INTERVAL;
  const timer = interval > 0 ? setInterval(() => void (stopped || runOnce()), interval) : undefined;
  timer?.unref();
  if (interval > 0) void runOnce();
  return {
    runOnce,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
