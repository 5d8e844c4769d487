// `sluice start` supervises its services: a SIGKILLed ingest node and query API come back on their ports (with a log
// line naming the restart) and the counts of events sent afterwards are exact; a service that keeps crashing stops the
// stack with the last lines of its log.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeEntry } from '../../localstack/services.js';
import { testConfig } from '../support/config.js';

interface Started {
  service: string;
  childPid: number;
  url: string;
}

/** Runs `sluice start` and follows its JSON log lines on stdout. */
function runStart(env: Record<string, string>) {
  const [cmd, ...args] = nodeEntry('cli/sluice.ts');
  const proc: ChildProcess = spawn(cmd!, [...args, 'start'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(path.join(env.SLUICE_DATA_DIR!, 'start.log'));
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    log.write(d);
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) if (l.startsWith('{')) lines.push(JSON.parse(l) as Record<string, unknown>);
  });
  proc.stderr!.on('data', (d: Buffer) => {
    log.write(d);
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const started = (service: string) => lines.filter((l) => l.msg === `${service} started`) as unknown as Started[];
  const waitFor = async <T>(what: string, get: () => T | undefined, ms = 60_000): Promise<T> => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const v = get();
      if (v !== undefined) return v;
      if (proc.exitCode !== null) throw new Error(`sluice start exited (${proc.exitCode}) while waiting for ${what}:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  return { proc, lines, started, waitFor, exited, stderr: () => stderr };
}

let running: ReturnType<typeof runStart> | undefined;
afterEach(async () => {
  if (running && running.proc.exitCode === null) {
    running.proc.kill('SIGTERM');
    await running.exited;
  }
  running = undefined;
});

describe('sluice start supervision', () => {
  it('restarts a SIGKILLed ingest node and query API, and counts stay exact', async () => {
    const cfg = await testConfig({
      SLUICE_FLEET_PORT: '0',
      SLUICE_WORKER_POLL_WAIT: '1s',
      SLUICE_FLEET_MIN: '1',
      SLUICE_FLEET_MAX: '1',
      SLUICE_LOG_LEVEL: 'info',
    });
    running = runStart(cfg.env);
    const s = running;
    const ingest0 = await s.waitFor('ingest', () => s.started('ingest')[0]);
    const query0 = await s.waitFor('query', () => s.started('query')[0]);
    process.kill(ingest0.childPid, 'SIGKILL');
    process.kill(query0.childPid, 'SIGKILL');
    const ingest1 = await s.waitFor('ingest restarted', () => s.started('ingest')[1]);
    const query1 = await s.waitFor('query restarted', () => s.started('query')[1]);
    expect(ingest1.childPid).not.toBe(ingest0.childPid);
    expect(ingest1.url).toBe(ingest0.url); // same port: producers and the query API keep their URL
    expect(query1.url).toBe(query0.url);
    const restartLines = s.lines.filter((l) => typeof l.msg === 'string' && (l.msg as string).includes('exited unexpectedly'));
    expect(restartLines.map((l) => (l as { restarts?: number }).restarts)).toEqual([1, 1]);
    expect(restartLines.map((l) => String(l.msg).split(' ')[0]).sort()).toEqual(['ingest', 'query']);

    const base = Math.floor((Date.now() - 5 * 60_000) / 60_000) * 60_000;
    const events = Array.from({ length: 500 }, (_, i) => ({ eventId: `sv-${i}`, entityId: `e-${i % 4}`, eventType: 'view', timestamp: base + i * 100 }));
    const r = await fetch(`${ingest1.url}/v1/events`, { method: 'POST', body: JSON.stringify(events), headers: { 'content-type': 'application/json' } });
    expect(r.status).toBe(202);
    const count = async (entity: string) => {
      const q = await fetch(`${query1.url}/v1/stats?entityId=${entity}&eventType=view&fn=count&from=${base - 60_000}&to=${base + 5 * 60_000}&step=1m`);
      return ((await q.json()) as { total?: number }).total ?? 0;
    };
    const deadline = Date.now() + 60_000;
    let got: number[] = [];
    while (Date.now() < deadline) {
      got = await Promise.all(['e-0', 'e-1', 'e-2', 'e-3'].map(count));
      if (got.reduce((a, b) => a + b, 0) >= 500) break;
      await new Promise((res) => setTimeout(res, 300));
    }
    expect(got).toEqual([125, 125, 125, 125]);
  }, 120_000);

  it('stops the stack when a service crashes again and again, printing the end of its log', async () => {
    const cfg = await testConfig({
      SLUICE_FLEET_PORT: '0',
      SLUICE_FLEET_MIN: '0',
      SLUICE_FLEET_MAX: '1',
      SLUICE_LOG_LEVEL: 'info',
      SLUICE_RECONCILE_INTERVAL: '0s',
    });
    running = runStart(cfg.env);
    const s = running;
    for (let n = 0; n < 5; n++) {
      const ingest = await s.waitFor(`ingest start ${n}`, () => s.started('ingest')[n]);
      process.kill(ingest.childPid, 'SIGKILL');
    }
    expect(await s.exited).toBe(1);
    expect(s.stderr()).toContain('ingest crashed 5 times within 120s; stopping the stack. Last lines of');
    expect(s.stderr()).toMatch(/ingest\.log:\n {2}\S/); // at least one line of the ingest log follows
  }, 120_000);
});
