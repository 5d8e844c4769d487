#!/usr/bin/env node
// The `sluice` command: one sub-command per process (ingest, worker, fleet, query), the local stack (start),
// resource setup, dead-letter handling and configuration help.
import { Command } from 'commander';
import { loadConfig, configMarkdown, redactedConfig, type Config } from '../shared/config.js';
import { ConfigError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { closeOnSignals, type Service } from '../shared/service.js';

function config(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`Invalid configuration:\n${err.message}\nSee the configuration table in README.md or run: sluice config\n`);
      process.exit(2);
    }
    throw err;
  }
}

async function serve(name: string, start: (cfg: Config, log: ReturnType<typeof createLogger>) => Promise<Service>): Promise<void> {
  const cfg = config();
  const log = createLogger(name, cfg.SLUICE_LOG_LEVEL);
  let service: Service;
  try {
    service = await start(cfg, log);
  } catch (err) {
    // A start refused by policy (e.g. a non-loopback bind without keys) reads like a configuration error.
    if (err instanceof ConfigError) {
      process.stderr.write(`Refusing to start ${name}:\n${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  closeOnSignals(service, log);
  if (process.send) process.send({ ready: true, url: service.url });
}

const program = new Command('sluice').description('Sluice: a micro-batch event pipeline (ingest → Parquet on S3 → SQS → workers → InfluxDB)');

program
  .command('start')
  .description('run the whole pipeline on this machine (one ingest node, a worker fleet and the query API) against the configured services')
  .action(async () => {
    const { runPipeline } = await import('./start.js');
    await runPipeline(config());
  });
program
  .command('ingest')
  .description('run one ingest node (POST /v1/events)')
  .action(async () => {
    const { startIngest } = await import('../ingest/main.js');
    await serve('ingest', startIngest);
  });
program
  .command('worker')
  .description('run one worker process (SQS → S3 → InfluxDB)')
  .action(async () => {
    const { startWorker } = await import('../workers/main.js');
    await serve('worker', startWorker);
  });
program
  .command('fleet')
  .description('run the worker fleet supervisor: SLUICE_FLEET_MIN…MAX worker processes sized by the queue depth')
  .action(async () => {
    const { startFleet } = await import('../workers/fleet/supervisor.js');
    await serve('fleet', startFleet);
  });
program
  .command('query')
  .description('run the query API (GET /v1/stats, /v1/topk, …)')
  .action(async () => {
    const { startQuery } = await import('../query/main.js');
    await serve('query', startQuery);
  });
program
  .command('setup')
  .description('create the buckets and queues (names and settings from the configuration) on the configured endpoint')
  .action(async () => {
    const cfg = config();
    const { setupResources } = await import('../shared/setup-resources.js');
    const { createInflux, ensureDatabase } = await import('../shared/clients/influx.js');
    await setupResources(cfg);
    await ensureDatabase(createInflux(cfg), cfg.SLUICE_INFLUX_DB);
    process.stdout.write(
      `buckets ${cfg.SLUICE_RAW_BUCKET}, ${cfg.SLUICE_COLD_BUCKET}, queues ${cfg.SLUICE_QUEUE_NAME} → ${cfg.SLUICE_DLQ_NAME} and InfluxDB database ${cfg.SLUICE_INFLUX_DB} are ready\n`,
    );
    process.exit(0);
  });
program
  .command('config')
  .description('print the effective configuration (or the README table with --markdown)')
  .option('--markdown', 'print the documentation table of every setting')
  .action((o: { markdown?: boolean }) => {
    if (o.markdown) {
      process.stdout.write(configMarkdown() + '\n');
      return;
    }
    const cfg = config();
    process.stdout.write(JSON.stringify(redactedConfig(cfg), null, 2) + '\n'); // secrets hidden, URL passwords masked
  });

program
  .command('load')
  .description('send a generated load (Zipf entities, type mix, duplicates, late events, bursts) and record the ground truth')
  .option('--url <url>', 'ingest node', 'http://127.0.0.1:8080')
  .option('--api-key <key>', 'producer API key')
  .option('--rate <n>', 'events per second (steady)', '10000')
  .option('--duration <d>', 'how long, e.g. 60s or 5m', '60s')
  .option('--entities <n>', 'distinct entities', '10000')
  .option('--skew <s>', 'Zipf exponent (higher = fewer, heavier hitters)', '1.1')
  .option('--types <mix>', 'event-type mix', 'view:0.85,like:0.12,share:0.03')
  .option('--duplicates <ratio>', 'fraction of sends that re-send an earlier eventId', '0.01')
  .option('--late <ratio>', 'fraction of events stamped 5–60 minutes in the past', '0.01')
  .option('--burst <spec>', 'every/for/factor, e.g. 30s/5s/10 (none to disable)', '30s/3s/5')
  .option('--seed <n>', 'random seed', '1')
  .option('--truth <file>', 'write the ground truth (unique events per entity, type and minute) as NDJSON', 'load-truth.ndjson')
  .action(async (o: Record<string, string>) => {
    const { parseDuration } = await import('../shared/config.js');
    const { runLoad } = await import('./load-generator.js');
    const num = (name: string, v: string, min = 0) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < min) {
        process.stderr.write(`--${name} must be a number ≥ ${min}, got "${v}"\n`);
        process.exit(2);
      }
      return n;
    };
    const types = Object.fromEntries(
      o.types!.split(',').map((p) => {
        const [k, w] = p.split(':');
        return [k!, num('types', w ?? '1')];
      }),
    );
    const [every, dur, factor] = o.burst === 'none' ? ['0', '0', '1'] : o.burst!.split('/');
    const durationMs = parseDuration(o.duration!);
    if (durationMs === undefined) {
      process.stderr.write(`--duration must be a duration like 60s or 5m, got "${o.duration}"\n`);
      process.exit(2);
    }
    const res = await runLoad({
      url: o.url!,
      apiKey: o.apiKey,
      rate: num('rate', o.rate!, 1),
      durationMs,
      entities: num('entities', o.entities!, 1),
      skew: num('skew', o.skew!),
      types,
      duplicateRatio: num('duplicates', o.duplicates!),
      lateRatio: num('late', o.late!),
      burstEveryMs: parseDuration(every ?? '0') ?? 0,
      burstForMs: parseDuration(dur ?? '0') ?? 0,
      burstFactor: num('burst factor', factor ?? '1'),
      seed: num('seed', o.seed!),
      idPrefix: `load-${Date.now().toString(36)}`,
      truthFile: o.truth,
      onProgress: (p) =>
        process.stderr.write(
          `\r${Math.round(p.elapsedMs / 1000)}s  sent ${p.sent.toLocaleString()}  unique ${p.unique.toLocaleString()}  re-sent ${p.duplicatesSent.toLocaleString()}  queued ${p.queued.toLocaleString()}   `,
        ),
    });
    process.stderr.write('\n');
    process.stdout.write(
      `${JSON.stringify({ sent: res.sent, uniqueEvents: res.uniqueEvents, duplicatesSent: res.duplicatesSent, failedEvents: res.failedEvents, seconds: res.elapsedMs / 1000, truth: o.truth, client: res.clientStats })}\n`,
    );
    process.exit(res.failedEvents > 0 ? 1 : 0);
  });

const dlq = program.command('dlq').description('inspect and re-drive dead-lettered batches');
dlq
  .command('list')
  .description('list dead letters with their reasons')
  .option('--max <n>', 'at most this many', '100')
  .action(async (o: { max: string }) => {
    const { listDeadLetters } = await import('../workers/dead-letters.js');
    const items = await listDeadLetters(config(), { max: Number(o.max) });
    if (!items.length) {
      process.stdout.write('dead-letter queue is empty\n');
      return;
    }
    for (const d of items) process.stdout.write(`${d.messageId}  ${d.reason.padEnd(28)}  ${d.key ?? '-'}  ${d.detail ?? ''}\n`);
  });
dlq
  .command('show <messageId>')
  .description('print one dead letter in full')
  .action(async (id: string) => {
    const { showDeadLetter } = await import('../workers/dead-letters.js');
    const d = await showDeadLetter(config(), id);
    if (!d) {
      process.stderr.write(`no dead letter with id ${id}\n`);
      process.exit(1);
    }
    process.stdout.write(JSON.stringify(d, null, 2) + '\n');
  });
dlq
  .command('redrive [messageIds...]')
  .description('move dead letters back to the batch queue (all with --all)')
  .option('--all', 're-drive every dead letter')
  .action(async (ids: string[], o: { all?: boolean }) => {
    if (!o.all && ids.length === 0) {
      process.stderr.write('give message ids or --all\n');
      process.exit(2);
    }
    const { redriveDeadLetters } = await import('../workers/dead-letters.js');
    const c = config();
    process.stderr.write(
      `moving ${o.all ? 'every dead letter' : `${ids.length} dead letter(s)`} from SQS queue ${c.SLUICE_DLQ_NAME} back to ${c.SLUICE_QUEUE_NAME}\n`,
    );
    const n = await redriveDeadLetters(config(), o.all ? { all: true } : { ids });
    process.stdout.write(`re-drove ${n} message(s)\n`);
  });

const quarantine = program.command('quarantine').description('inspect and release events set aside because they could not be processed');
quarantine
  .command('list')
  .description('list quarantine objects: id, kind (segment/batch), events, first reason, age')
  .action(async () => {
    const { quarantineList, formatQuarantineList } = await import('./quarantine.js');
    process.stdout.write(formatQuarantineList(await quarantineList(config())) + '\n');
  });
quarantine
  .command('show <id>')
  .description('print the records of one quarantine object (NDJSON: line, reason, detail, node, lineNo, …)')
  .action(async (id: string) => {
    const { quarantineShow } = await import('./quarantine.js');
    if (!(await quarantineShow(config(), id, process.stdout))) {
      process.stderr.write(`no quarantine object ${id}; run sluice quarantine list\n`);
      process.exit(1);
    }
  });
quarantine
  .command('release <id>')
  .description('deliver the lines that pass the event contract now as a new batch; only still-bad lines stay quarantined')
  .option('--file <fixed.ndjson>', 'records as printed by `show`, with their "line" fixed; they replace the stored lines of the same lineNo')
  .action(async (id: string, o: { file?: string }) => {
    const { quarantineRelease } = await import('./quarantine.js');
    const r = await quarantineRelease(config(), id, { file: o.file, progress: (m) => process.stderr.write(`${m}\n`) });
    for (const m of r.manifests) process.stdout.write(`released ${m.eventCount} event(s): s3://${m.bucket}/${m.key}\n`);
    for (const x of r.remaining) process.stdout.write(`still quarantined: line ${x.lineNo}: ${x.reason}: ${x.detail}\n`);
    process.stdout.write(`${r.id}: ${r.released} released, ${r.remaining.length} still quarantined${r.deleted ? '; quarantine object deleted' : ''}\n`);
    process.exit(0);
  });

// ---- retention jobs: rollups, compaction, audits, canary ---------------------------------------

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
    const resolutions = o.resolution === 'both' ? undefined : o.resolution === '1h' || o.resolution === '1d' ? ([o.resolution] as ('1h' | '1d')[]) : undefined;
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
        `${d.dt}: ${d.id ? `${d.inputs} raw file(s), ${d.rows} events → compacted-${d.id}.parquet (${d.bytesOut} bytes)` : 'nothing to compact'}${d.finishedDeletes ? `; finished ${d.finishedDeletes} delete(s) of an earlier run` : ''}\n`,
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
    const { parseDuration } = await import('../shared/config.js');
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
program
  .command('canary')
  .description('send known events to ingest and alert (Prometheus metrics) when the query API does not count them in time')
  .action(async () => {
    const { startCanary } = await import('../workers/canary/canary.js');
    await serve('canary', startCanary);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`sluice: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
