// `sluice iceberg commit`: brings the Iceberg table sluice.events up to date with the archive (workers/iceberg/):
// verified compactions the table lacks, then durable raw batches not committed yet. Safe to repeat or to run
// beside `sluice start`, which runs the same job every SLUICE_ICEBERG_COMMIT_INTERVAL.
import type { Command } from 'commander';
import type { Config } from '../shared/config.js';
import { icebergTableLocation } from '../shared/contracts/iceberg-table.js';
import { createLogger } from '../shared/logger.js';

const stderrProgress = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** Registers `sluice iceberg`; `config` loads (or exits on) the configuration. */
export function addIcebergCommands(program: Command, config: () => Config): void {
  const iceberg = program.command('iceberg').description('the Iceberg table sluice.events over the Parquet archive');
  iceberg
    .command('commit')
    .description('commit to the table the verified compactions and the durable raw batches it does not hold yet; safe to repeat')
    .option('--day <YYYY-MM-DD...>', 'only these event-time days')
    .action(async (o: { day?: string[] }) => {
      const cfg = config();
      for (const d of o.day ?? [])
        if (!/^\d{4}-\d{2}-\d{2}$/.test(d) || Number.isNaN(Date.parse(`${d}T00:00:00Z`))) {
          process.stderr.write(`--day must be a date like 2026-11-24, got ${JSON.stringify(d)}\n`);
          process.exit(2);
        }
      const { openArchiveTable, runCommitJob, formatCommitJob } = await import('../workers/iceberg/commit-job.js');
      stderrProgress(
        `iceberg: committing the archive of s3://${cfg.SLUICE_RAW_BUCKET}/events/ and the compacted days of s3://${cfg.SLUICE_COLD_BUCKET}/events/ ` +
          `to the table at ${icebergTableLocation(cfg.SLUICE_RAW_BUCKET)} (commit pointer in Redis, prefix ${cfg.SLUICE_REDIS_PREFIX})`,
      );
      const t = openArchiveTable(cfg, createLogger('iceberg', cfg.SLUICE_LOG_LEVEL));
      try {
        const s = await runCommitJob(t.deps, { days: o.day, progress: stderrProgress });
        process.stdout.write(formatCommitJob(s) + '\n');
      } finally {
        t.close();
      }
      process.exit(0);
    });
}
