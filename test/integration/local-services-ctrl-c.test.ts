// Ctrl-C in the terminal running `npm start` sends SIGINT to every process of the terminal's foreground group. The
// local databases and the emulator must not be in it: they stay up while the pipeline drains its WAL into them, and
// the stack stops them after (localstack/start.ts). Here a stand-in for `npm start` runs as the leader of a group of
// its own (as a shell runs a job), gets that SIGINT, and the services it started answer afterwards — unless they were
// started in its group, which the second case shows.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeEntry, redisPing } from '../../localstack/services.js';
import { freePorts } from '../support/ports.js';

/** Whether `pid` runs (a zombie whose parent is gone does not). */
const alive = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
};
const started: number[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const pid of started.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Runs the stand-in in a group of its own; resolves with the services' pids and ports once they answer. */
async function startStack(groups: 'own' | 'shared') {
  const [redisPort, emulatorPort] = await freePorts(2);
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-ctrl-c-'));
  dirs.push(dir);
  const [cmd, ...args] = nodeEntry('test/support/local-services-child.ts');
  const proc = spawn(cmd!, [...args, String(redisPort), String(emulatorPort), dir, groups], { detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
  started.push(proc.pid!);
  const exited = new Promise<NodeJS.Signals | null>((r) => proc.once('exit', (_code, signal) => r(signal)));
  const pids = await new Promise<{ redis: number; emulator: number }>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(JSON.parse(out.slice(0, out.indexOf('\n'))));
    });
    void exited.then((s) => reject(new Error(`the stand-in exited (${s}) before its services answered`)));
  });
  started.push(pids.redis, pids.emulator);
  return { proc, exited, pids, redisPort: redisPort!, emulatorPort: emulatorPort! };
}

async function answers(redisPort: number, emulatorPort: number): Promise<{ redis: boolean; emulator: boolean }> {
  const emulator = await fetch(`http://127.0.0.1:${emulatorPort}/health`).then(
    (r) => r.ok,
    () => false,
  );
  return { redis: await redisPing('127.0.0.1', redisPort), emulator };
}

describe('npm start in a terminal, Ctrl-C', () => {
  it('leaves the local Redis and S3+SQS emulator running (process groups of their own) for the stack to stop after the drain', async () => {
    const s = await startStack('own');
    process.kill(-s.proc.pid!, 'SIGINT'); // what the terminal does
    expect(await s.exited).toBe('SIGINT');
    await new Promise((r) => setTimeout(r, 1_000)); // time for a service that got it to stop
    expect(await answers(s.redisPort, s.emulatorPort)).toEqual({ redis: true, emulator: true });
  }, 60_000);

  it('stops them at once when they share the terminal group: what the case above rules out', async () => {
    const s = await startStack('shared');
    process.kill(-s.proc.pid!, 'SIGINT');
    expect(await s.exited).toBe('SIGINT');
    const deadline = Date.now() + 10_000;
    while ((alive(s.pids.redis) || alive(s.pids.emulator)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect({ redis: alive(s.pids.redis), emulator: alive(s.pids.emulator) }).toEqual({ redis: false, emulator: false });
  }, 60_000);
});
