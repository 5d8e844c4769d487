// `sluice start`: runs the whole pipeline on one machine against the configured services — creates buckets,
// queues and the InfluxDB database, then one ingest node, the worker fleet supervisor (which sizes its workers by
// the queue depth) and the query API as child processes (shared/process-supervisor.ts). Ctrl-C / SIGTERM stops
// ingest first (it delivers its WAL), lets the workers drain the queue, then stops everything this command started.
// (`npm start` runs localstack/start.ts, which first brings up local InfluxDB, Redis and S3+SQS, then this.)
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { createInflux, ensureDatabase } from '../shared/clients/influx.js';
import { createSqs } from '../shared/clients/aws.js';
import { errorMessage } from '../shared/errors.js';
import { startService } from '../shared/process-supervisor.js';
import { queueBacklog } from '../shared/queue-stats.js';
import { sleep } from '../shared/retry.js';
import { setupResources } from '../shared/setup-resources.js';

export interface StartOptions {
  /** Runs after every child stopped, before this process exits (the local stack stops its services here). */
  afterStop?: () => Promise<unknown>;
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
  const log = createLogger('start', cfg.SLUICE_LOG_LEVEL);
  const dataDir = path.resolve(cfg.SLUICE_DATA_DIR);
  const logDir = path.join(dataDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  await prepareStores(cfg);

  const env = { ...process.env, SLUICE_DATA_DIR: dataDir };
  const start = (name: string, childEnv: NodeJS.ProcessEnv) => startService(name, [name], { env: childEnv, logFile: path.join(logDir, `${name}.log`) });
  // The ingest node is called ingest-1 unless SLUICE_NODE_ID names it.
  const ingest = await start('ingest', { SLUICE_NODE_ID: 'ingest-1', ...env });
  // The fleet runs SLUICE_FLEET_MIN…MAX `sluice worker` processes on free ports; its log holds theirs too.
  const fleet = await start('fleet', env);
  const query = await start('query', { ...env, SLUICE_INGEST_URL: ingest.url, SLUICE_FLEET_URL: fleet.url });
  const children = [ingest, fleet, query];

  process.stdout.write(
    [
      '',
      'Sluice is running.',
      `  ingest     ${ingest.url}/v1/events`,
      `  query API  ${query.url}/v1/stats   (dashboard: ${query.url}/)`,
      `  workers    ${fleet.url}/v1/fleet   (${cfg.SLUICE_FLEET_MIN}–${cfg.SLUICE_FLEET_MAX} processes by queue depth; metrics: ${fleet.url}/metrics)`,
      `  S3 + SQS   ${cfg.AWS_ENDPOINT_URL}   InfluxDB ${cfg.SLUICE_INFLUX_URL}   Redis ${cfg.SLUICE_REDIS_URL}`,
      `  logs       ${logDir}/`,
      '',
      'Send events:',
      `  curl -X POST ${ingest.url}/v1/events -H 'content-type: application/json' \\`,
      `    -d '[{"eventId":"e1","entityId":"video-A","eventType":"view","timestamp":'$(date +%s000)'}]'`,
      'Press Ctrl-C to stop (ingest flushes its WAL first).',
      '',
    ].join('\n'),
  );

  let stopping = false;
  for (const c of children) {
    void c.exited.then(({ code, signal }) => {
      if (!stopping) log.error({ service: c.name, code, signal }, `${c.name} exited unexpectedly; see ${c.logFile}`);
    });
  }

  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nStopping: ingest delivers its WAL…\n');
    await ingest.stop(120_000);
    process.stdout.write('Waiting for workers to drain the queue…\n');
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && (await queueDepth(cfg).catch(() => 0)) > 0) await sleep(500);
    // The fleet drains each worker (SIGTERM, SIGKILL only after SLUICE_FLEET_DRAIN_GRACE), so give it longer than that.
    await Promise.all([fleet.stop(cfg.SLUICE_FLEET_DRAIN_GRACE + 30_000), query.stop(30_000)]);
    await opts.afterStop?.();
    process.stdout.write('Stopped.\n');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}
