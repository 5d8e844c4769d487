// Brings up the local stack's real services on loopback: InfluxDB 1.x and Redis (Debian packages, installed
// with apt-get when missing and running as root) and the S3+SQS emulator (s3rver on disk + fauxqs, emulator.ts). A service already answering
// at its configured endpoint is reused and never stopped; what this module starts, it stops.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../shared/logger.js';
import { entryCommand } from '../shared/process-commands.js';
import { SupervisedProcess } from '../shared/process-supervisor.js';
import { sleep } from '../shared/retry.js';
import { SETTINGS } from '../shared/config.js';
import { ConfigError } from '../shared/errors.js';
import { ensureRedisCluster } from './redis-cluster.js';

export interface ServiceEndpoints {
  influxUrl: string;
  redisUrl: string;
  awsEndpoint: string;
  /** maxmemory (bytes) of a Redis started here; default SLUICE_REDIS_MAXMEMORY from the environment. */
  redisMaxMemory?: number;
  /** redisUrl names a Redis Cluster's seed nodes (SLUICE_REDIS_CLUSTER): use it, or start it (localstack/redis-cluster.ts). */
  redisCluster?: boolean;
}

/** SLUICE_REDIS_MAXMEMORY from the environment, validated like every setting (its default when unset). */
export function redisMaxMemoryFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const f = SETTINGS.SLUICE_REDIS_MAXMEMORY;
  const raw = env.SLUICE_REDIS_MAXMEMORY ?? f.fallback;
  const bytes = f.parse(raw);
  if (bytes === undefined) throw new ConfigError(`SLUICE_REDIS_MAXMEMORY must be ${f.accepts}, got ${JSON.stringify(raw)}`);
  return bytes;
}

export interface RunningService {
  name: string;
  /** True when this process started it (and will stop it). */
  started: boolean;
  stop(): Promise<void>;
  /** Process id of a service this module started (undefined when it reuses one already running). */
  pid?: number;
  /** Sends `signal` to a service this module started and resolves once it exited (fault tests use SIGKILL). */
  kill?(signal: NodeJS.Signals): Promise<void>;
}

/**
 * How the local services are started. `ownProcessGroup`: in a process group of their own, so a terminal's Ctrl-C
 * (SIGINT to its foreground group) does not stop them under a pipeline that is still draining its WAL into them;
 * `npm start` stops them itself once the pipeline stopped. A database cannot notice its starter's death, so one left
 * by a SIGKILLed `npm start` keeps running, and the next start finds it answering and uses it.
 */
export interface LocalServiceOptions {
  ownProcessGroup?: boolean;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
/** node command line that runs one of the project's entry files (shared/process-commands.ts). */
export const nodeEntry = entryCommand;

/** True when `url` answers below 500 within a second. */
export async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    return res.status < 500;
  } catch {
    return false;
  }
}

/** True when a Redis at host:port answers PING within a second. */
export function redisPing(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1_000, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, child: SupervisedProcess, logFile: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode} while starting; see ${logFile}`);
    if (await check()) return;
    await sleep(200);
  }
  throw new Error(`${what} did not answer within ${timeoutMs / 1000}s; see ${logFile}`);
}

function which(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}

/** Installs the Debian packages when a binary is missing, or explains what to do instead. */
export function ensureDebianPackages(
  log: Logger,
  needed: { influxdb?: boolean; redis?: boolean; chromium?: boolean; haproxy?: boolean } = { influxdb: true, redis: true },
): void {
  const wanted: [string, string][] = [];
  if (needed.influxdb) wanted.push(['influxd', 'influxdb']);
  if (needed.redis) wanted.push(['redis-server', 'redis-server']);
  if (needed.chromium) wanted.push(['chromium', 'chromium']);
  // The load balancer of SLUICE_INGEST_NODES > 1 (localstack/load-balancer.ts).
  if (needed.haproxy) wanted.push(['haproxy', 'haproxy']);
  const missing = wanted.filter(([bin]) => !which(bin)).map(([, pkg]) => pkg);
  if (!missing.length) return;
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !which('apt-get')) {
    throw new Error(
      `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not installed and cannot be installed here (${isRoot ? 'no apt-get: not Debian' : 'not root'}).\n` +
        `Either install them (Debian: sudo apt-get install -y ${missing.join(' ')}), point SLUICE_INFLUX_URL / SLUICE_REDIS_URL / AWS_ENDPOINT_URL at running services, ` +
        'or start the whole stack with Docker: docker compose -f localstack/docker-compose.yml up',
    );
  }
  log.info({ packages: missing }, 'installing Debian packages (apt-get update && apt-get install)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', '--no-install-recommends', ...missing],
  ]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed with code ${r.status}`);
  }
}

