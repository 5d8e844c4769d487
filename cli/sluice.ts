#!/usr/bin/env node
// The `sluice` command: one sub-command per process (ingest, worker, fleet, query), the local stack (start),
// resource setup, dead-letter handling and configuration help.
import cluster from 'node:cluster';
import { Command } from 'commander';
import { loadConfig, configMarkdown, redactedConfig, SETTINGS, type Config } from '../shared/config.js';
import { ConfigError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { closeOnSignals, type Service } from '../shared/service.js';
import { addRetentionCommands } from './retention-commands.js';
import { addSchemaCommand } from './schema-command.js';
import { addIcebergCommands } from './iceberg-command.js';
import { addDimensionsCommands } from './dimensions-command.js';

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
  // A process of `sluice ingest --processes N` takes its primary's SIGTERM from now on, so a stop while it starts is kept.
  const closeWhenServing = cluster.isWorker ? closeOnPrimarySignal(log) : undefined;
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
  if (closeWhenServing) closeWhenServing(service);
  else closeOnSignals(service, log);
  if (process.send && process.connected) process.send({ ready: true, url: service.url });
}

/**
 * A process of `sluice ingest --processes N` is stopped by its primary's SIGTERM, and only closes once: the same SIGTERM
 * may also reach it from whoever signals the whole process group or cgroup (systemd, `timeout`), and Ctrl-C's SIGINT
 * reaches every process of the terminal's group. A second signal must not exit it before its WAL is delivered; the
 * primary, which decides, ends it (its exit disconnects this process, which then exits at once).
 */
function closeOnPrimarySignal(log: ReturnType<typeof createLogger>): (service: Service) => void {
  let service: Service | undefined;
  let requested = false;
  let closing = false;
  const close = () => {
    if (closing || !service) return;
    closing = true;
    log.info({ signal: 'SIGTERM' }, 'shutting down');
    service.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => {
    requested = true;
    close();
  });
  // Signals that arrive while the service starts are acted on once it serves (it delivers what it replayed).
  return (s) => {
    service = s;
    if (requested) close();
  };
}

/**
 * `sluice ingest` with more than one process: this process is the primary (ingest/processes.ts), which only starts,
 * restarts and stops the processes. The first SIGTERM or SIGINT drains them all, then it exits; later signals are
 * ignored (e.g. a service manager's SIGTERM to every process, then its supervisor's). Under a supervisor, the supervisor's
 * exit (its IPC channel closes) drains them too.
 */
async function serveIngestProcesses(cfg: Config, processes: number): Promise<void> {
  const log = createLogger('ingest', cfg.SLUICE_LOG_LEVEL);
  const { IngestProcesses } = await import('../ingest/processes.js');
  let stopping: Promise<void> | undefined;
  const stop = (exitCode: number) => {
    stopping ??= primary.stop().then((clean) => process.exit(exitCode || (clean ? 0 : 1)));
  };
  let primary: InstanceType<typeof IngestProcesses>;
  try {
    primary = new IngestProcesses({
      processes,
      node: cfg.SLUICE_NODE_ID,
      host: cfg.SLUICE_INGEST_HOST,
      port: cfg.SLUICE_INGEST_PORT,
      args: ['ingest'],
      log,
      onFatal: (_reason, exitCode) => stop(exitCode),
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`Refusing to start ingest:\n${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopping) {
        log.info({ signal }, 'already draining the ingest processes');
        return;
      }
      log.info({ signal, processes }, `shutting down: draining ${processes} ingest processes`);
      stop(0);
    });
  }
  // Under a supervisor (`sluice start`, in a process group of its own): its exit, however it died, is the stop.
  if (typeof process.send === 'function') {
    const parentGone = () => {
      if (stopping) return;
      log.warn({ processes }, `the supervisor that started this process exited (its IPC channel closed): draining ${processes} ingest processes`);
      stop(0);
    };
    if (process.connected) process.once('disconnect', parentGone);
    else parentGone();
  }
  let url: string;
  try {
    url = await primary.start();
  } catch (err) {
    if (stopping) return; // a signal arrived while starting; stop() exits
    if (err instanceof ConfigError) {
      process.stderr.write(`Refusing to start ingest:\n${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  log.info({ url, processes, nodes: primary.nodes }, `ingest listening: ${processes} processes on one port`);
  if (process.send && process.connected) process.send({ ready: true, url });
}

const program = new Command('sluice').description('Sluice: a micro-batch event pipeline (ingest → Parquet on S3 → SQS → workers → InfluxDB)');

program
  .command('start')
  .description(
    'run the whole pipeline on this machine (one ingest node in SLUICE_INGEST_PROCESSES processes, a worker fleet and the query API) against the configured services',
  )
  .action(async () => {
    const { runPipeline } = await import('./start.js');
    try {
      await runPipeline(config());
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      process.stderr.write(`Refusing to start:\n${err.message}\n`);
      process.exit(2);
    }
  });
program
  .command('ingest')
  .description('run one ingest node (POST /v1/events), in SLUICE_INGEST_PROCESSES processes sharing its port')
  .option(
    '--processes <n>',
    'processes on the port, connections spread round-robin; process i has node id and WAL folder <SLUICE_NODE_ID>-p<i> (default: SLUICE_INGEST_PROCESSES, the number of CPUs)',
  )
  .action(async (o: { processes?: string }) => {
    const { startIngest } = await import('../ingest/main.js');
    // A process forked by the primary below is one node (its id and port come in its environment).
    if (cluster.isWorker) return serve('ingest', startIngest);
    const cfg = config();
    const f = SETTINGS.SLUICE_INGEST_PROCESSES;
    const processes = o.processes === undefined ? cfg.SLUICE_INGEST_PROCESSES : f.parse(o.processes);
    if (processes === undefined) {
      process.stderr.write(`--processes must be ${f.accepts}, got ${JSON.stringify(o.processes)}\n`);
      process.exit(2);
    }
    if (processes === 1) return serve('ingest', startIngest);
    await serveIngestProcesses(cfg, processes);
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
    const { parseDuration } = await import('../shared/config-fields.js');
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

addRetentionCommands(program, config);
addSchemaCommand(program, config);
addIcebergCommands(program, config);
addDimensionsCommands(program, config);

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
