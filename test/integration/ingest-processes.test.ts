// `sluice ingest --processes 2` as a real process tree: connections spread over both processes, whose events land in
// their own WAL folders (<node>-p0, <node>-p1) and batch keys; a SIGKILLed process is restarted by the primary under
// the same id and delivers its own WAL; SIGTERM drains every process (the archive holds each acknowledged event once,
// announced once); a process refused at start (its folder held by a live process) stops the others and exits 2; a process
// that crashes 5 times within 2 minutes is given up: the others are drained, the primary exits 1, and the next start
// delivers what the given-up process left.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tryLockWal } from '../../ingest/wal-lock.js';
import { nodeEntry } from '../../localstack/services.js';
import { createSqs } from '../../shared/clients/aws.js';
import { decodeManifest } from '../../shared/contracts/manifest.js';
import { waitUntil } from '../support/batches.js';
import { archivedEventIds } from '../support/archive.js';
import { testConfig } from '../support/config.js';
import { receiveAll } from '../support/sqs.js';

type TestConfig = Awaited<ReturnType<typeof testConfig>>;

interface Primary {
  proc: ChildProcess;
  url: string;
  exited: Promise<number | null>;
}

const primaries: ChildProcess[] = [];
afterEach(async () => {
  for (const p of primaries.splice(0)) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGKILL'); // its processes exit with it (their IPC channel closes)
      await new Promise((r) => p.once('exit', r));
    }
  }
});