function startChild(cmd: string[], logFile: string, o: LocalServiceOptions, env: NodeJS.ProcessEnv = process.env): SupervisedProcess {
  return new SupervisedProcess(path.basename(cmd[0]!), cmd, { logFile, env, ownProcessGroup: o.ownProcessGroup === true });
}

function killer(child: SupervisedProcess): (signal: NodeJS.Signals) => Promise<void> {
  return async (signal) => {
    child.kill(signal);
    await child.exited;
  };
}

function stopper(child: SupervisedProcess): () => Promise<void> {
  return async () => {
    await child.stop(10_000);
  };
}

/**
 * InfluxDB's series limits; 0 (the local stack's default) disables a limit. Tests set small ones to reach them.
 * InfluxDB 1.6 enforces them only with the inmem index (with tsi1 it ignores them), so setting one selects inmem.
 * It checks a write against the values that existed before it: one write may take a tag past its limit.
 */
export interface InfluxLimits {
  maxValuesPerTag?: number;
  maxSeriesPerDatabase?: number;
}

function influxConfig(dir: string, host: string, port: number, limits: InfluxLimits = {}): string {
  return `# Written by Sluice (localstack/services.ts): InfluxDB for the local stack, loopback only, data under ${dir}
reporting-disabled = true
bind-address = "${host}:${port + 2}"
[meta]
  dir = "${dir}/meta"
[data]
  dir = "${dir}/data"
  wal-dir = "${dir}/wal"
  index-version = "${limits.maxValuesPerTag || limits.maxSeriesPerDatabase ? 'inmem' : 'tsi1'}"
  query-log-enabled = false
  max-values-per-tag = ${limits.maxValuesPerTag ?? 0}
  max-series-per-database = ${limits.maxSeriesPerDatabase ?? 0}
[coordinator]
  query-timeout = "30s"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "${host}:${port}"
  auth-enabled = false
  log-enabled = false
  max-body-size = 0
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
`;
}

export async function ensureInflux(url: string, dataDir: string, log: Logger, limits?: InfluxLimits, o: LocalServiceOptions = {}): Promise<RunningService> {
  const u = new URL(url);
  if (await httpOk(`${url}/ping`)) return { name: 'influxdb', started: false, stop: async () => undefined };
  if (!LOOPBACK.has(u.hostname)) throw new Error(`InfluxDB is not answering at ${url} (SLUICE_INFLUX_URL) and is not local, so it cannot be started here`);
  const dir = path.resolve(dataDir, 'influxdb');
  mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'influxdb.conf');
  writeFileSync(conf, influxConfig(dir, '127.0.0.1', Number(u.port || 8086), limits));
  const logFile = path.join(dir, 'influxd.log');
  const child = startChild(['influxd', 'run', '-config', conf], logFile, o);
  await waitFor(`InfluxDB at ${url}`, () => httpOk(`${url}/ping`), child, logFile);
  log.info({ url, dataDir: dir }, 'started InfluxDB');
  return { name: 'influxdb', started: true, stop: stopper(child), pid: child.pid, kill: killer(child) };
}

