// The `sluice` commands of the retention and repair jobs: rollup, compact, audit, reconcile and replay. Each prints
// what it will touch before it starts and its progress on stderr; results go to stdout, the exit code says pass/fail.
import type { Command } from 'commander';
import type { Config } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';

/** --from/--to values: ISO-8601 or epoch milliseconds. */
async function timeOption(name: string, raw: string | undefined): Promise<number | undefined> {
  if (raw === undefined) return undefined;
  const { parseTimestamp } = await import('../shared/contracts/event.js');
  const t = parseTimestamp(/^\d{1,15}$/.test(raw) ? Number(raw) : raw);
  if (typeof t !== 'number') {
    process.stderr.write(`--${name} must be an ISO-8601 time or epoch milliseconds, got ${JSON.stringify(raw)}\n`);
    process.exit(2);
  }
  return t;
}
const stderrProgress = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const DAY_MS = 86_400_000;
/** --from/--to with defaults: --to now, --from `span` before --to; refuses an empty range. */
async function rangeOptions(o: { from?: string; to?: string }, spanMs: number): Promise<{ fromMs: number; toMs: number }> {
  const toMs = (await timeOption('to', o.to)) ?? Date.now();
  const fromMs = (await timeOption('from', o.from)) ?? toMs - spanMs;
  if (fromMs >= toMs) {
    process.stderr.write(`--from must be before --to, got ${new Date(fromMs).toISOString()} → ${new Date(toMs).toISOString()}\n`);
    process.exit(2);
  }
  return { fromMs, toMs };
}

