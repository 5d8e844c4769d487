// `sluice start` (what `npm start` runs): brings up InfluxDB, Redis and the S3+SQS emulator (installing
// them when missing), creates buckets and queues, then runs one ingest node, the worker fleet supervisor (which
// sizes its workers by the queue depth) and the query API as child processes. Ctrl-C / SIGTERM stops ingest first
// (it delivers its WAL), lets the workers drain the queue, then stops everything this command started.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { createInflux, ensureDatabase } from '../shared/clients/influx.js';
import { createSqs } from '../shared/clients/aws.js';
import { queueBacklog } from '../shared/queue-stats.js';
import { sleep } from '../shared/retry.js';
import { ensureLocalServices, nodeEntry } from '../localstack/services.js';
import { setupResources } from '../localstack/setup-resources.js';

interface Child {
  name: string;
  proc: ChildProcess;
  url: string;
}

function spawnService(name: string, args: string[], env: NodeJS.ProcessEnv, logDir: string): Promise<Child> {
  const logFile = path.join(logDir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const [cmd, ...rest] = nodeEntry('cli/sluice.ts');
  const proc = spawn(cmd!, [...rest, ...args], { env, stdio: ['ignore', fd, fd, 'ipc'] });
  return new Promise((resolve, reject) => {
    proc.once('message', (m: { ready?: boolean; url?: string }) => {
      if (m.ready) resolve({ name, proc, url: m.url ?? '' });
    });
    proc.once('exit', (code) => reject(new Error(`${name} exited with code ${code} while starting; see ${logFile}`)));
  });
}

async function stopChild(c: Child, timeoutMs: number): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.proc.once('exit', () => r()));
  c.proc.kill('SIGTERM');
  const t = setTimeout(() => c.proc.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(t);
}

async function queueDepth(cfg: Config): Promise<number> {
  const sqs = createSqs(cfg);
  try {
    return await queueBacklog(sqs, cfg.SLUICE_QUEUE_NAME);
  } finally {
    sqs.destroy();
  }
}

export async function runLocalStack(cfg: Config): Promise<void> {
  const log = createLogger('start', cfg.SLUICE_LOG_LEVEL);
  const dataDir = path.resolve(cfg.SLUICE_DATA_DIR);
  const logDir = path.join(dataDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const services = await ensureLocalServices(
    { influxUrl: cfg.SLUICE_INFLUX_URL, redisUrl: cfg.SLUICE_REDIS_URL, awsEndpoint: cfg.AWS_ENDPOINT_URL },
    dataDir,
    log,
  );
  await setupResources(cfg);
  await ensureDatabase(createInflux(cfg), cfg.SLUICE_INFLUX_DB);

  const env = { ...process.env, SLUICE_DATA_DIR: dataDir };
  const ingest = await spawnService('ingest', ['ingest'], { ...env, SLUICE_NODE_ID: process.env.SLUICE_NODE_ID ?? 'ingest-1' }, logDir);
  // The fleet runs SLUICE_FLEET_MIN…MAX `sluice worker` processes on free ports; its log holds theirs too.
  const fleet = await spawnService('fleet', ['fleet'], env, logDir);
  const query = await spawnService('query', ['query'], { ...env, SLUICE_INGEST_URL: ingest.url, SLUICE_FLEET_URL: fleet.url }, logDir);
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

  for (const c of children) {
    c.proc.on('exit', (code, signal) => {
      if (!stopping) log.error({ service: c.name, code, signal }, `${c.name} exited unexpectedly; see ${logDir}/${c.name}.log`);
    });
  }

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nStopping: ingest delivers its WAL…\n');
    await stopChild(ingest, 120_000);
    process.stdout.write('Waiting for workers to drain the queue…\n');
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && (await queueDepth(cfg).catch(() => 0)) > 0) await sleep(500);
    // The fleet drains each worker (SIGTERM, SIGKILL only after SLUICE_FLEET_DRAIN_GRACE), so give it longer than that.
    await Promise.all([stopChild(fleet, cfg.SLUICE_FLEET_DRAIN_GRACE + 30_000), stopChild(query, 30_000)]);
    await Promise.all(services.map((s) => s.stop()));
    process.stdout.write('Stopped.\n');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}