export async function ensureRedis(
  url: string,
  dataDir: string,
  log: Logger,
  maxMemoryBytes = redisMaxMemoryFromEnv(),
  o: LocalServiceOptions = {},
): Promise<RunningService> {
  const u = new URL(url);
  const host = u.hostname === 'localhost' ? '127.0.0.1' : u.hostname;
  const port = Number(u.port || 6379);
  if (await redisPing(host, port)) return { name: 'redis', started: false, stop: async () => undefined };
  if (!LOOPBACK.has(u.hostname)) throw new Error(`Redis is not answering at ${url} (SLUICE_REDIS_URL) and is not local, so it cannot be started here`);
  const dir = path.resolve(dataDir, 'redis');
  mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, 'redis.log');
  // appendonly + fsync everysec: dedup claims, top-K, totals and the batch ledger survive a restart and a SIGKILL (every
  // write reaches the AOF before its reply); an OS crash or power cut loses at most the last ~1 s (2 s if the disk stalls).
  // That loss is a suffix of the write stream and each batch's ledger entry is its last write, so the batches it touched
  // fall out of the ledger and reconcile counts them again, idempotently. maxmemory with noeviction: memory is
  // bounded and nothing is ever evicted silently; past the limit writes fail (ingest admits unchecked, workers retry).
  const child = startChild(
    [
      'redis-server',
      '--bind',
      '127.0.0.1',
      '--port',
      String(port),
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--save',
      '',
      '--protected-mode',
      'yes',
      '--daemonize',
      'no',
      '--maxmemory',
      String(maxMemoryBytes),
      '--maxmemory-policy',
      'noeviction',
    ],
    logFile,
    o,
  );
  await waitFor(`Redis at ${url}`, () => redisPing(host, port), child, logFile);
  log.info({ url, dataDir: dir }, 'started Redis');
  return { name: 'redis', started: true, stop: stopper(child), pid: child.pid, kill: killer(child) };
}

export async function ensureEmulator(endpoint: string, dataDir: string, log: Logger, o: LocalServiceOptions = {}): Promise<RunningService> {
  const u = new URL(endpoint);
  if (await httpOk(`${endpoint}/health`)) return { name: 's3+sqs', started: false, stop: async () => undefined };
  if (!LOOPBACK.has(u.hostname))
    throw new Error(`No S3/SQS endpoint answering at ${endpoint} (AWS_ENDPOINT_URL) and it is not local, so the emulator cannot be started here`);
  mkdirSync(dataDir, { recursive: true });
  // Objects on disk under <data>/s3 (s3rver), queues in fauxqs, one port (localstack/emulator.ts).
  const s3Dir = path.resolve(dataDir, 's3');
  const logFile = path.resolve(dataDir, 'emulator.log');
  const child = startChild(nodeEntry('localstack/emulator.ts'), logFile, o, {
    ...process.env,
    SLUICE_EMULATOR_PORT: u.port || '4566',
    SLUICE_EMULATOR_DIR: s3Dir,
  });
  await waitFor(`S3+SQS emulator at ${endpoint}`, () => httpOk(`${endpoint}/health`), child, logFile);
  log.info({ endpoint, dataDir: s3Dir }, 'started the local S3 (s3rver, on disk) + SQS (fauxqs) emulator');
  return { name: 's3+sqs', started: true, stop: stopper(child), pid: child.pid, kill: killer(child) };
}

/** Ensures all three, installing Debian packages first when needed. */
export async function ensureLocalServices(ep: ServiceEndpoints, dataDir: string, log: Logger, o: LocalServiceOptions = {}): Promise<RunningService[]> {
  const redisUrl = new URL(ep.redisUrl.split(',')[0]!);
  ensureDebianPackages(log, {
    influxdb: !(await httpOk(`${ep.influxUrl}/ping`)),
    redis: !(await redisPing(redisUrl.hostname === 'localhost' ? '127.0.0.1' : redisUrl.hostname, Number(redisUrl.port || 6379))),
  });
  const maxMemory = ep.redisMaxMemory ?? redisMaxMemoryFromEnv();
  return Promise.all([
    ensureInflux(ep.influxUrl, dataDir, log, undefined, o),
    ep.redisCluster ? ensureRedisCluster(ep.redisUrl, dataDir, log, maxMemory, o) : ensureRedis(ep.redisUrl, dataDir, log, maxMemory, o),
    ensureEmulator(ep.awsEndpoint, dataDir, log, o),
  ]);
}
