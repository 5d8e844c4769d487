// CPU time of the processes of a benchmark run, read from /proc (Linux): utime + stime of a process, every thread
// included, plus its descendants (live ones and the exited ones it reaped), sampled at the start and the end of a
// measured window, so start-up is excluded. Services are found by pid or by the port they listen on, never by name.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Clock ticks per second of /proc times (`getconf CLK_TCK`, 100 on Linux when it cannot be asked). */
export function clockTicksPerSecond(): number {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return r.status === 0 && Number.isInteger(n) && n > 0 ? n : 100;
}

/** The fields of /proc/<pid>/stat a CPU account needs (times in clock ticks). */
export interface ProcStat {
  pid: number;
  ppid: number;
  /** User + system time of the process, all its threads. */
  ticks: number;
  /** User + system time of its children that exited and were waited for. */
  childTicks: number;
  /** Start time after boot, in ticks: tells a process apart from a later one given the same pid. */
  startTime: number;
}

/** Parses one /proc/<pid>/stat (or /proc/<pid>/task/<tid>/stat) line; the command name may hold spaces and parentheses. */
export function parseProcStat(line: string): ProcStat {
  const close = line.lastIndexOf(')');
  const pid = Number(line.slice(0, line.indexOf(' ')));
  // Fields from the 3rd (state) on; field n of proc(5) is f[n - 3].
  const f = line
    .slice(close + 2)
    .trim()
    .split(' ');
  if (close < 0 || f.length < 20 || !Number.isInteger(pid)) throw new Error(`not a /proc stat line: ${JSON.stringify(line.slice(0, 80))}`);
  const n = (field: number) => Number(f[field - 3]);
  return { pid, ppid: n(4), ticks: n(14) + n(15), childTicks: n(16) + n(17), startTime: n(22) };
}

function readStat(pid: number): ProcStat | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined; // exited, or not visible
  }
}

/** User + system ticks of a process's main thread (the event loop of a Node process, the command thread of Redis). */
function mainThreadTicks(pid: number): number | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8')).ticks;
  } catch {
    return undefined;
  }
}

function allStats(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) out.push(s);
  }
  return out;
}

/** Pids listening on TCP `port` (IPv4 or IPv6, any address): the socket inodes of /proc/net/tcp*, then whose fds hold them. */
export function pidsListeningOn(port: number): number[] {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const row of text.split('\n').slice(1)) {
      const c = row.trim().split(/\s+/);
      // sl local_address rem_address st … inode (10th column); st 0A = LISTEN
      if (c.length < 10 || c[3] !== '0A') continue;
      const localPort = Number.parseInt(c[1]!.split(':')[1] ?? '', 16);
      if (localPort === port && c[9] !== '0') inodes.add(c[9]!);
    }
  }
  if (!inodes.size) return [];
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${name}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${name}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1]!)) {
        pids.push(Number(name));
        break;
      }
    }
  }
  return pids;
}

/** The processes of one component: each root pid, and with `children` its descendants (not other components' roots). */
export interface CpuComponent {
  pids: readonly number[];
  /** Count the descendants too (default true). The benchmark process itself sets false: its children are the other components. */
  children?: boolean;
}

interface RootSample {
  startTime: number;
  /** The root's own ticks, plus its reaped children's and every live descendant's (own + reaped) when children are counted. */
  ticks: number;
  mainThread: number;
  descendants: number;
}

/** One reading of every component's processes. */
export interface CpuSnapshot {
  at: number;
  roots: Map<number, RootSample | undefined>;
  /** Busy ticks of the whole machine (all cores, every process and the kernel), from /proc/stat. */
  machineBusyTicks: number;
}

/** Busy ticks of all cores since boot: user + nice + system + irq + softirq + steal of /proc/stat's `cpu` line. */
export function machineBusyTicks(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const [label, ...f] = line.trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = f.map(Number);
  const busy = [user, nice, system, irq, softirq, steal];
  if (label !== 'cpu' || busy.some((x) => x === undefined || !Number.isFinite(x)))
    throw new Error(`unexpected first line of /proc/stat: ${JSON.stringify(line.slice(0, 80))}`);
  return user! + nice! + system! + irq! + softirq! + steal!;
}

/** What a component used between two snapshots. */
export interface ComponentCpu {
  cpuSeconds: number;
  /** CPU seconds of the root processes' main threads alone (what a single-threaded bound saturates first). */
  mainThreadCpuSeconds: number;
  /** CPU seconds of each root process (its descendants included), in the order of `pids`. */
  perProcessCpuSeconds: number[];
  processes: number;
  /** Largest number of descendants seen under the roots (0 when nothing forked). */
  descendants: number;
  /** Pids that were gone (or replaced) at the end: their CPU is missing from the totals. */
  lost: number[];
}

/** Reads every component's processes now. */
export function sampleCpu(components: Record<string, CpuComponent>): CpuSnapshot {
  const stats = allStats();
  const byParent = new Map<number, ProcStat[]>();
  for (const s of stats) {
    const list = byParent.get(s.ppid);
    if (list) list.push(s);
    else byParent.set(s.ppid, [s]);
  }
  const byPid = new Map(stats.map((s) => [s.pid, s]));
  const roots = new Set(Object.values(components).flatMap((c) => c.pids));
  const out = new Map<number, RootSample | undefined>();
  for (const c of Object.values(components)) {
    for (const pid of c.pids) {
      const s = byPid.get(pid);
      if (!s) {
        out.set(pid, undefined);
        continue;
      }
      let ticks = s.ticks;
      let descendants = 0;
      if (c.children !== false) {
        ticks += s.childTicks;
        const stack = [...(byParent.get(pid) ?? [])];
        for (let d = stack.pop(); d; d = stack.pop()) {
          if (roots.has(d.pid)) continue; // another component's process, measured on its own
          ticks += d.ticks + d.childTicks;
          descendants++;
          stack.push(...(byParent.get(d.pid) ?? []));
        }
      }
      out.set(pid, { startTime: s.startTime, ticks, mainThread: mainThreadTicks(pid) ?? s.ticks, descendants });
    }
  }
  return { at: Date.now(), roots: out, machineBusyTicks: machineBusyTicks() };
}

/** CPU seconds each component used from `start` to `end` (the same components as both samples). */
export function cpuBetween(
  start: CpuSnapshot,
  end: CpuSnapshot,
  components: Record<string, CpuComponent>,
  ticksPerSecond: number,
): Record<string, ComponentCpu> {
  const out: Record<string, ComponentCpu> = {};
  for (const [name, c] of Object.entries(components)) {
    const r: ComponentCpu = { cpuSeconds: 0, mainThreadCpuSeconds: 0, perProcessCpuSeconds: [], processes: c.pids.length, descendants: 0, lost: [] };
    for (const pid of c.pids) {
      const a = start.roots.get(pid);
      const b = end.roots.get(pid);
      if (!a || !b || a.startTime !== b.startTime) {
        r.lost.push(pid);
        r.perProcessCpuSeconds.push(NaN);
        continue;
      }
      const sec = (b.ticks - a.ticks) / ticksPerSecond;
      r.cpuSeconds += sec;
      r.mainThreadCpuSeconds += (b.mainThread - a.mainThread) / ticksPerSecond;
      r.perProcessCpuSeconds.push(+sec.toFixed(2));
      r.descendants = Math.max(r.descendants, a.descendants, b.descendants);
    }
    r.cpuSeconds = +r.cpuSeconds.toFixed(2);
    r.mainThreadCpuSeconds = +r.mainThreadCpuSeconds.toFixed(2);
    out[name] = r;
  }
  return out;
}
