// `sluice iceberg commit`: brings the Iceberg tables up to date (workers/iceberg/) — sluice.events with the verified
// compactions and durable raw batches it does not hold yet, sluice.rollups with new or rewritten rollup files — then
// maintains both (snapshot expiry, metadata clean-up). `sluice iceberg maintain` runs the maintenance alone. Both are
// safe to repeat or to run beside `sluice start`, which runs the same job every SLUICE_ICEBERG_COMMIT_INTERVAL.
import type { Command } from 'commander';
import type { Config } from '../shared/config.js';
import { icebergLayout } from '../shared/contracts/iceberg-table.js';
import { createLogger } from '../shared/logger.js';

const stderrProgress = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

const where = (cfg: Config) =>
  `${icebergLayout('events').location(cfg.SLUICE_RAW_BUCKET)} and ${icebergLayout('rollups').location(cfg.SLUICE_RAW_BUCKET)} ` +
  `(commit pointers in Redis, prefix ${cfg.SLUICE_REDIS_PREFIX})`;

const expiryLine = (cfg: Config) =>
  `snapshots kept ${cfg.SLUICE_ICEBERG_SNAPSHOT_RETENTION ? `${cfg.SLUICE_ICEBERG_SNAPSHOT_RETENTION / 3_600_000} h` : 'forever'} ` +
  `(at least ${cfg.SLUICE_ICEBERG_MIN_SNAPSHOTS}), orphan grace ${cfg.SLUICE_ICEBERG_ORPHAN_GRACE ? `${cfg.SLUICE_ICEBERG_ORPHAN_GRACE / 3_600_000} h` : 'forever'}`;

/** Registers `sluice iceberg`; `config` loads (or exits on) the configuration. */
export function addIcebergCommands(program: Command, config: () => Config): void {
  const iceberg = program.command('iceberg').description('the Iceberg tables sluice.events (the Parquet archive) and sluice.rollups');
  iceberg
    .command('commit')
    .description(
      'commit to the tables the verified compactions, durable raw batches and rollup files they do not hold yet, then expire old snapshots; safe to repeat',
    )
    .option('--day <YYYY-MM-DD...>', 'only these event-time days of the archive')
    .option('--no-maintain', 'skip the snapshot expiry and metadata clean-up after the commits')
    .action(async (o: { day?: string[]; maintain: boolean }) => {
      const cfg = config();
      for (const d of o.day ?? [])
        if (!/^\d{4}-\d{2}-\d{2}$/.test(d) || Number.isNaN(Date.parse(`${d}T00:00:00Z`))) {
          process.stderr.write(`--day must be a date like 2026-11-24, got ${JSON.stringify(d)}\n`);
          process.exit(2);
        }
      const { openArchiveTable, runCommitJob, formatCommitJob } = await import('../workers/iceberg/commit-job.js');
      stderrProgress(
        `iceberg: committing the archive of s3://${cfg.SLUICE_RAW_BUCKET}/events/, the compacted days of s3://${cfg.SLUICE_COLD_BUCKET}/events/ ` +
          `and the rollups of s3://${cfg.SLUICE_COLD_BUCKET}/rollups/ to the tables at ${where(cfg)}` +
          (o.maintain ? `; ${expiryLine(cfg)}` : ''),
      );
      const t = openArchiveTable(cfg, createLogger('iceberg', cfg.SLUICE_LOG_LEVEL));
      try {
        const s = await runCommitJob(t.deps, { days: o.day, maintain: o.maintain, progress: stderrProgress });
        process.stdout.write(formatCommitJob(s) + '\n');
      } finally {
        t.close();
      }
      process.exit(0);
    });
  iceberg
    .command('maintain')
    .description('expire snapshots older than SLUICE_ICEBERG_SNAPSHOT_RETENTION and delete unreferenced metadata files of both tables; safe to repeat')
    .action(async () => {
      const cfg = config();
      const { openArchiveTable, formatMaintenance } = await import('../workers/iceberg/commit-job.js');
      const { maintainTable, maintenanceSettings } = await import('../workers/iceberg/maintenance.js');
      stderrProgress(`iceberg: maintaining the tables at ${where(cfg)}; ${expiryLine(cfg)}`);
      const t = openArchiveTable(cfg, createLogger('iceberg', cfg.SLUICE_LOG_LEVEL));
      try {
        for (const table of [t.deps.table, t.deps.rollups])
          process.stdout.write(formatMaintenance(await maintainTable(table, maintenanceSettings(cfg))) + '\n');
      } finally {
        t.close();
      }
      process.exit(0);
    });
}
