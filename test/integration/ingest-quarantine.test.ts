// Poison lines in WAL segments (what validation might miss: a lone surrogate, invalid JSON, wrong types, a truncated
// line, a repeated key) against the real emulator: good events of every producer are archived exactly once, the bad
// lines land in the quarantine with reasons, later segments are not blocked, segment files go; a crash replay and a
// repeated release add nothing; `sluice quarantine release --file` delivers fixed lines once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { startIngest } from '../../ingest/main.js';
import { createLogger } from '../../shared/logger.js';
import { createS3, createSqs } from '../../shared/clients/aws.js';
import { PROJECT_ROOT } from '../../shared/config.js';
import type { Event } from '../../shared/contracts/event.js';
import { encodeEventLine } from '../../shared/contracts/event-line.js';
import { decodeManifest } from '../../shared/contracts/manifest.js';
import { parseRawEventsKey, RAW_EVENTS_KEY_PATTERN } from '../../shared/contracts/parquet-schema.js';
import { encodeQuarantineRecord, segmentQuarantineKey, type QuarantineRecord } from '../../shared/contracts/quarantine.js';
import { readQuarantineRecords } from '../../shared/clients/quarantine-store.js';
import { openEngine, parquetFiles, queryParquet } from '../../shared/parquet.js';
import { quarantineList, quarantineRelease } from '../../cli/quarantine.js';
import { downloadArchive } from '../support/archive.js';
import { testConfig } from '../support/config.js';
import { metricValue } from '../support/batches.js';
import { listKeys, receiveAll } from '../support/sqs.js';

const log = createLogger('test', 'error');
const now = Date.now();
const earlier = now - 2 * 3_600_000; // a second hour partition

/** A good staged line of `producer`, as ingest writes it. */
function good(id: string, producer: string, ts = now): string {
  const e: Event = { eventId: id, entityId: `video-${id.length % 3}`, eventType: 'view', timestamp: ts, value: 2, dims: { country: 'FR' } };
  return encodeEventLine(e, now - 1_000, producer);
}
const rest = `"n":"v","t":"view","ts":${now},"v":1,"it":${now},"p":"web"`;
const POISON = {
  surrogate: `{"i":"p-sur",${rest},"d":{"k":"\\ud800"}}`,
  invalidJson: `{"i":"p-bad",,"n":"v"}`,
  wrongTypes: `{"i":"p-type","n":"v","t":"view","ts":"yesterday","v":"x","d":null,"it":${now},"p":"app"}`,
  truncated: `{"i":"p-trunc","n":"v","t":"vi`,
};

/** Lines of a segment: good events of three producers around the poison lines. Returns the text and the good ids. */
function segmentText(tag: string, poison: string[]): { text: string; goodIds: string[] } {
  const lines: string[] = [];
  const goodIds: string[] = [];
  const producers = ['web', 'app', 'mobile'];
  let k = 0;
  for (const p of [...poison, '']) {
    for (let j = 0; j < 3; j++) {
      const id = `${tag}-${k}`;
      lines.push(good(id, producers[k % 3]!, k % 2 ? earlier : now).trimEnd());
      goodIds.push(id);
      k++;
    }
    if (p) lines.push(p);
  }
  return { text: `${lines.join('\n')}\n`, goodIds };
}

async function archive(cfg: Awaited<ReturnType<typeof testConfig>>) {
  const { keys, files } = await downloadArchive(cfg);
  const rows = files.length
    ? await queryParquet(
        `SELECT event_id, count(*)::INT AS n, min(producer) AS p, epoch_ms(min(ingest_time))::BIGINT AS it FROM read_parquet(${parquetFiles(files)}) GROUP BY 1`,
      )
    : [];
  return { keys, byId: new Map(rows.map((r) => [String(r.event_id), { n: Number(r.n), p: String(r.p), it: Number(r.it) }])) };
}

