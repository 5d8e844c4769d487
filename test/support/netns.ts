// Hosts on one machine for multi-host fault tests: each host is a Linux network namespace with its own loopback and
// one interface (eth0) on a private /24, wired to a bridge in a "switch" namespace; the test process (root namespace)
// gets one port on that switch too. Nothing else changes on the machine: no default route, no forwarding, and every
// namespace and interface carries a fixed prefix (`slc-`), so a run removes what a crashed run left behind.
// A host's network is cut by taking its switch port down (packets are dropped, as when a cable is pulled) and back up.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { httpOk, nodeEntry, redisPing } from '../../localstack/services.js';
import { SupervisedProcess } from '../../shared/process-supervisor.js';
import { sleep } from '../../shared/retry.js';

/** Prefix of every namespace and root-namespace interface created here. */
export const NETNS_PREFIX = 'slc-';
const SWITCH = `${NETNS_PREFIX}switch`;
const BRIDGE = 'br0';
/** The test process's port on the switch (root namespace). */
const ROOT_LINK = `${NETNS_PREFIX}root`;

/** Runs `ip …`; throws with its stderr when it fails. */
function ip(...args: string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.error) throw new Error(`cannot run ip ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed (code ${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * Why network namespaces cannot be created here (Linux, root and the `ip` binary are needed, and the kernel must let
 * this process create a namespace holding a veth pair), or undefined when they can. Leaves nothing behind.
 */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'creating network namespaces needs root';
  const v = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (v.error) return 'no `ip` binary (Debian: apt-get install iproute2)';
  const probe = `${NETNS_PREFIX}probe-${process.pid}`;
  try {
    ip('netns', 'add', probe);
  } catch (err) {
    return `\`ip netns add\` fails: ${(err as Error).message}`;
  }
  try {
    ip('-n', probe, 'link', 'add', 'name', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1');
    return undefined;
  } catch (err) {
    return `a veth pair cannot be created in a namespace: ${(err as Error).message}`;
  } finally {
    spawnSync('ip', ['netns', 'del', probe]);
  }
}

