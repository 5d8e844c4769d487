// `sluice start`: runs the whole pipeline on one machine against the configured services — creates buckets,
// queues and the InfluxDB database, then one ingest node (SLUICE_INGEST_PROCESSES processes on its port; or, with
// SLUICE_INGEST_NODES > 1 and a load balancer given by the caller, that many nodes behind it), the worker fleet
// supervisor (which sizes its workers by the queue depth) and the query API as child processes (shared/supervised-service.ts), each restarted with
// backoff when it crashes (BACKOFF.serviceRestart); a service that crashes SERVICE_RESTARTS.maxCrashes times within
// its window stops the stack, printing the last lines of its log. Reconcile runs at start and every
// SLUICE_RECONCILE_INTERVAL (workers/reconcile/), the Iceberg commit at start and every SLUICE_ICEBERG_COMMIT_INTERVAL
// (workers/iceberg/). Ctrl-C / SIGTERM stops ingest first (it delivers its WAL), lets the workers drain the queue, then
// stops everything this command started. The services run in process groups of their own, so the terminal's Ctrl-C
// reaches only this process, which stops them in that order; each stops by itself when this process dies (also by
// SIGKILL: its IPC channel closes). Once stopping, no service is restarted, even one that exits on its own (a signal a
// service manager sends to every process).
// (`npm start` runs localstack/start.ts, which first brings up local InfluxDB, Redis and S3+SQS, then this.)
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../shared/config.js';
import { assertBindAllowed } from '../shared/bind-policy.js';
import { maskUrl } from '../shared/config-fields.js';
import { ConfigError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { createInflux, ensureDatabase } from '../shared/clients/influx.js';
import { createS3, createSqs } from '../shared/clients/aws.js';
import { createRedis } from '../shared/clients/redis.js';
import { errorMessage } from '../shared/errors.js';
import { SupervisedService, type RestartPolicy } from '../shared/supervised-service.js';
import { queueBacklog } from '../shared/queue-stats.js';
import { BACKOFF, sleep } from '../shared/retry.js';
import { setupResources } from '../shared/setup-resources.js';
import { BatchLedger } from '../workers/reconcile/ledger.js';
import { startReconcileSchedule } from '../workers/reconcile/schedule.js';
import { openArchiveTable } from '../workers/iceberg/commit-job.js';
import { startIcebergSchedule } from '../workers/iceberg/schedule.js';

/** A crashed service is restarted after BACKOFF.serviceRestart; 5 crashes within 2 minutes stop the stack. */
export const SERVICE_RESTARTS: RestartPolicy = { backoff: BACKOFF.serviceRestart, maxCrashes: 5, windowMs: 120_000 };

/** An ingest node behind the load balancer: its service name (and log file) and its URL. */
export interface IngestBackend {
  name: string;
  url: string;
}

/** What a load balancer in front of the ingest nodes is asked to do. */
export interface LoadBalancerRequest {
  /** Where producers reach ingest: SLUICE_INGEST_HOST and SLUICE_INGEST_PORT. */
  host: string;
  port: number;
  backends: IngestBackend[];
  /** The settings (timeouts of the nodes it fronts). */
  cfg: Config;
  /** Folder for its configuration and log (`<SLUICE_DATA_DIR>/logs`). */
  logDir: string;
  /** Called when it exits without being asked to (the stack then stops). */
  onUnexpectedExit(detail: string): void;
}

export interface RunningLoadBalancer {
  url: string;
  /** Stops taking connections, lets requests in progress finish, then exits. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Runs after every child stopped, before this process exits (the local stack stops its services here). */
  afterStop?: () => Promise<unknown>;
  /**
   * Starts the load balancer in front of SLUICE_INGEST_NODES > 1 ingest nodes (npm start: haproxy,
   * localstack/load-balancer.ts). Without it more than one node is refused.
   */
  loadBalancer?: (req: LoadBalancerRequest) => Promise<RunningLoadBalancer>;
}

async function queueDepth(cfg: Config): Promise<number> {
  const sqs = createSqs(cfg);
  try {
    return await queueBacklog(sqs, cfg.SLUICE_QUEUE_NAME);
  } finally {
    sqs.destroy();
  }
}

async function prepareStores(cfg: Config): Promise<void> {
  try {
    await setupResources(cfg);
    await ensureDatabase(createInflux(cfg), cfg.SLUICE_INFLUX_DB);
  } catch (err) {
    throw new Error(
      `cannot prepare the buckets, queues and InfluxDB database (${errorMessage(err)}). Check that S3+SQS answer at AWS_ENDPOINT_URL=${cfg.AWS_ENDPOINT_URL} ` +
        `and InfluxDB at SLUICE_INFLUX_URL=${cfg.SLUICE_INFLUX_URL}; for a local development stack run npm start, which starts them.`,
    );
  }
}

export async function runPipeline(cfg: Config, opts: StartOptions = {}): Promise<void> {
  const nodeCount = cfg.SLUICE_INGEST_NODES;
  if (nodeCount > 1 && !opts.loadBalancer) {
    throw new ConfigError(
      `SLUICE_INGEST_NODES=${nodeCount} needs a load balancer in front of the nodes, and \`sluice start\` has none: run npm start (it puts haproxy in front), ` +
        `or use one node (SLUICE_INGEST_NODES=1) with SLUICE_INGEST_PROCESSES processes on every core`,
    );
  }
  // Behind the load balancer the nodes listen on loopback; what producers reach is the load balancer, checked here.
  if (nodeCount > 1) {
    assertBindAllowed({
      service: 'ingest',
      hostSetting: 'SLUICE_INGEST_HOST',
      host: cfg.SLUICE_INGEST_HOST,
      authenticated: cfg.SLUICE_API_KEYS.size > 0,
      keysSetting: 'SLUICE_API_KEYS',
      allowAnonymous: cfg.SLUICE_ALLOW_ANONYMOUS,
    });
  }
  const log = createLogger('start', cfg.SLUICE_LOG_LEVEL);
  const dataDir = path.resolve(cfg.SLUICE_DATA_DIR);
  const logDir = path.join(dataDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  await prepareStores(cfg);

  const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_DATA_DIR: dataDir };
  let stop: (reason?: string) => Promise<void> = async () => undefined;
  // Signals are taken from the first service on: one that arrives while the stack is still starting ends every
  // restart at once and stops the stack as soon as it is up (a service manager signals every process together).
  const supervised: SupervisedService[] = [];
  let stopRequested = false;
  const onSignal = () => {
    stopRequested = true;
    for (const service of supervised) service.endRestarts();
    void stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const restarts = new Map<string, number>();
  const start = (name: string, command: string, childEnv: NodeJS.ProcessEnv, portSetting: string) =>
    track(
      new SupervisedService(name, [command], {
        env: childEnv,
        logFile: path.join(logDir, `${name}.log`),
        policy: SERVICE_RESTARTS,
        portSetting,
        onStarted: (service, childPid, url) => log.info({ service, childPid, url }, `${service} started`),
        onRestarting: (e) => {
          restarts.set(e.service, e.restarts);
          log.error(
            { service: e.service, code: e.exit.code, signal: e.exit.signal, restarts: e.restarts, restartInMs: Math.round(e.delayMs) },
            `${e.service} exited unexpectedly (${e.exit.signal ?? `code ${e.exit.code}`}); restarting in ${Math.round(e.delayMs)} ms (restart ${e.restarts}); see ${logDir}/${e.service}.log`,
          );
        },
        onExitWhileStopping: (service, exit) =>
          log.info(
            { service, code: exit.code, signal: exit.signal },
            `${service} exited while the stack stops (${exit.signal ?? `code ${exit.code}`}); not restarted`,
          ),
        onCrashLoop: (service, exits, lines) => {
          process.stderr.write(
            `\n${service} crashed ${exits.length} times within ${SERVICE_RESTARTS.windowMs / 1000}s; stopping the stack. Last lines of ${logDir}/${service}.log:\n` +
              lines.map((l) => `  ${l}`).join('\n') +
              '\n',
          );
          void stop(`${service} is crash-looping`);
        },
      }),
    ).start();
  const track = (service: SupervisedService) => {
    supervised.push(service);
    if (stopRequested) service.endRestarts();
    return service;
  };
  // The ingest node is called ingest-1 unless SLUICE_NODE_ID names it; several are ingest-1 … ingest-N (or
  // <SLUICE_NODE_ID>-1 …), each on a free loopback port behind the load balancer. Each runs SLUICE_INGEST_PROCESSES
  // processes (ids <node>-p<i>).
  const ingestNodes =
    nodeCount === 1
      ? [await start('ingest', 'ingest', { SLUICE_NODE_ID: 'ingest-1', ...env }, 'SLUICE_INGEST_PORT')]
      : await Promise.all(
          Array.from({ length: nodeCount }, (_, i) =>
            start(
              `ingest-${i + 1}`,
              'ingest',
              { ...env, SLUICE_NODE_ID: `${env.SLUICE_NODE_ID ?? 'ingest'}-${i + 1}`, SLUICE_INGEST_HOST: '127.0.0.1', SLUICE_INGEST_PORT: '0' },
              'SLUICE_INGEST_PORT',
            ),
          ),
        );
  const front =
    nodeCount > 1
      ? await opts.loadBalancer!({
          host: cfg.SLUICE_INGEST_HOST,
          port: cfg.SLUICE_INGEST_PORT,
          backends: ingestNodes.map((n) => ({ name: n.name, url: n.url })),
          cfg,
          logDir,
          onUnexpectedExit: (detail) => void stop(`the ingest load balancer exited (${detail})`),
        })
      : undefined;
  if (front) log.info({ service: 'load-balancer', url: front.url, backends: ingestNodes.map((n) => n.url) }, 'load-balancer started');
  const ingestUrl = front?.url ?? ingestNodes[0]!.url;
  // The fleet runs SLUICE_FLEET_MIN…MAX `sluice worker` processes on free ports; its log holds theirs too.
  const fleet = await start('fleet', 'fleet', env, 'SLUICE_FLEET_PORT');
  const query = await start('query', 'query', { ...env, SLUICE_INGEST_URL: ingestUrl, SLUICE_FLEET_URL: fleet.url }, 'SLUICE_QUERY_PORT');
  // Batches in the archive that no worker delivered (queue purged, emulator restarted, …) are announced again.
  const redis = createRedis(cfg);
  const reconcileDeps = {
    s3: createS3(cfg),
    sqs: createSqs(cfg),
    ledger: new BatchLedger(redis, cfg.SLUICE_REDIS_PREFIX, cfg.SLUICE_LEDGER_RETENTION),
    rawBucket: cfg.SLUICE_RAW_BUCKET,
    queueName: cfg.SLUICE_QUEUE_NAME,
  };
  const reconciling = startReconcileSchedule(reconcileDeps, cfg, createLogger('reconcile', cfg.SLUICE_LOG_LEVEL));
  // Durable batches and verified compactions are committed to the Iceberg table sluice.events, rollup files to
  // sluice.rollups; each run then expires old snapshots and cleans up both tables' metadata.
  const icebergLog = createLogger('iceberg', cfg.SLUICE_LOG_LEVEL);
  const archiveTable = openArchiveTable(cfg, icebergLog, { redis });
  const committing = startIcebergSchedule(archiveTable.deps, cfg, icebergLog);

  process.stdout.write(
    [
      '',
      'Sluice is running.',
      `  ingest     ${ingestUrl}/v1/events   (${
        front ? `load balancer → ${ingestNodes.map((n) => `${n.name} ${n.url}`).join(', ')}; ` : ''
      }${cfg.SLUICE_INGEST_PROCESSES} process${cfg.SLUICE_INGEST_PROCESSES > 1 ? 'es' : ''}${front ? ' each' : ''})`,
      `  query API  ${query.url}/v1/stats   (dashboard: ${query.url}/)`,
      `  workers    ${fleet.url}/v1/fleet   (${cfg.SLUICE_FLEET_MIN}–${cfg.SLUICE_FLEET_MAX} processes by queue depth; metrics: ${fleet.url}/metrics)`,
      // Passwords in these URLs are masked (redis://***@host:6379).
      `  S3 + SQS   ${maskUrl(cfg.AWS_ENDPOINT_URL)}   InfluxDB ${maskUrl(cfg.SLUICE_INFLUX_URL)}   Redis ${maskUrl(cfg.SLUICE_REDIS_URL)}`,
      `  logs       ${logDir}/`,
      '',
      'Send events:',
      `  curl -X POST ${ingestUrl}/v1/events -H 'content-type: application/json' \\`,
      `    -d '[{"eventId":"e1","entityId":"video-A","eventType":"view","timestamp":'$(date +%s000)'}]'`,
      'Press Ctrl-C to stop (ingest flushes its WAL first).',
      '',
    ].join('\n'),
  );

  let stopping = false;
  stop = async (reason?: string) => {
    if (stopping) return;
    stopping = true;
    // From here an exit of any service is final: the stop below ends each in its turn.
    for (const service of [...ingestNodes, fleet, query]) service.endRestarts();
    process.stdout.write(`\nStopping${reason ? ` (${reason})` : ''}: ingest delivers its WAL…\n`);
    await reconciling.stop();
    await committing.stop();
    // The load balancer first (it lets requests in progress finish), then every node delivers its WAL.
    await front?.stop();
    await Promise.all(ingestNodes.map((n) => n.stop(120_000)));
    process.stdout.write('Waiting for workers to drain the queue…\n');
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && (await queueDepth(cfg).catch(() => 0)) > 0) await sleep(500);
    // The fleet drains each worker (SIGTERM, SIGKILL only after SLUICE_FLEET_DRAIN_GRACE), so give it longer than that.
    await Promise.all([fleet.stop(cfg.SLUICE_FLEET_DRAIN_GRACE + 30_000), query.stop(30_000)]);
    reconcileDeps.s3.destroy();
    reconcileDeps.sqs.destroy();
    archiveTable.close();
    redis.disconnect();
    await opts.afterStop?.();
    const total = [...restarts.values()].reduce((a, b) => a + b, 0);
    process.stdout.write(`Stopped${total ? ` (services restarted ${total} time(s): ${[...restarts].map(([n, k]) => `${n} ${k}`).join(', ')})` : ''}.\n`);
    process.exit(reason ? 1 : 0);
  };
  if (stopRequested) void stop();
}
