// Orphaned WAL folders are adopted: an ingest node SIGKILLed with acknowledged events in its WAL, then a node with
// another id started on the same data directory delivers them exactly once under the dead node's id (read back from
// the archive with DuckDB), logging the adoption; a second live node on one folder is refused with the holder's pid;
// the original node started again afterwards delivers nothing twice; and a node whose folder is being adopted waits.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createSqs } from '../../shared/clients/aws.js';
import { decodeManifest } from '../../shared/contracts/manifest.js';
import { tryLockWal } from '../../ingest/wal-lock.js';
import { waitUntil } from '../support/batches.js';
import { archivedEventIds } from '../support/archive.js';
import { testConfig } from '../support/config.js';
import { startProcess as startChild, type ChildService } from '../support/processes.js';
import { receiveAll } from '../support/sqs.js';

type TestConfig = Awaited<ReturnType<typeof testConfig>>;

// Every child is killed after its test, also when an assertion failed halfway.
const children: ChildService[] = [];
const startProcess = async (command: string, env: Record<string, string>, logName: string) => {
  const c = await startChild(command, env, logName);
  children.push(c);
  return c;
};
afterEach(async () => {
  for (const c of children.splice(0)) await c.kill('SIGKILL');
});

// Segments stay open (no seal by age or size) so the kill leaves unsealed, acknowledged events behind.
const HOLD_ENV = { SLUICE_FLUSH_MAX_AGE: '1h', SLUICE_FLUSH_MAX_EVENTS: '1000000', SLUICE_LOG_LEVEL: 'info', SLUICE_WAL_ADOPT_INTERVAL: '1s' };

async function send(url: string, ids: string[]): Promise<number> {
  const now = Date.now();
  const body = ids.map((id, i) => ({ eventId: id, entityId: `e-${i % 5}`, eventType: 'view', timestamp: now - (i % 3) * 60_000 }));
  const r = await fetch(`${url}/v1/events`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return r.status;
}

/** Sends `n` events in requests of 100; returns the acknowledged ids. */
async function sendAcked(url: string, prefix: string, n: number): Promise<string[]> {
  const acked: string[] = [];
  for (let i = 0; i < n; i += 100) {
    const ids = Array.from({ length: Math.min(100, n - i) }, (_, j) => `${prefix}-${i + j}`);
    expect(await send(url, ids)).toBe(202);
    acked.push(...ids);
  }
  return acked;
}

const logOf = (cfg: TestConfig, name: string) => {
  const f = path.join(cfg.SLUICE_DATA_DIR, `${name}.log`);
  return existsSync(f) ? readFileSync(f, 'utf8') : '';
};
const segmentsIn = (cfg: TestConfig, node: string) => {
  const dir = path.join(cfg.SLUICE_DATA_DIR, 'ingest', node, 'wal');
  return existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.ndjson')) : [];
};

describe('orphaned WAL folders are adopted', () => {
  it('delivers a SIGKILLed node’s acknowledged events exactly once under its id, refuses a second live node, and the original node restarting delivers nothing twice', async () => {
    const cfg = await testConfig(HOLD_ENV);
    const a = await startProcess('ingest', { ...cfg.env, SLUICE_NODE_ID: 'node-a' }, 'node-a');
    const acked = await sendAcked(a.url, 'a', 1_500);

    // A second live process on the same folder is refused, naming the holder's pid.
    await expect(startProcess('ingest', { ...cfg.env, SLUICE_NODE_ID: 'node-a' }, 'node-a-twin')).rejects.toThrow(/exited with 2 while starting/);
    expect(logOf(cfg, 'node-a-twin')).toContain(`is in use by ingest node node-a (pid ${a.proc.pid} `);

    await a.kill('SIGKILL');
    expect(segmentsIn(cfg, 'node-a').length).toBeGreaterThan(0); // acknowledged, never sealed, left behind

    const b = await startProcess('ingest', { ...cfg.env, SLUICE_NODE_ID: 'node-b' }, 'node-b');
    await waitUntil('node-b adopted node-a’s WAL', () => /"type":"WalAdopted"/.test(logOf(cfg, 'node-b')), 60_000);
    const adopted = logOf(cfg, 'node-b')
      .split('\n')
      .filter((l) => l.includes('"type":"WalAdopted"'))
      .map((l) => JSON.parse(l) as { node: string; by: string; segments: number; events: number });
    expect(adopted).toEqual([expect.objectContaining({ node: 'node-a', by: 'node-b', events: acked.length })]);
    expect(segmentsIn(cfg, 'node-a')).toEqual([]);
    expect(existsSync(path.join(cfg.SLUICE_DATA_DIR, 'ingest', 'node-a', 'wal.lock'))).toBe(false);

    // The original node comes back: its folder is empty, so it delivers nothing again.
    const a2 = await startProcess('ingest', { ...cfg.env, SLUICE_NODE_ID: 'node-a' }, 'node-a-again');
    expect(await a2.kill('SIGTERM')).toBe(0);
    expect(await b.kill('SIGTERM')).toBe(0);

    const { keys, counts } = await archivedEventIds(cfg);
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) expect(k).toContain('node-a'); // delivered under the original node id
    expect([...acked].filter((id) => counts.get(id) !== 1)).toEqual([]);
    expect(counts.size).toBe(acked.length);
    const sqs = createSqs(cfg);
    try {
      const manifests = (await receiveAll(sqs, cfg.SLUICE_QUEUE_NAME, { waitMs: 2_000, deleteThem: true })).map((m) => decodeManifest(m.body));
      expect(manifests.map((m) => m.key).sort()).toEqual([...keys].sort()); // each batch announced once
    } finally {
      sqs.destroy();
    }
  }, 180_000);

  it('a node whose folder is being adopted waits for the adoption, then starts', async () => {
    const cfg = await testConfig(HOLD_ENV);
    const nodeDir = path.join(cfg.SLUICE_DATA_DIR, 'ingest', 'node-c');
    const adopting = tryLockWal(nodeDir, 'adopting', 'someone-else');
    if (!adopting.held) throw new Error('the fresh folder should be free');
    let started = false;
    const c = startProcess('ingest', { ...cfg.env, SLUICE_NODE_ID: 'node-c' }, 'node-c').then((s) => {
      started = true;
      return s;
    });
    await waitUntil('node-c waits for the lock', () => /"type":"WalLockWaiting"/.test(logOf(cfg, 'node-c')), 60_000);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(started).toBe(false);
    adopting.lock.release();
    const node = await c;
    expect(await send(node.url, ['c-1'])).toBe(202);
    expect(await node.kill('SIGTERM')).toBe(0);
  }, 120_000);
});