/** Names of the namespaces that start with `prefix`. */
function namespaces(prefix: string): string[] {
  return ip('netns', 'list')
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/** Process ids running in namespace `ns`. */
function pidsIn(ns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
  return (r.stdout ?? '')
    .split('\n')
    .map(Number)
    .filter((p) => Number.isInteger(p) && p > 0 && p !== process.pid);
}

/**
 * Removes what an earlier run with names starting with `prefix` left: the processes still running in its namespaces
 * (SIGKILL, by id), the namespaces, and root-namespace interfaces of that prefix.
 */
export async function removeNetnsLeftovers(prefix = NETNS_PREFIX): Promise<void> {
  const left = namespaces(prefix);
  for (const ns of left) {
    for (const pid of pidsIn(ns)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  const deadline = Date.now() + 5_000;
  while (left.some((ns) => pidsIn(ns).length) && Date.now() < deadline) await sleep(100);
  for (const ns of left) spawnSync('ip', ['netns', 'del', ns]);
  const links = ip('-o', 'link', 'show')
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '')
    .filter((n) => n.startsWith(prefix));
  for (const l of links) spawnSync('ip', ['link', 'del', l]);
}

/** One host: a namespace with an address on the test network. */
export interface NetnsHost {
  name: string;
  /** The namespace (`slc-<name>`). */
  ns: string;
  /** Its address on the test network. */
  address: string;
  /** Command prefix that runs a program inside the host: `ip netns exec <ns>`. */
  exec: readonly string[];
}

export interface NetworkSpec {
  /** First three octets of the private /24, e.g. "10.213.0". */
  subnet: string;
  /** Last octet of the test process's own address (root namespace). */
  rootOctet: number;
  /** The hosts: a name (at most 12 characters: interface names are short) and the last octet of its address. */
  hosts: readonly { name: string; octet: number }[];
}

/** A private network of namespaces on one bridge, and the test process on it. */
export class VirtualNetwork {
  private readonly byName = new Map<string, NetnsHost>();
  /** The test process's address on the network. */
  readonly rootAddress: string;

  private constructor(readonly spec: NetworkSpec) {
    this.rootAddress = `${spec.subnet}.${spec.rootOctet}`;
  }

  /** Creates the switch, every host and the test process's port. Call removeNetnsLeftovers first. */
  static create(spec: NetworkSpec): VirtualNetwork {
    if (!/^10\.\d{1,3}\.\d{1,3}$/.test(spec.subnet)) throw new Error(`subnet must be the first three octets of a 10.x.y.0/24, got "${spec.subnet}"`);
    const n = new VirtualNetwork(spec);
    ip('netns', 'add', SWITCH);
    ip('-n', SWITCH, 'link', 'add', 'name', BRIDGE, 'type', 'bridge');
    ip('-n', SWITCH, 'link', 'set', BRIDGE, 'up');
    for (const h of spec.hosts) {
      if (h.name.length > 12 || !/^[a-z0-9-]+$/.test(h.name)) throw new Error(`host name must be 1–12 of [a-z0-9-], got "${h.name}"`);
      const ns = `${NETNS_PREFIX}${h.name}`;
      const address = `${spec.subnet}.${h.octet}`;
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', SWITCH, 'link', 'add', 'name', `p-${h.name}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      ip('-n', SWITCH, 'link', 'set', `p-${h.name}`, 'master', BRIDGE, 'up');
      ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
      n.byName.set(h.name, { name: h.name, ns, address, exec: ['ip', 'netns', 'exec', ns] });
    }
    ip('link', 'add', 'name', ROOT_LINK, 'type', 'veth', 'peer', 'name', 'p-root', 'netns', SWITCH);
    ip('-n', SWITCH, 'link', 'set', 'p-root', 'master', BRIDGE, 'up');
    ip('addr', 'add', `${n.rootAddress}/24`, 'dev', ROOT_LINK);
    ip('link', 'set', ROOT_LINK, 'up');
    return n;
  }

  host(name: string): NetnsHost {
    const h = this.byName.get(name);
    if (!h) throw new Error(`no host "${name}" on the test network (hosts: ${[...this.byName.keys()].join(', ')})`);
    return h;
  }

  /** Cuts the host off the network: its switch port goes down, so everything it sends or is sent is dropped. */
  disconnect(name: string): void {
    ip('-n', SWITCH, 'link', 'set', `p-${this.host(name).name}`, 'down');
  }

  /** Plugs the host back in. */
  reconnect(name: string): void {
    ip('-n', SWITCH, 'link', 'set', `p-${this.host(name).name}`, 'up');
  }

  /** Deletes every namespace and the test process's port (stop the processes inside first). */
  destroy(): void {
    spawnSync('ip', ['link', 'del', ROOT_LINK]);
    for (const h of this.byName.values()) spawnSync('ip', ['netns', 'del', h.ns]);
    spawnSync('ip', ['netns', 'del', SWITCH]);
  }
}

async function answering(what: string, child: SupervisedProcess, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (!child.running) throw new Error(`${what} exited while starting; see ${child.logFile}`);
    if (Date.now() > deadline) throw new Error(`${what} did not answer within ${timeoutMs / 1000}s; see ${child.logFile}`);
    await sleep(200);
  }
}

/** InfluxDB 1.x listening on `address` only, its RPC port on the namespace's own loopback. */
function influxConfig(dir: string, address: string, port: number): string {
  return `reporting-disabled = true
bind-address = "127.0.0.1:8088"
[meta]
  dir = "${dir}/meta"
[data]
  dir = "${dir}/data"
  wal-dir = "${dir}/wal"
  index-version = "tsi1"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "${address}:${port}"
  auth-enabled = false
  log-enabled = false
  max-body-size = 0
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
`;
}

/** The shared services of a namespace host: what SLUICE_REDIS_URL, SLUICE_INFLUX_URL and AWS_ENDPOINT_URL point at. */
export interface SharedServices {
  redisUrl: string;
  influxUrl: string;
  awsEndpoint: string;
  stop(): Promise<void>;
}

/**
 * Private Redis, InfluxDB and S3+SQS emulator (localstack/emulator.ts) inside `host`, listening on its address only,
 * data under `dir`; resolves once all three answer from the test process.
 */
export async function startSharedServices(host: NetnsHost, dir: string): Promise<SharedServices> {
  const a = host.address;
  const children: SupervisedProcess[] = [];
  const start = (name: string, cmd: string[], env: NodeJS.ProcessEnv = process.env) => {
    const d = path.join(dir, name);
    mkdirSync(d, { recursive: true });
    const c = new SupervisedProcess(name, [...host.exec, ...cmd], { logFile: path.join(d, `${name}.log`), env });
    children.push(c);
    return c;
  };
  const stop = async () => {
    await Promise.all(children.map((c) => c.stop(10_000)));
  };
  try {
    const redisDir = path.join(dir, 'redis');
    const redis = start('redis', [
      'redis-server',
      '--bind',
      a,
      '--port',
      '6379',
      '--dir',
      redisDir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--protected-mode',
      'no',
    ]);
    const influxDir = path.resolve(dir, 'influxdb');
    mkdirSync(influxDir, { recursive: true });
    writeFileSync(path.join(influxDir, 'influxdb.conf'), influxConfig(influxDir, a, 8086));
    const influx = start('influxdb', ['influxd', 'run', '-config', path.join(influxDir, 'influxdb.conf')]);
    // The emulator's router on this host's address; fauxqs and s3rver behind it stay on the namespace's loopback.
    const emulator = start('s3', nodeEntry('localstack/emulator.ts'), {
      ...process.env,
      SLUICE_EMULATOR_HOST: a,
      SLUICE_EMULATOR_PORT: '4566',
      SLUICE_EMULATOR_DIR: path.resolve(dir, 's3', 'objects'),
    });
    const s: SharedServices = { redisUrl: `redis://${a}:6379`, influxUrl: `http://${a}:8086`, awsEndpoint: `http://${a}:4566`, stop };
    await Promise.all([
      answering(`Redis in ${host.ns}`, redis, () => redisPing(a, 6379)),
      answering(`InfluxDB in ${host.ns}`, influx, () => httpOk(`${s.influxUrl}/ping`)),
      answering(`the S3+SQS emulator in ${host.ns}`, emulator, () => httpOk(`${s.awsEndpoint}/health`)),
    ]);
    return s;
  } catch (err) {
    await stop();
    throw err;
  }
}
