// Reconcile and replay on real services: batches whose manifests were purged from the queue are found in the
// archive and announced again (once their grace has passed), counts come out exact, and running reconcile again or
// replaying the range changes no count.
import { spawnSync } from 'node:child_process';
import { GetQueueAttributesCommand, PurgeQueueCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeEntry } from '../../localstack/services.js';
import { createS3, createSqs, queueUrl } from '../../shared/clients/aws.js';
import { testConfig } from '../support/config.js';
import { startProcess, type ChildService } from '../support/processes.js';
import { listKeys } from '../support/sqs.js';

const ENTITIES = 5;
const TYPES = ['view', 'like'];
const N = 2_000;

function sluice(env: Record<string, string>, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const [cmd, ...pre] = nodeEntry('cli/sluice.ts');
  const r = spawnSync(cmd!, [...pre, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('reconcile and replay', () => {
  let cfg: Awaited<ReturnType<typeof testConfig>>;
  let procs: ChildService[] = [];
  const base = Math.floor((Date.now() - 20 * 60_000) / 60_000) * 60_000;
  const expected = new Map<string, { count: number; sum: number }>();

  beforeAll(async () => {
    cfg = await testConfig({ SLUICE_FLUSH_MAX_EVENTS: '300', SLUICE_FLUSH_MAX_AGE: '300ms' });
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGTERM')));
  });

  const totals = async (queryUrl: string) => {
    const out = new Map<string, { count: number; sum: number }>();
    for (const k of expected.keys()) {
      const [entity, type] = k.split('|') as [string, string];
      const r = await fetch(`${queryUrl}/v1/stats?entityId=${entity}&eventType=${type}&fn=count&from=${base - 60_000}&to=${base + 10 * 60_000}&step=1m`);
      const s = await fetch(`${queryUrl}/v1/stats?entityId=${entity}&eventType=${type}&fn=sum&from=${base - 60_000}&to=${base + 10 * 60_000}&step=1m`);
      out.set(k, { count: ((await r.json()) as { total: number }).total ?? 0, sum: ((await s.json()) as { total: number }).total ?? 0 });
    }
    return out;
  };
  const queueDepth = async () => {
    const sqs = createSqs(cfg);
    const a = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: await queueUrl(sqs, cfg.SLUICE_QUEUE_NAME), AttributeNames: ['All'] }));
    sqs.destroy();
    const n = (v?: string) => Number(v ?? 0);
    return n(a.Attributes?.ApproximateNumberOfMessages) + n(a.Attributes?.ApproximateNumberOfMessagesNotVisible);
  };
  const waitFor = async (what: string, ok: () => Promise<boolean>, ms = 60_000) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (await ok()) return;
      await new Promise((r) => setTimeout(r, 300));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const exact = async (queryUrl: string) => {
    const got = await totals(queryUrl);
    return [...expected].every(([k, v]) => got.get(k)?.count === v.count && got.get(k)?.sum === v.sum);
  };

  it('announces purged batches again, and a second reconcile or a replay changes no count', async () => {
    // Ingest alone: the batches reach S3 and their manifests the queue, then the queue is purged by hand.
    const ingest = await startProcess('ingest', cfg.env);
    const events = Array.from({ length: N }, (_, i) => {
      const e = { eventId: `rc-${i}`, entityId: `e-${i % ENTITIES}`, eventType: TYPES[i % 2]!, timestamp: base + (i % 240) * 1_000, value: (i % 3) + 1 };
      const k = `${e.entityId}|${e.eventType}`;
      const x = expected.get(k) ?? { count: 0, sum: 0 };
      x.count++;
      x.sum += e.value;
      expected.set(k, x);
      return e;
    });
    for (let i = 0; i < N; i += 250) {
      const r = await fetch(`${ingest.url}/v1/events`, {
        method: 'POST',
        body: JSON.stringify(events.slice(i, i + 250)),
        headers: { 'content-type': 'application/json' },
      });
      expect(r.status).toBe(202);
    }
    await ingest.kill('SIGTERM'); // delivers its whole WAL: every batch in S3 and announced
    const keys = await listKeys(createS3(cfg), cfg.SLUICE_RAW_BUCKET, 'events/');
    expect(keys.length).toBeGreaterThan(3);
    const sqs = createSqs(cfg);
    await sqs.send(new PurgeQueueCommand({ QueueUrl: await queueUrl(sqs, cfg.SLUICE_QUEUE_NAME) }));
    sqs.destroy();
    expect(await queueDepth()).toBe(0);

    const [worker, query] = await Promise.all([startProcess('worker', cfg.env), startProcess('query', cfg.env)]);
    procs = [worker, query];

    // Within the grace (default 5 minutes) the batches may still be on their way: left alone.
    const early = sluice(cfg.env, 'reconcile');
    expect(early.code).toBe(0);
    expect(early.stdout).toContain(`${keys.length} batch object(s) listed, 0 delivered, 0 announced again, ${keys.length} written within the grace`);
    expect(early.stderr).toContain(`listing s3://${cfg.SLUICE_RAW_BUCKET}/events/`); // says what it will touch

    const first = sluice(cfg.env, 'reconcile', '--grace', '0s');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`${keys.length} announced again`);
    await waitFor('exact counts after reconcile', () => exact(query.url));
    await waitFor('an empty queue', async () => (await queueDepth()) === 0);

    // Every batch is in the ledger now: nothing to announce.
    const second = sluice(cfg.env, 'reconcile', '--grace', '0s');
    expect(second.stdout).toContain(`${keys.length} batch object(s) listed, ${keys.length} delivered, 0 announced again`);

    // Replay re-announces every batch of the range on purpose; the counts stay exact.
    const replay = sluice(cfg.env, 'replay', '--from', String(base - 3_600_000), '--to', String(base + 3_600_000));
    expect(replay.code).toBe(0);
    expect(replay.stdout).toContain(`${keys.length} chosen, ${keys.length} announced`);
    const onlyOne = sluice(cfg.env, 'replay', '--from', String(base - 3_600_000), '--to', String(base + 3_600_000), '--entity', 'e-0');
    expect(onlyOne.stdout).toMatch(/\d+ chosen/);
    await waitFor('the replayed batches to be processed', async () => (await queueDepth()) === 0);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await totals(query.url)).toEqual(expected);
  }, 150_000);
});
