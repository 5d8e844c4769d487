// `sluice start` supervises its services: a SIGKILLed ingest node and query API come back on their ports (with a log
// line naming the restart) and the counts of events sent afterwards are exact; a service that keeps crashing stops the
// stack with the last lines of its log. Ctrl-C (SIGINT to the whole process group) drains in order: no service is
// restarted, every acknowledged event is counted, exit 0; a SIGKILLed `sluice start` leaves no service running.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeEntry } from '../../localstack/services.js';
import { FAST_WORKER_ENV, influxAggregates, queueDepth, totalCount, waitUntil } from '../support/batches.js';
import { testConfig } from '../support/config.js';
import { TEST_ENDPOINTS } from '../support/endpoints.js';

interface Started {
  service: string;
  childPid: number;
  url: string;
}

/**
 * Runs `sluice start` and follows its JSON log lines on stdout. `ownGroup`: as the leader of a process group of its
 * own, as a shell runs a command in the foreground (the group a terminal's Ctrl-C signals).
 */
function runStart(env: Record<string, string>, opts: { ownGroup?: boolean } = {}) {
  const [cmd, ...args] = nodeEntry('cli/sluice.ts');
  const proc: ChildProcess = spawn(cmd!, [...args, 'start'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.ownGroup === true,
  });
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
  let stdout = '';
  proc.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
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
  return { proc, lines, started, waitFor, exited, stderr: () => stderr, stdout: () => stdout };
}

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every service log of the stack (<data>/logs/*.log), by file name. */
function serviceLogs(dataDir: string): Record<string, string> {
  const dir = path.join(dataDir, 'logs');
  return Object.fromEntries(
    readdirSync(dir)
      .filter((f) => f.endsWith('.log'))
      .map((f) => [f, readFileSync(path.join(dir, f), 'utf8')]),
  );
}

let running: ReturnType<typeof runStart> | undefined;
const leftovers: number[] = [];
afterEach(async () => {
  if (running && running.proc.exitCode === null) {
    running.proc.kill('SIGTERM');
    await running.exited;
  }
  running = undefined;
  for (const pid of leftovers.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
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
  it('drains in order on Ctrl-C, which signals the whole process group: no service restarted, nothing lost, exit 0', async () => {
    const password = 'banner-s3cret';
    const cfg = await testConfig({
      ...FAST_WORKER_ENV,
      SLUICE_FLEET_PORT: '0',
      SLUICE_FLEET_MIN: '1',
      SLUICE_FLEET_MAX: '1',
      SLUICE_LOG_LEVEL: 'info',
      // Acknowledged events stay in the WAL until the stop seals and delivers it.
      SLUICE_FLUSH_MAX_AGE: '1h',
      SLUICE_FLUSH_MAX_EVENTS: '1000000',
      // Redis without a password takes one (ioredis only warns): the banner must not print it.
      SLUICE_REDIS_URL: TEST_ENDPOINTS.redisUrl.replace('redis://', `redis://:${password}@`),
    });
    running = runStart(cfg.env, { ownGroup: true });
    const s = running;
    const ingest = await s.waitFor('ingest', () => s.started('ingest')[0]);
    await s.waitFor('query', () => s.started('query')[0]);
    const fleet = await s.waitFor('fleet', () => s.started('fleet')[0]);
    await s.waitFor('the banner', () => (s.stdout().includes('Press Ctrl-C to stop') ? true : undefined));
    expect(s.stdout()).toContain('Redis redis://***@127.0.0.1:');
    expect(s.stdout()).not.toContain(password);
    await waitUntil('the fleet has a ready worker', () => (serviceLogs(cfg.SLUICE_DATA_DIR)['fleet.log'] ?? '').includes('"msg":"worker ready"'), 60_000);

    const base = Math.floor((Date.now() - 5 * 60_000) / 60_000) * 60_000;
    const events = Array.from({ length: 500 }, (_, i) => ({ eventId: `ci-${i}`, entityId: `e-${i % 4}`, eventType: 'view', timestamp: base + i * 100 }));
    const r = await fetch(`${ingest.url}/v1/events`, { method: 'POST', body: JSON.stringify(events), headers: { 'content-type': 'application/json' } });
    expect(r.status).toBe(202);
    const pids = [ingest.childPid, fleet.childPid, s.started('query')[0]!.childPid];
    leftovers.push(...pids);

    // What a terminal does on Ctrl-C: SIGINT to every process of the foreground group.
    process.kill(-s.proc.pid!, 'SIGINT');
    expect(await s.exited).toBe(0);

    expect(s.lines.filter((l) => /exited unexpectedly|exited while the stack stops/.test(String(l.msg)))).toEqual([]);
    expect(s.started('ingest')).toHaveLength(1);
    expect(s.started('query')).toHaveLength(1);
    expect(s.started('fleet')).toHaveLength(1);
    expect(s.stdout()).toMatch(/Stopped\.\n$/); // "Stopped." without "(services restarted …)"
    for (const pid of pids) expect(alive(pid), `service pid ${pid} still running`).toBe(false);
    const logs = serviceLogs(cfg.SLUICE_DATA_DIR);
    for (const [file, text] of Object.entries(logs)) expect(text, file).not.toContain('second signal');
    // Each service stopped once, on its supervisor's SIGTERM (not the terminal's SIGINT); the worker was drained.
    for (const file of ['ingest.log', 'query.log', 'fleet.log']) expect(logs[file], file).not.toContain('"signal":"SIGINT"');
    expect(logs['fleet.log']).toMatch(/"code":0,"signal":null,"msg":"worker drained and exited"/);
    // Nothing lost: the WAL was delivered and the workers counted every event before the stack stopped.
    expect(totalCount(await influxAggregates(cfg, base - 60_000, base + 5 * 60_000))).toBe(500);
    expect(await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)).toBe(0);
  }, 240_000);

  it('restarts no service once stopping, also one that a signal to every process stopped on its own (a service manager)', async () => {
    const cfg = await testConfig({ SLUICE_FLEET_PORT: '0', SLUICE_FLEET_MIN: '0', SLUICE_FLEET_MAX: '1', SLUICE_LOG_LEVEL: 'info' });
    running = runStart(cfg.env, { ownGroup: true });
    const s = running;
    const services = await Promise.all(['ingest', 'query', 'fleet'].map((name) => s.waitFor(name, () => s.started(name)[0])));
    leftovers.push(...services.map((x) => x.childPid));
    // As systemd's default KillMode=control-group does: SIGTERM to every process at once.
    for (const pid of [s.proc.pid!, ...services.map((x) => x.childPid)]) process.kill(pid, 'SIGTERM');
    expect(await s.exited).toBe(0);
    expect(s.lines.filter((l) => String(l.msg).includes('exited unexpectedly'))).toEqual([]);
    for (const name of ['ingest', 'query', 'fleet']) expect(s.started(name), name).toHaveLength(1);
    // The query API stopped before its turn, and was left stopped.
    expect(s.lines.map((l) => l.msg)).toContain('query exited while the stack stops (code 0); not restarted');
  }, 120_000);

  it('leaves no service running when `sluice start` is SIGKILLed: each stops on its own, ingest delivering its WAL', async () => {
    const cfg = await testConfig({
      SLUICE_FLEET_PORT: '0',
      SLUICE_FLEET_MIN: '0',
      SLUICE_FLEET_MAX: '1',
      SLUICE_LOG_LEVEL: 'info',
      SLUICE_FLUSH_MAX_AGE: '1h',
      SLUICE_FLUSH_MAX_EVENTS: '1000000',
    });
    running = runStart(cfg.env, { ownGroup: true });
    const s = running;
    const ingest = await s.waitFor('ingest', () => s.started('ingest')[0]);
    const query = await s.waitFor('query', () => s.started('query')[0]);
    const fleet = await s.waitFor('fleet', () => s.started('fleet')[0]);
    const pids = [ingest.childPid, query.childPid, fleet.childPid];
    leftovers.push(...pids);
    const events = Array.from({ length: 50 }, (_, i) => ({ eventId: `k-${i}`, entityId: 'e-0', eventType: 'view', timestamp: Date.now() }));
    const r = await fetch(`${ingest.url}/v1/events`, { method: 'POST', body: JSON.stringify(events), headers: { 'content-type': 'application/json' } });
    expect(r.status).toBe(202);

    s.proc.kill('SIGKILL');
    await s.exited;
    await waitUntil('every service exited', () => pids.every((pid) => !alive(pid)), 60_000);
    const logs = serviceLogs(cfg.SLUICE_DATA_DIR);
    for (const file of ['ingest.log', 'query.log', 'fleet.log']) expect(logs[file], file).toContain('its IPC channel closed');
    // Ingest stopped as on SIGTERM: it sealed and delivered the WAL that held the acknowledged events (no seal by age).
    expect(logs['ingest.log']).toMatch(/"events":50,.*"msg":"segment delivered"/);
  }, 180_000);
});
