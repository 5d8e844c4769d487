// The local stack's load balancer in front of several ingest nodes (`SLUICE_INGEST_NODES=2 npm start`): Debian's
// haproxy, configured from code and run in the foreground as a child process. It checks each node's /readyz, so a node
// that is draining or whose S3/SQS circuit breaker is open stops getting requests within a few check intervals, and it
// sends a request that could not reach a node, or that a node refused with 503 (nothing acknowledged), to another.
// (In Kubernetes a Service does the same from the readiness probe: deploy/k8s/ingest.yaml.)
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { LoadBalancerRequest, RunningLoadBalancer } from '../cli/start.js';
import type { Logger } from '../shared/logger.js';
import { type Exit, SupervisedProcess } from '../shared/process-supervisor.js';
import { tailLines } from '../shared/supervised-service.js';
import { sleep } from '../shared/retry.js';

export interface LoadBalancerOptions {
  /** Where producers connect. */
  host: string;
  port: number;
  /** The ingest nodes: a name (haproxy's server name) and the URL it listens on. */
  backends: { name: string; url: string }[];
  /** Folder for haproxy.cfg, haproxy.log and the runtime API socket (haproxy.sock). */
  dir: string;
  /** Health check every this long (default 1 s); a node is taken out after `fall` failed checks and back after `rise`. */
  checkIntervalMs?: number;
  fall?: number;
  rise?: number;
  /** The nodes' own limits, so the load balancer never cuts a request or connection a node would still serve. */
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /**
   * Runs haproxy through this command, which executes it in place (e.g. `ip netns exec <ns>`: haproxy then binds an
   * address of that network namespace); default none.
   */
  commandPrefix?: readonly string[];
  /** Called when haproxy exits without stop() (its log is in `dir`). */
  onUnexpectedExit?: (detail: string) => void;
}

export interface LoadBalancer extends RunningLoadBalancer {
  pid: number | undefined;
  exited: Promise<Exit>;
  /** haproxy's view of each node (server name → UP, DOWN, `DOWN 1/2`, …), read from its runtime API. */
  serverStates(): Promise<Record<string, string>>;
}

/** The haproxy name of the ingest backend (its servers are the nodes). */
export const BACKEND = 'ingest_nodes';

const ms = (n: number) => `${Math.max(1, Math.round(n))}ms`;

/** haproxy.cfg for `o` (haproxy 2.6, Debian 12). */
export function haproxyConfig(o: LoadBalancerOptions): string {
  const inter = o.checkIntervalMs ?? 1_000;
  const requestTimeout = o.requestTimeoutMs || 30_000;
  const servers = o.backends.map((b) => {
    const u = new URL(b.url);
    return `  server ${b.name} ${u.hostname}:${u.port} check`;
  });
  return `# Written by Sluice (localstack/load-balancer.ts): the ingest load balancer of the local stack.
# haproxy runs in the foreground (-db): health checks and state changes are printed on stderr, the request log (errors
# and retries only) on stdout; both go to haproxy.log.
global
  stats socket ${path.join(o.dir, 'haproxy.sock')} mode 600 level admin
  stats timeout 10s
  # A soft stop (SIGUSR1) lets requests in progress finish, but not for longer than this.
  hard-stop-after 30s

defaults
  mode http
  option httplog
  # Only requests that failed or were retried are logged, not every one; every health check result is printed.
  option dontlog-normal
  option log-health-checks
  timeout connect 2s
  # A node answers once the events are fsynced; a whole request may take SLUICE_INGEST_REQUEST_TIMEOUT to arrive.
  timeout http-request ${ms(requestTimeout)}
  timeout client ${ms(Math.max(requestTimeout, o.idleTimeoutMs))}
  timeout server ${ms(Math.max(requestTimeout, 30_000))}
  timeout http-keep-alive ${ms(o.keepAliveTimeoutMs || 60_000)}
  timeout queue 5s
  # A request that could not reach a node (refused, reset before an answer) or that a node answered 503 — busy,
  # backlog over its bound or shutting down, nothing acknowledged — is tried on another node (small requests only:
  # haproxy retries what fits its buffer). Re-sending after a lost answer is safe: producer ids are deduplicated.
  retries 2
  option redispatch 1
  retry-on conn-failure empty-response 503

frontend ingest
  log stdout format raw local0 info
  bind ${o.host}:${o.port}
  default_backend ${BACKEND}

backend ${BACKEND}
  # Requests of one size class cost a node about the same: take turns, per request (not per connection).
  balance roundrobin
  # /readyz is 503 while a node shuts down or a breaker is open: such a node gets no new requests.
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter ${ms(inter)} fastinter ${ms(inter / 2)} downinter ${ms(inter)} fall ${o.fall ?? 2} rise ${o.rise ?? 2}
${servers.join('\n')}
`;
}