/** Registers the retention and repair commands; `config` loads (or exits on) the configuration. */
export function addRetentionCommands(program: Command, config: () => Config): void {
  program
    .command('rollup')
    .description('fold minutes into hourly/daily rollups (InfluxDB + cold Parquet); resumes from its checkpoint and re-rolls the late window')
    .option('--from <time>', 're-roll from this time (ISO-8601 or epoch ms) instead of the checkpoint')
    .option('--to <time>', 're-roll up to this time (default: the last complete period)')
    .option('--resolution <res>', '1h, 1d or both', 'both')
    .action(async (o: { from?: string; to?: string; resolution: string }) => {
      const cfg = config();
      const { runRollup } = await import('../workers/cold/rollup.js');
      stderrProgress(
        `rollup: reading InfluxDB ${cfg.SLUICE_INFLUX_DB} at ${cfg.SLUICE_INFLUX_URL}, writing its hourly/daily rollups there and rollup files to s3://${cfg.SLUICE_COLD_BUCKET}`,
      );
      const resolutions =
        o.resolution === 'both' ? undefined : o.resolution === '1h' || o.resolution === '1d' ? ([o.resolution] as ('1h' | '1d')[]) : undefined;
      if (o.resolution !== 'both' && !resolutions) {
        process.stderr.write(`--resolution must be 1h, 1d or both, got ${JSON.stringify(o.resolution)}\n`);
        process.exit(2);
      }
      const summary = await runRollup(cfg, {
        log: createLogger('rollup', cfg.SLUICE_LOG_LEVEL),
        fromMs: await timeOption('from', o.from),
        toMs: await timeOption('to', o.to),
        resolutions,
      });
      for (const s of summary)
        process.stdout.write(
          `${s.res}: ${new Date(s.fromMs).toISOString()} → ${new Date(s.toMs).toISOString()}: ${s.rows} rollup rows, ${s.points} InfluxDB points, ${s.files.length} cold file(s)\n`,
        );
      process.exit(0);
    });
  program
    .command('compact')
    .description('merge raw batch files of days older than SLUICE_COMPACT_AFTER into verified per-day files in the cold bucket')
    .option('--day <YYYY-MM-DD...>', 'only these event-time days')
    .action(async (o: { day?: string[] }) => {
      const cfg = config();
      const { runCompaction } = await import('../workers/cold/compaction.js');
      stderrProgress(
        `compact: merging raw files of s3://${cfg.SLUICE_RAW_BUCKET}/events/ older than ${cfg.SLUICE_COMPACT_AFTER / 86_400_000} day(s) into s3://${cfg.SLUICE_COLD_BUCKET}; originals are deleted only after verification`,
      );
      const t0 = performance.now();
      const days = await runCompaction(cfg, { log: createLogger('compaction', cfg.SLUICE_LOG_LEVEL), days: o.day, progress: stderrProgress });
      const rows = days.reduce((n, d) => n + d.rows, 0);
      for (const d of days)
        process.stdout.write(
          `${d.dt}: ${d.id ? `${d.inputs} raw file(s), ${d.rows} events → compacted-${d.id}.parquet (${d.bytesOut} bytes)` : 'nothing to compact'}${d.finishedDeletes ? `; finished ${d.finishedDeletes} delete(s) of an earlier run` : ''}${d.pendingDeletes ? `; ${d.pendingDeletes} replaced raw file(s) kept until SLUICE_COMPACTION_DELETE_GRACE has passed (a later run deletes them)` : ''}\n`,
        );
      process.stdout.write(`${days.length} day(s), ${rows} events in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
      process.exit(0);
    });
  program
    .command('audit')
    .description('recompute counts and sums from the Parquet archive and compare them with the query API; exits 1 on any mismatch')
    .option('--from <time>', 'start of the range (ISO-8601 or epoch ms; default: 24 hours before --to)')
    .option('--to <time>', 'end of the range (exclusive; default: now)')
    .option('--entity <entityId>', 'only this entity')
    .option('--event-type <eventType>', 'only this event type')
    .option('--query-url <url>', 'query API to check (default SLUICE_QUERY_URL)')
    .action(async (o: { from?: string; to?: string; entity?: string; eventType?: string; queryUrl?: string }) => {
      const cfg = config();
      const { runAudit, formatAudit } = await import('../workers/cold/audit.js');
      const { fromMs, toMs } = await rangeOptions(o, DAY_MS);
      stderrProgress(
        `audit: event times ${new Date(fromMs).toISOString()} → ${new Date(toMs).toISOString()}${o.entity ? `, entity ${o.entity}` : ''}${o.eventType ? `, type ${o.eventType}` : ''}: ` +
          `reading s3://${cfg.SLUICE_RAW_BUCKET} and s3://${cfg.SLUICE_COLD_BUCKET}, comparing with ${o.queryUrl ?? cfg.SLUICE_QUERY_URL}`,
      );
      const report = await runAudit(cfg, {
        fromMs,
        toMs,
        entityId: o.entity,
        eventType: o.eventType,
        queryUrl: o.queryUrl,
        progress: stderrProgress,
      });
      process.stdout.write(formatAudit(report) + '\n');
      process.exit(report.mismatches.length ? 1 : 0);
    });
  program
    .command('reconcile')
    .description('announce again every archived batch no worker delivered (not in the ledger, older than SLUICE_RECONCILE_GRACE); safe to repeat')
    .option('--from <time>', 'event-time start (ISO-8601 or epoch ms; default: SLUICE_RECONCILE_LOOKBACK before --to)')
    .option('--to <time>', 'event-time end, exclusive (default: one hour from now)')
    .option('--grace <duration>', 'leave batches written less than this long ago (default SLUICE_RECONCILE_GRACE)')
    .action(async (o: { from?: string; to?: string; grace?: string }) => {
      const cfg = config();
      const { parseDuration } = await import('../shared/config-fields.js');
      const graceMs = o.grace === undefined ? cfg.SLUICE_RECONCILE_GRACE : parseDuration(o.grace);
      if (graceMs === undefined) {
        process.stderr.write(`--grace must be a duration like 0s, 5m or 1h, got ${JSON.stringify(o.grace)}\n`);
        process.exit(2);
      }
      const { reconcileCommand } = await import('./reconcile.js');
      const range = await rangeOptions({ from: o.from, to: o.to ?? String(Date.now() + 3_600_000) }, cfg.SLUICE_RECONCILE_LOOKBACK);
      const r = await reconcileCommand(cfg, { ...range, graceMs, progress: stderrProgress });
      process.stdout.write(r.text + '\n');
      process.exit(0);
    });
  program
    .command('replay')
    .description('announce again every archived batch of a range (delivered or not) so workers recount it, e.g. after a fix; counts stay exact')
    .requiredOption('--from <time>', 'event-time start (ISO-8601 or epoch ms)')
    .requiredOption('--to <time>', 'event-time end, exclusive')
    .option('--entity <entityId>', 'only batches holding this entity (each batch is downloaded and read)')
    .action(async (o: { from: string; to: string; entity?: string }) => {
      const cfg = config();
      const { replayCommand } = await import('./reconcile.js');
      const range = await rangeOptions(o, DAY_MS);
      const r = await replayCommand(cfg, { ...range, entityId: o.entity, progress: stderrProgress });
      process.stdout.write(r.text + '\n');
      process.exit(0);
    });
}
