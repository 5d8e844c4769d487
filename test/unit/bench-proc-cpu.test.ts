// The benchmarks' CPU accounting (bench/lib/proc-cpu.ts) on real processes: CPU burnt inside the window is counted,
// CPU of a forked child is counted with its parent (live or reaped), a parent measured without children is not
// charged for them, a process gone at the end is reported lost, and a service is found by the port it listens on.
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { clockTicksPerSecond, cpuBetween, machineBusyTicks, parseProcStat, pidsListeningOn, sampleCpu } from '../../bench/lib/proc-cpu.js';

/** Burns `ms` of this process's own CPU (not wall time, so a busy machine does not change the amount). */
const BURN = (ms: number) => `{const t=process.cpuUsage();for(let u=t;u.user+u.system<${ms}e3;u=process.cpuUsage(t)){}}`;

/** A node process that says "ready", then on each line on stdin runs `onLine` and writes "done". */
async function child(onLine: string): Promise<ChildProcess> {
  const code = `process.stdin.on('data',async()=>{${onLine};process.stdout.write('done\\n')});process.stdout.write('ready\\n');`;
  const p = spawn(process.execPath, ['-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
  started.push(p);
  const [chunk] = (await once(p.stdout!, 'data')) as [Buffer];
  expect(chunk.toString()).toContain('ready');
  return p;
}

async function run(p: ChildProcess): Promise<void> {
  p.stdin!.write('go\n');
  const [chunk] = (await once(p.stdout!, 'data')) as [Buffer];
  expect(chunk.toString()).toContain('done');
}

const started: ChildProcess[] = [];
afterEach(() => {
  for (const p of started.splice(0)) p.kill('SIGKILL');
});
const ticks = clockTicksPerSecond();

describe('bench CPU accounting', () => {
  it('parses /proc stat lines whose command names hold spaces and parentheses, and rejects other text', () => {
    // Field n (proc(5), from the 3rd on) holds the number n, except the state (3rd) and the ppid (4th).
    const after = Array.from({ length: 50 }, (_, i) => (i === 0 ? 'S' : i === 1 ? '7' : String(i + 3))).join(' ');
    const s = parseProcStat(`42 (node (x) y) ${after}`);
    expect(s).toEqual({ pid: 42, ppid: 7, ticks: 14 + 15, childTicks: 16 + 17, startTime: 22 });
    expect(() => parseProcStat('hello')).toThrow(/not a \/proc stat line: "hello"/);
  });

  it('counts the CPU a process burns inside the window, at tick resolution', async () => {
    const p = await child(BURN(400));
    const components = { burner: { pids: [p.pid!] } };
    const a = sampleCpu(components);
    await run(p);
    const b = sampleCpu(components);
    const r = cpuBetween(a, b, components, ticks).burner!;
    expect(r.lost).toEqual([]);
    expect(r.cpuSeconds).toBeGreaterThanOrEqual(0.38);
    expect(r.cpuSeconds).toBeLessThan(0.8);
    expect(r.mainThreadCpuSeconds).toBeGreaterThanOrEqual(0.38);
    expect(b.machineBusyTicks).toBeGreaterThan(a.machineBusyTicks);
  });

  it('charges a live child and a reaped child to their parent, and not to a parent measured without children', async () => {
    const spawnBurner = (stay: boolean) =>
      // A staying grandchild exits once its parent is gone (its parent pid changes), so killing the parent ends it too;
      // it does not wait on a pipe from the parent, whose end the parent's runtime may close once nothing uses it.
      `await new Promise(r=>{const c=require('child_process').spawn(process.execPath,['-e',${JSON.stringify(`${BURN(300)};console.log('x');${stay ? 'const p=process.ppid;setInterval(()=>{if(process.ppid!==p)process.exit()},100)' : ''}`)}],{stdio:['ignore','pipe','inherit']});globalThis.kept=c;c.stdout.once('data',r);${stay ? '' : "c.once('exit',r);"}})`;
    for (const stay of [true, false]) {
      const parent = await child(spawnBurner(stay));
      const components = { tree: { pids: [parent.pid!] } };
      const alone = { alone: { pids: [parent.pid!], children: false } };
      const a = sampleCpu(components);
      const a2 = sampleCpu(alone);
      await run(parent);
      if (!stay) await new Promise((r) => setTimeout(r, 200)); // the exit is reaped by the parent's event loop
      const tree = cpuBetween(a, sampleCpu(components), components, ticks).tree!;
      const own = cpuBetween(a2, sampleCpu(alone), alone, ticks).alone!;
      expect({ stay, enough: tree.cpuSeconds >= 0.28 }).toEqual({ stay, enough: true });
      expect({ stay, descendants: tree.descendants }).toEqual({ stay, descendants: stay ? 1 : 0 });
      expect(own.cpuSeconds).toBeLessThan(0.25);
    }
  });

  it('reports a process that exited before the end as lost, without its CPU', async () => {
    const p = await child(BURN(50));
    const components = { gone: { pids: [p.pid!] } };
    const a = sampleCpu(components);
    p.kill('SIGKILL');
    await once(p, 'exit');
    const r = cpuBetween(a, sampleCpu(components), components, ticks).gone!;
    expect(r.lost).toEqual([p.pid]);
    expect(r.cpuSeconds).toBe(0);
    expect(r.perProcessCpuSeconds).toEqual([NaN]);
  });

  it('finds the process listening on a port, and none once it closed', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = srv.address() as net.AddressInfo;
    expect(pidsListeningOn(port)).toEqual([process.pid]);
    await new Promise((r) => srv.close(r));
    expect(pidsListeningOn(port)).toEqual([]);
  });

  it('reads the machine busy time and the clock tick rate', () => {
    expect(machineBusyTicks()).toBeGreaterThan(0);
    expect(ticks).toBeGreaterThan(0);
  });
});