function accepting(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: host === '0.0.0.0' ? '127.0.0.1' : host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1_000, () => done(false));
    s.once('error', () => done(false));
    s.once('connect', () => done(true));
  });
}

/** One command to haproxy's runtime API; resolves with its whole answer. */
export function runtimeCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const s = net.connect(socket, () => s.end(`${command}\n`));
    s.setTimeout(5_000, () => s.destroy(new Error(`haproxy runtime API at ${socket} did not answer "${command}" within 5s`)));
    s.on('data', (d) => {
      out += d.toString();
    });
    s.once('error', reject);
    s.once('close', () => resolve(out));
  });
}

/** Writes the configuration, checks it (`haproxy -c`), starts haproxy in the foreground and waits until it accepts connections. */
export async function startLoadBalancer(o: LoadBalancerOptions, log: Logger): Promise<LoadBalancer> {
  mkdirSync(o.dir, { recursive: true });
  const cfgFile = path.join(o.dir, 'haproxy.cfg');
  const logFile = path.join(o.dir, 'haproxy.log');
  const socket = path.join(o.dir, 'haproxy.sock');
  writeFileSync(cfgFile, haproxyConfig(o));
  const check = spawnSync('haproxy', ['-c', '-q', '-f', cfgFile], { encoding: 'utf8' });
  if (check.error) throw new Error(`cannot run haproxy (${check.error.message}); install it (Debian: apt-get install haproxy)`);
  if (check.status !== 0) throw new Error(`haproxy refuses the configuration ${cfgFile}:\n${check.stderr}${check.stdout}`);

  const child = new SupervisedProcess('haproxy', [...(o.commandPrefix ?? []), 'haproxy', '-f', cfgFile, '-db'], { logFile });
  let stopping = false;
  const url = `http://${o.host === '0.0.0.0' ? '127.0.0.1' : o.host}:${o.port}`;
  const deadline = Date.now() + 15_000;
  while (!(await accepting(o.host, o.port))) {
    if (!child.running || Date.now() > deadline) {
      await child.stop(1_000);
      throw new Error(
        `haproxy did not start listening on ${o.host}:${o.port} (SLUICE_INGEST_HOST, SLUICE_INGEST_PORT); last lines of ${logFile}:\n` +
          tailLines(logFile, 10)
            .map((l) => `  ${l}`)
            .join('\n'),
      );
    }
    await sleep(100);
  }
  void child.exited.then((exit) => {
    if (!stopping) o.onUnexpectedExit?.(`${exit.signal ?? `code ${exit.code}`}; see ${logFile}`);
  });
  log.info({ url, backends: o.backends, config: cfgFile, log: logFile }, 'started haproxy in front of the ingest nodes');
  return {
    url,
    pid: child.pid,
    exited: child.exited,
    async serverStates() {
      const csv = await runtimeCommand(socket, 'show stat');
      const lines = csv.split('\n').filter(Boolean);
      const header = (lines.shift() ?? '').replace(/^# /, '').split(',');
      const [px, sv, st] = ['pxname', 'svname', 'status'].map((c) => header.indexOf(c));
      const states: Record<string, string> = {};
      for (const l of lines) {
        const f = l.split(',');
        if (f[px!] === BACKEND && f[sv!] !== 'BACKEND') states[f[sv!]!] = f[st!]!;
      }
      return states;
    },
    async stop() {
      stopping = true;
      if (!child.running) return;
      // SIGUSR1 is haproxy's soft stop: it stops listening and lets requests in progress finish (hard-stop-after).
      child.kill('SIGUSR1');
      const soft = await Promise.race([child.exited, sleep(35_000).then(() => undefined)]);
      if (!soft) await child.stop(5_000);
    },
  };
}

/** The load balancer `sluice start` asks for (cli/start.ts), with the nodes' timeouts from the settings. */
export function ingestLoadBalancer(log: Logger): (req: LoadBalancerRequest) => Promise<LoadBalancer> {
  return (req) =>
    startLoadBalancer(
      {
        host: req.host,
        port: req.port,
        backends: req.backends,
        dir: path.join(req.logDir, 'haproxy'),
        requestTimeoutMs: req.cfg.SLUICE_INGEST_REQUEST_TIMEOUT,
        idleTimeoutMs: req.cfg.SLUICE_INGEST_IDLE_TIMEOUT,
        keepAliveTimeoutMs: req.cfg.SLUICE_INGEST_KEEPALIVE_TIMEOUT,
        onUnexpectedExit: req.onUnexpectedExit,
      },
      log,
    );
}
