// The process supervisor on real child processes: the ready message, an exit while starting, and a stop that
// escalates from SIGTERM to SIGKILL only after the grace.
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