/** `sluice ingest …args` with its output in <data>/<logName>.log; resolves once it reports ready. */
function startPrimary(env: Record<string, string>, args: string[], logName: string): Promise<Primary> {
  const [cmd, ...rest] = nodeEntry('cli/sluice.ts');
  const fd = openSync(path.join(env.SLUICE_DATA_DIR!, `${logName}.log`), 'a');
  const proc = spawn(cmd!, [...rest, 'ingest', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd, 'ipc'] });
  primaries.push(proc);
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sluice ingest ${args.join(' ')} did not report ready within 120s`)), 120_000);
    proc.once('message', (m: { url?: string }) => {
      clearTimeout(timer);
      resolve({ proc, url: m.url ?? '', exited });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`sluice ingest exited with ${code} while starting`));
    });
  });
}

const logOf = (cfg: TestConfig, name: string) => {
  const f = path.join(cfg.SLUICE_DATA_DIR, `${name}.log`);
  return existsSync(f) ? readFileSync(f, 'utf8') : '';
};
const logLines = (cfg: TestConfig, name: string) =>
  logOf(cfg, name)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const nodeDir = (cfg: TestConfig, node: string) => path.join(cfg.SLUICE_DATA_DIR, 'ingest', node);
const segmentsIn = (cfg: TestConfig, node: string) => {
  const dir = path.join(nodeDir(cfg, node), 'wal');
  return existsSync(dir) ? readdirSync(dir).filter((n) => /^\d{13}_\d{6}\.ndjson$/.test(n)) : [];
};
const lockPid = (cfg: TestConfig, node: string): number | undefined => {
  try {
    return (JSON.parse(readFileSync(path.join(nodeDir(cfg, node), 'wal.lock'), 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined;
  }
};

/** POSTs events on a new connection of its own (no keep-alive), so consecutive requests are spread over the processes. */
function postOnNewConnection(url: string, ids: string[]): Promise<{ status: number; accepted: number }> {
  const now = Date.now();
  const body = JSON.stringify(ids.map((id, i) => ({ eventId: id, entityId: `e-${i % 7}`, eventType: 'view', timestamp: now - (i % 3) * 60_000 })));
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path: '/v1/events', method: 'POST', agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, accepted: res.statusCode === 202 ? (JSON.parse(text) as { accepted: number }).accepted : 0 }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends `requests` requests of 25 events, 4 connections at a time; returns the acknowledged ids. */
async function sendAcked(url: string, prefix: string, requests: number): Promise<string[]> {
  const acked: string[] = [];
  for (let r = 0; r < requests; r += 4) {
    const batch = Array.from({ length: Math.min(4, requests - r) }, (_, j) => Array.from({ length: 25 }, (_, k) => `${prefix}-${r + j}-${k}`));
    const answers = await Promise.all(batch.map((ids) => postOnNewConnection(url, ids)));
    answers.forEach((a, j) => {
      expect(a).toEqual({ status: 202, accepted: 25 });
      acked.push(...batch[j]!);
    });
  }
  return acked;
}

// Segments stay open (no seal by age or size) so the WAL folders show where events landed, and the SIGKILL leaves
// acknowledged, unsealed events behind. Adoption only at start: the killed process must deliver its own WAL.
const HOLD_ENV = { SLUICE_FLUSH_MAX_AGE: '1h', SLUICE_FLUSH_MAX_EVENTS: '1000000', SLUICE_LOG_LEVEL: 'info', SLUICE_WAL_ADOPT_INTERVAL: '0' };

describe('sluice ingest --processes 2', () => {
  it('spreads connections over both processes and WAL folders, restarts a SIGKILLed process under its id, and SIGTERM drains all', async () => {
    const cfg = await testConfig({ ...HOLD_ENV, SLUICE_NODE_ID: 'multi' });
    const primary = await startPrimary(cfg.env, ['--processes', '2'], 'primary');
    const [p0, p1] = ['multi-p0', 'multi-p1'];

    const acked = await sendAcked(primary.url, 'a', 40);
    // Both processes took connections: each holds acknowledged events in its own WAL folder.
    expect(segmentsIn(cfg, p0).length).toBeGreaterThan(0);
    expect(segmentsIn(cfg, p1).length).toBeGreaterThan(0);
    expect(existsSync(nodeDir(cfg, 'multi'))).toBe(false); // no folder under the bare node id

    // SIGKILL process 1: the primary restarts it under the same id, and it replays and delivers its own WAL.
    const killedPid = lockPid(cfg, p1)!;
    const leftBehind = segmentsIn(cfg, p1);
    process.kill(killedPid, 'SIGKILL');
    await waitUntil(
      'the primary restarted multi-p1',
      () => logLines(cfg, 'primary').some((l) => l.msg === 'ingest process multi-p1 started' && l.restarts === 1),
      90_000,
    );
    const restart = logLines(cfg, 'primary').find((l) => typeof l.msg === 'string' && l.msg.startsWith('ingest process multi-p1 exited unexpectedly'));
    expect(restart).toMatchObject({ node: p1, childPid: killedPid, signal: 'SIGKILL', restarts: 1 });
    expect(lockPid(cfg, p1)).not.toBe(killedPid);
    await waitUntil('multi-p1 delivered the WAL it left behind', () => leftBehind.every((f) => !segmentsIn(cfg, p1).includes(f)), 60_000);

    // Still one port for both processes after the restart.
    acked.push(...(await sendAcked(primary.url, 'b', 16)));

    primary.proc.kill('SIGTERM');
    expect(await primary.exited).toBe(0);
    expect(segmentsIn(cfg, p0)).toEqual([]);
    expect(segmentsIn(cfg, p1)).toEqual([]);
    expect(logOf(cfg, 'primary')).not.toContain('"type":"WalAdopted"'); // p1 delivered its own folder

    const { keys, counts } = await archivedEventIds(cfg);
    expect(keys.some((k) => k.includes('/multi-p0-'))).toBe(true);
    expect(keys.some((k) => k.includes('/multi-p1-'))).toBe(true);
    expect(keys.every((k) => /\/multi-p[01]-/.test(k))).toBe(true);
    expect(acked.filter((id) => counts.get(id) !== 1)).toEqual([]);
    expect(counts.size).toBe(acked.length);
    const sqs = createSqs(cfg);
    try {
      const manifests = (await receiveAll(sqs, cfg.SLUICE_QUEUE_NAME, { waitMs: 2_000, deleteThem: true })).map((m) => decodeManifest(m.body));
      expect(manifests.map((m) => m.key).sort()).toEqual([...keys].sort()); // each batch announced once
      expect(manifests.reduce((n, m) => n + m.eventCount, 0)).toBe(acked.length);
    } finally {
      sqs.destroy();
    }
  }, 300_000);

  it('stops every process and exits 2 when one is refused at start (its WAL folder is held by a live process)', async () => {
    const cfg = await testConfig({ ...HOLD_ENV, SLUICE_NODE_ID: 'held' });
    // This test process holds the folder of process 1 as its owner, like a second node started with that id.
    const held = tryLockWal(nodeDir(cfg, 'held-p1'), 'owner', 'held-p1');
    if (!held.held) throw new Error('the fresh folder should be free');
    try {
      await expect(startPrimary(cfg.env, ['--processes', '2'], 'refused')).rejects.toThrow(/exited with 2 while starting/);
      const out = logOf(cfg, 'refused');
      expect(out).toContain(`the WAL folder ${nodeDir(cfg, 'held-p1')} is in use by ingest node held-p1 (pid ${process.pid} `);
      expect(out).toContain('ingest process held-p1 refused to start');
      // Process 0 was stopped too: its folder's lock is released.
      await waitUntil('held-p0 released its folder', () => lockPid(cfg, 'held-p0') === undefined, 30_000);
    } finally {
      held.lock.release();
    }
  }, 180_000);

  it('gives up on a process that crashes 5 times within 2 minutes: the others are drained and the primary exits 1', async () => {
    const cfg = await testConfig({ ...HOLD_ENV, SLUICE_NODE_ID: 'loop' });
    const primary = await startPrimary(cfg.env, ['--processes', '2'], 'loop');
    const acked = await sendAcked(primary.url, 'l', 8);
    const started = (n: number) => logLines(cfg, 'loop').some((l) => l.msg === 'ingest process loop-p1 started' && l.restarts === n);
    for (let crash = 0; crash < 5; crash++) {
      await waitUntil(`loop-p1 running (restart ${crash})`, () => started(crash), 90_000);
      process.kill(lockPid(cfg, 'loop-p1')!, 'SIGKILL');
    }
    expect(await primary.exited).toBe(1);
    expect(logOf(cfg, 'loop')).toContain('ingest process loop-p1 crashed 5 times within 120s; stopping the other ingest processes');
    expect(started(5)).toBe(false); // not restarted after the fifth crash
    // Process 0 was drained, not killed: its WAL is delivered and its lock released.
    expect(segmentsIn(cfg, 'loop-p0')).toEqual([]);
    expect(lockPid(cfg, 'loop-p0')).toBeUndefined();
    // What process 1 acknowledged and did not deliver stays in its folder; the next start delivers it.
    const again = await startPrimary(cfg.env, ['--processes', '2'], 'loop-again');
    again.proc.kill('SIGTERM');
    expect(await again.exited).toBe(0);
    const sqs = createSqs(cfg);
    try {
      const manifests = (await receiveAll(sqs, cfg.SLUICE_QUEUE_NAME, { waitMs: 2_000, deleteThem: true })).map((m) => decodeManifest(m.body));
      // A process killed between announcing a recovered segment and deleting it announces it again when it restarts:
      // the same key with the same object (workers count a batch once per key). Every event is in exactly one key.
      const byKey = new Map<string, (typeof manifests)[number]>();
      for (const m of manifests) {
        const first = byKey.get(m.key);
        if (first)
          expect({ key: m.key, count: m.eventCount, sha: m.checksum.value }).toEqual({ key: m.key, count: first.eventCount, sha: first.checksum.value });
        else byKey.set(m.key, m);
      }
      expect([...byKey.values()].reduce((n, m) => n + m.eventCount, 0)).toBe(acked.length);
    } finally {
      sqs.destroy();
    }
  }, 400_000);

  it('refuses a --processes that is not a whole number of processes, naming what it accepts', async () => {
    const cfg = await testConfig();
    await expect(startPrimary(cfg.env, ['--processes', 'many'], 'bad-option')).rejects.toThrow(/exited with 2 while starting/);
    expect(logOf(cfg, 'bad-option')).toContain('--processes must be an integer from 1 to 1024, got "many"');
  }, 60_000);
});
