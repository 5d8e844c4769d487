// The local stack survives restarts: `sluice start` on a private S3+SQS emulator, events counted, everything stopped
// (the emulator too) and started again: every archived object is still there, counts are exact and `sluice audit`
// passes. Then batches whose manifests were purged from the queue are announced again by the reconcile that
// `sluice start` runs at start, and a manual reconcile afterwards finds nothing left to do.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PurgeQueueCommand } from '@aws-sdk/client-sqs';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureEmulator, nodeEntry, type RunningService } from '../../localstack/services.js';
import { createS3, createSqs, queueUrl } from '../../shared/clients/aws.js';
import { createLogger } from '../../shared/logger.js';
import { testEnv, testConfig } from '../support/config.js';
import { startProcess } from '../support/processes.js';
import { listKeys } from '../support/sqs.js';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });

/** Runs `sluice start`; resolves with the query and ingest URLs once both serve. */
async function sluiceStart(env: Record<string, string>, name: string) {
  const [cmd, ...args] = nodeEntry('cli/sluice.ts');
  const proc: ChildProcess = spawn(cmd!, [...args, 'start'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(path.join(env.SLUICE_DATA_DIR!, `${name}.log`));
  const urls = new Map<string, string>();
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    log.write(d);
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) {
      if (!l.startsWith('{')) continue;
      const j = JSON.parse(l) as { msg?: string; url?: string };
      const m = /^(\w+) started$/.exec(j.msg ?? '');
      if (m && j.url) urls.set(m[1]!, j.url);
    }
  });
  proc.stderr!.pipe(log);
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const deadline = Date.now() + 90_000;
  while (!(urls.has('query') && urls.has('ingest'))) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`sluice start did not come up; see ${env.SLUICE_DATA_DIR}/${name}.log`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    ingest: urls.get('ingest')!,
    query: urls.get('query')!,
    async stop() {
      proc.kill('SIGTERM');
      return exited;
    },
  };
}

function sluice(env: Record<string, string>, ...args: string[]) {
  const [cmd, ...pre] = nodeEntry('cli/sluice.ts');
  const r = spawnSync(cmd!, [...pre, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 90_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('restarting the local stack', () => {
  let emulator: RunningService | undefined;
  afterAll(async () => {
    await emulator?.stop();
  });

  it('keeps the archive and exact counts across restarts, and reconcile restores a purged queue', async () => {
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const probe = testEnv(); // only for its fresh data folder
    const emulatorDir = path.join(probe.SLUICE_DATA_DIR!, 'emulator');
    const log = createLogger('test-emulator', 'warn');
    emulator = await ensureEmulator(endpoint, emulatorDir, log);
    expect(emulator.started).toBe(true);
    const cfg = await testConfig({
      AWS_ENDPOINT_URL: endpoint,
      SLUICE_FLEET_PORT: '0',
      SLUICE_WORKER_POLL_WAIT: '1s',
      SLUICE_FLEET_MIN: '1',
      SLUICE_FLEET_MAX: '1',
      SLUICE_LOG_LEVEL: 'info',
      SLUICE_FLUSH_MAX_EVENTS: '400',
    });
    const env = { ...cfg.env };

    const base = Math.floor((Date.now() - 30 * 60_000) / 60_000) * 60_000;
    const expected = new Map<string, number>();
    const send = async (url: string, from: number, n: number) => {
      const events = Array.from({ length: n }, (_, j) => {
        const i = from + j;
        const e = { eventId: `rs-${i}`, entityId: `e-${i % 3}`, eventType: 'view', timestamp: base + (i % 300) * 1_000 };
        expected.set(e.entityId, (expected.get(e.entityId) ?? 0) + 1);
        return e;
      });
      const r = await fetch(`${url}/v1/events`, { method: 'POST', body: JSON.stringify(events), headers: { 'content-type': 'application/json' } });
      expect(r.status).toBe(202);
    };
    const counts = async (queryUrl: string) =>
      Object.fromEntries(
        await Promise.all(
          [...expected.keys()].sort().map(async (e) => {
            const r = await fetch(`${queryUrl}/v1/stats?entityId=${e}&eventType=view&fn=count&from=${base - 60_000}&to=${base + 10 * 60_000}&step=1m`);
            return [e, ((await r.json()) as { total?: number }).total ?? 0] as const;
          }),
        ),
      );
    const want = () => Object.fromEntries([...expected].sort());
    const untilExact = async (queryUrl: string) => {
      const deadline = Date.now() + 60_000;
      let got = await counts(queryUrl);
      while (JSON.stringify(got) !== JSON.stringify(want()) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 300));
        got = await counts(queryUrl);
      }
      return got;
    };

    // 1. Start, send, count, stop everything (the emulator included).
    let stack = await sluiceStart(env, 'start-1');
    await send(stack.ingest, 0, 1_500);
    expect(await untilExact(stack.query)).toEqual(want());
    expect(await stack.stop()).toBe(0);
    const keys = (await listKeys(createS3(cfg), cfg.SLUICE_RAW_BUCKET, 'events/')).sort();
    expect(keys.length).toBeGreaterThan(0);
    await emulator.stop();
    emulator = await ensureEmulator(endpoint, emulatorDir, log);

    // 2. Start again: the archive is all there, counts exact, the audit passes.
    expect((await listKeys(createS3(cfg), cfg.SLUICE_RAW_BUCKET, 'events/')).sort()).toEqual(keys);
    stack = await sluiceStart(env, 'start-2');
    expect(await counts(stack.query)).toEqual(want());
    const audit = sluice(env, 'audit', '--query-url', stack.query);
    expect(audit.stderr).toContain('audit: event times'); // no --from/--to: the last 24 hours, said up front
    expect(audit.code).toBe(0);
    expect(await stack.stop()).toBe(0);

    // 3. Batches reach S3 and the queue, the queue is purged by hand: the reconcile at start announces them again.
    const ingest = await startProcess('ingest', env);
    await send(ingest.url, 1_500, 900);
    await ingest.kill('SIGTERM');
    const sqs = createSqs(cfg);
    await sqs.send(new PurgeQueueCommand({ QueueUrl: await queueUrl(sqs, cfg.SLUICE_QUEUE_NAME) }));
    sqs.destroy();
    stack = await sluiceStart({ ...env, SLUICE_RECONCILE_GRACE: '0s' }, 'start-3');
    expect(await untilExact(stack.query)).toEqual(want());
    const again = sluice(env, 'reconcile', '--grace', '0s');
    expect(again.stdout).toMatch(/ (\d+) batch object\(s\) listed, \1 delivered, 0 announced again/);
    expect(await counts(stack.query)).toEqual(want());
    expect(await stack.stop()).toBe(0);
  }, 240_000);
});