async function records(cfg: Awaited<ReturnType<typeof testConfig>>, key: string): Promise<QuarantineRecord[]> {
  const s3 = createS3(cfg);
  try {
    const out: QuarantineRecord[] = [];
    for await (const r of (await readQuarantineRecords(s3, cfg.SLUICE_RAW_BUCKET, key)) ?? []) out.push(r);
    return out;
  } finally {
    s3.destroy();
  }
}

describe('ingest quarantines what it cannot convert, instead of blocking', () => {
  let cfg: Awaited<ReturnType<typeof testConfig>>;
  let ingest: Awaited<ReturnType<typeof startIngest>>;
  let walDir: string;
  const ts0 = Date.now() - 10_000;
  const segA = { id: `${ts0}_900001`, ...segmentText('a', [POISON.surrogate, POISON.invalidJson, POISON.wrongTypes, POISON.truncated]) };
  const segB = { id: `${ts0}_900002`, ...segmentText('b', [POISON.truncated, POISON.surrogate]) };
  // A repeated key passes the line checks but the engine refuses it: the good lines cannot be converted either.
  const segC = { id: `${ts0}_900003`, ...segmentText('c', [`{"i":"p-dup","i":"p-dup2",${rest},"d":null}`]) };
  const liveIds = Array.from({ length: 20 }, (_, i) => `live-${i}`);
  let manifests: ReturnType<typeof decodeManifest>[] = [];

  beforeAll(async () => {
    cfg = await testConfig({ SLUICE_UPLOAD_CONCURRENCY: '2' });
    await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duck') });
    walDir = path.resolve(cfg.SLUICE_DATA_DIR, 'ingest', cfg.SLUICE_NODE_ID, 'wal');
    mkdirSync(walDir, { recursive: true });
    ingest = await startIngest(cfg, log);
    // Sealed segments as the WAL hands them to delivery, holding lines validation let through by mistake.
    for (const s of [segA, segB, segC]) {
      const file = path.join(walDir, `${s.id}.ndjson`);
      writeFileSync(file, s.text);
      ingest.delivery.enqueue({ id: s.id, path: file, events: s.text.split('\n').length - 1, bytes: Buffer.byteLength(s.text) });
    }
  });
  afterAll(async () => {
    await ingest?.close();
  });

  it('delivers every good event once, quarantines the poison lines with reasons, and keeps delivering later segments', async () => {
    // Appended (as the POST handler does after validation) while the poison segments occupy both upload slots.
    await ingest.wal.append(liveIds.map((id) => good(id, 'web')).join(''), liveIds.length);
    await ingest.wal.seal();
    const sqs = createSqs(cfg);
    const deadline = Date.now() + 20_000;
    const received: { body: string }[] = [];
    const segmentsLeft = () => readdirSync(walDir).filter((f) => f.endsWith('.ndjson'));
    while (Date.now() < deadline) {
      received.push(...(await receiveAll(sqs, cfg.SLUICE_QUEUE_NAME, { waitMs: 500, deleteThem: true })));
      manifests = received.map((m) => decodeManifest(m.body));
      if (manifests.some((m) => m.eventCount === liveIds.length) && segmentsLeft().length === 0) break;
    }
    sqs.destroy();
    expect(segmentsLeft()).toEqual([]);

    const { keys, byId } = await archive(cfg);
    expect(new Set(manifests.map((m) => m.key))).toEqual(new Set(keys));
    const expected = [...segA.goodIds, ...segB.goodIds, ...liveIds];
    expect(expected.filter((id) => byId.get(id)?.n !== 1)).toEqual([]);
    expect(byId.size).toBe(expected.length); // nothing of segment C, no poison line
    expect(byId.get('a-1')?.p).toBe('app');
    expect(byId.get('a-2')?.p).toBe('mobile');
    // Same deterministic keys as a clean segment: <node>-<segment id>, one per event-time hour.
    expect(keys.filter((k) => k.endsWith(`${cfg.SLUICE_NODE_ID}-${segA.id}.parquet`))).toHaveLength(2);

    const qa = await records(cfg, segmentQuarantineKey(cfg.SLUICE_NODE_ID, segA.id));
    expect(qa.map((x) => [x.lineNo, x.reason, x.line])).toEqual([
      [4, 'malformed_unicode', POISON.surrogate],
      [8, 'invalid_json', POISON.invalidJson],
      [12, 'not_an_event_line', POISON.wrongTypes],
      [16, 'invalid_json', POISON.truncated],
    ]);
    expect(qa[0]).toMatchObject({ v: 1, kind: 'segment', node: cfg.SLUICE_NODE_ID, segment: segA.id, detail: expect.stringMatching(/dims\.k.*surrogate/) });
    expect(qa[2]!.detail).toMatch(/timestamp \(ts\) must be epoch milliseconds/);
    const qb = await records(cfg, segmentQuarantineKey(cfg.SLUICE_NODE_ID, segB.id));
    expect(qb.map((x) => x.reason)).toEqual(['invalid_json', 'malformed_unicode']);
    // Segment C: the engine refused even its good lines, so every line is quarantined, none silently dropped.
    const qc = await records(cfg, segmentQuarantineKey(cfg.SLUICE_NODE_ID, segC.id));
    expect(qc).toHaveLength(segC.goodIds.length + 1);
    expect(new Set(qc.map((x) => x.reason))).toEqual(new Set(['engine_rejected']));
    expect(qc[0]!.detail).toMatch(/Invalid Input Error/);

    expect(await metricValue(ingest.url, 'sluice_ingest_quarantined_events_total', 'reason="malformed_unicode"')).toBe(2);
    expect(await metricValue(ingest.url, 'sluice_ingest_quarantined_events_total', 'reason="invalid_json"')).toBe(3);
    expect(await metricValue(ingest.url, 'sluice_ingest_quarantined_events_total', 'reason="engine_rejected"')).toBe(qc.length);
  });

  it('replays a segment after a crash before its deletion without a second copy', async () => {
    const before = await archive(cfg);
    const qBefore = await listKeys(createS3(cfg), cfg.SLUICE_RAW_BUCKET, 'quarantine/');
    const file = path.join(walDir, `${segA.id}.ndjson`);
    writeFileSync(file, segA.text);
    const again = await ingest.delivery.deliver({ id: segA.id, path: file, events: 20, bytes: segA.text.length });
    expect(existsSync(file)).toBe(false);
    expect(again.every((m) => before.keys.includes(m.key))).toBe(true);
    const after = await archive(cfg);
    expect(after.keys.sort()).toEqual(before.keys.sort());
    expect([...after.byId.values()].filter((v) => v.n !== 1)).toEqual([]);
    expect((await listKeys(createS3(cfg), cfg.SLUICE_RAW_BUCKET, 'quarantine/')).sort()).toEqual(qBefore.sort());
    await receiveAll(createSqs(cfg), cfg.SLUICE_QUEUE_NAME, { waitMs: 1_000, deleteThem: true }); // the re-sent manifests
  });

  it('lists quarantine objects and releases fixed lines exactly once', async () => {
    const idA = `segments/${cfg.SLUICE_NODE_ID}/${segA.id}`;
    const keyA = segmentQuarantineKey(cfg.SLUICE_NODE_ID, segA.id);
    const rows = await quarantineList(cfg);
    expect(rows.map((x) => [x.id, x.kind, x.events, x.firstReason])).toEqual(
      expect.arrayContaining([
        [idA, 'segment', 4, 'malformed_unicode'],
        [`segments/${cfg.SLUICE_NODE_ID}/${segB.id}`, 'segment', 2, 'invalid_json'],
      ]),
    );

    // Unfixed, every line still fails the contract: nothing is released.
    const none = await quarantineRelease(cfg, idA);
    expect(none).toMatchObject({ released: 0, manifests: [] });
    expect(none.remaining.map((x) => x.lineNo)).toEqual([4, 8, 12, 16]);

    // The operator fixes two lines in the output of `show` (the other two are left as they are).
    const stored = await records(cfg, keyA);
    const originalObject = stored.map(encodeQuarantineRecord).join('');
    const fixFile = path.join(cfg.SLUICE_DATA_DIR, 'fixed.ndjson');
    writeFileSync(
      fixFile,
      [
        { ...stored[0]!, line: stored[0]!.line.replace('\\ud800', 'fixed') },
        { ...stored[2]!, line: stored[2]!.line.replace('"yesterday"', String(now)).replace('"x"', '3') },
      ]
        .map(encodeQuarantineRecord)
        .join(''),
    );
    const sqs = createSqs(cfg);
    const eventsBefore = (await archive(cfg)).keys;
    const first = await quarantineRelease(cfg, idA, { file: fixFile });
    expect(first).toMatchObject({ released: 2, deleted: false });
    expect(first.remaining.map((x) => [x.lineNo, x.reason])).toEqual([
      [8, 'invalid_json'],
      [16, 'invalid_json'],
    ]);
    const sent = (await receiveAll(sqs, cfg.SLUICE_QUEUE_NAME, { waitMs: 1_500, deleteThem: true })).map((m) => decodeManifest(m.body));
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ eventCount: 2, key: first.manifests[0]!.key, producer: `q-${cfg.SLUICE_NODE_ID}` });
    expect(sent[0]!.key).toMatch(RAW_EVENTS_KEY_PATTERN);
    expect(parseRawEventsKey(sent[0]!.key)?.node).toBe(`q-${cfg.SLUICE_NODE_ID}`);
    const released = await archive(cfg);
    expect(released.byId.get('p-sur')).toEqual({ n: 1, p: 'web', it: now });
    expect(released.byId.get('p-type')).toEqual({ n: 1, p: 'app', it: now });
    expect((await records(cfg, keyA)).map((x) => x.lineNo)).toEqual([8, 16]);

    // Released again with the same file: nothing new anywhere.
    const second = await quarantineRelease(cfg, idA, { file: fixFile });
    expect(second).toMatchObject({ released: 0, manifests: [], notHeld: [4, 12] });
    expect(await receiveAll(sqs, cfg.SLUICE_QUEUE_NAME, { waitMs: 1_000 })).toEqual([]);

    // A release that crashed before rewriting the quarantine object runs again under the same key.
    const s3 = createS3(cfg);
    await s3.send(new PutObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: keyA, Body: originalObject }));
    const replay = await quarantineRelease(cfg, idA, { file: fixFile });
    expect(replay.manifests.map((m) => m.key)).toEqual(first.manifests.map((m) => m.key));
    const after = await archive(cfg);
    expect(after.keys.sort()).toEqual([...eventsBefore, first.manifests[0]!.key].sort());
    expect([...after.byId.values()].filter((v) => v.n !== 1)).toEqual([]);
    s3.destroy();
    sqs.destroy();
  });

  it('serves list and show through the sluice command', async () => {
    const run = promisify(execFile);
    const env = { ...process.env, ...cfg.env };
    const cli = path.join(PROJECT_ROOT, 'node_modules', '.bin', 'tsx');
    const list = await run(cli, ['cli/sluice.ts', 'quarantine', 'list'], { cwd: PROJECT_ROOT, env });
    expect(list.stdout).toMatch(new RegExp(`segments/${cfg.SLUICE_NODE_ID}/${segB.id}\\s+segment\\s+2\\s+invalid_json`));
    const show = await run(cli, ['cli/sluice.ts', 'quarantine', 'show', `segments/${cfg.SLUICE_NODE_ID}/${segB.id}`], { cwd: PROJECT_ROOT, env });
    expect(
      show.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).line),
    ).toEqual([POISON.truncated, POISON.surrogate]);
  }, 30_000);
});
