// The process supervisor on real child processes: the ready message, an exit while starting, and a stop that
// escalates from SIGTERM to SIGKILL only after the grace, then to the child's whole process group.
import { afterEach, describe, expect, it } from 'vitest';
import { SupervisedProcess } from '../../shared/process-supervisor.js';

const node = (script: string) => [process.execPath, '-e', script];
const started: SupervisedProcess[] = [];
const spawnNode = (name: string, script: string) => {
  const p = new SupervisedProcess(name, node(script), { ipc: true });
  started.push(p);
  return p;
};
// A failed assertion must not leave a child behind.
afterEach(() => {
  for (const p of started.splice(0)) p.kill('SIGKILL');
});

describe('SupervisedProcess', () => {
  it('resolves ready with the URL the child reports', async () => {
    const p = spawnNode('ok', "process.send({ ready: true, url: 'http://x' }); setInterval(() => {}, 1000)");
    expect((await p.ready(10_000)).url).toBe('http://x');
    expect(await p.stop(5_000)).toEqual({ code: null, signal: 'SIGTERM' });
  });

  it('rejects ready when the child exits while starting', async () => {
    const p = spawnNode('dies', 'process.exit(3)');
    await expect(p.ready(10_000)).rejects.toThrow(/dies exited \(code 3\) while starting/);
  });

  it('kills a child that ignores SIGTERM once the grace is over, and says so', async () => {
    const p = spawnNode('stubborn', "process.on('SIGTERM', () => {}); process.send({ ready: true }); setInterval(() => {}, 1000)");
    await p.ready(10_000);
    let forced = 0;
    const t0 = Date.now();
    const exit = await p.stop(300, () => forced++);
    expect(exit.signal).toBe('SIGKILL');
    expect(forced).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });

  it('runs a child with IPC in its own process group, and the SIGKILL after the grace ends the whole group', async () => {
    const p = spawnNode(
      'parent',
      "const c = require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });" +
        "process.on('SIGTERM', () => {}); process.send({ ready: true, url: String(c.pid) }); setInterval(() => {}, 1000)",
    );
    const grandchild = Number((await p.ready(10_000)).url);
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      // Its own group: a signal to ours (a terminal's Ctrl-C) does not reach it.
      expect(p.ownProcessGroup).toBe(true);
      expect(alive(-p.pid!)).toBe(true);
      expect((await p.stop(300)).signal).toBe('SIGKILL');
      const deadline = Date.now() + 5_000;
      while (alive(grandchild) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(alive(grandchild)).toBe(false);
    } finally {
      if (alive(grandchild)) process.kill(grandchild, 'SIGKILL');
    }
  });

  it('does not kill a child that stops within the grace', async () => {
    const p = spawnNode(
      'polite',
      "process.on('SIGTERM', () => setTimeout(() => process.exit(0), 100)); process.send({ ready: true }); setInterval(() => {}, 1000)",
    );
    await p.ready(10_000);
    let forced = 0;
    expect(await p.stop(5_000, () => forced++)).toEqual({ code: 0, signal: null });
    expect(forced).toBe(0);
  });
});
