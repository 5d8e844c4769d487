// SIGKILL an ingest node at random moments while producers send; after restarts every acknowledged event is
// in the archive, and an event appears twice only when the producer re-sent a request that was never acked.
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { createS3, createSqs } from '../../shared/clients/aws.js';
import { decodeManifest } from '../../shared/contracts/manifest.js';
import { openEngine, queryParquet, parquetFiles } from '../../shared/parquet.js';
import { testConfig } from '../support/config.js';
import { startProcess } from '../support/processes.js';
import { downloadTo, listKeys, receiveAll } from '../support/sqs.js';

describe('ingest survives SIGKILL at any moment', () => {
  it('keeps every acknowledged event exactly once in the archive', async () => {
    const cfg = await testConfig({ SLUICE_FLUSH_MAX_EVENTS: '3000', SLUICE_FLUSH_MAX_AGE: '300ms' });
    const env = { ...cfg.env, SLUICE_NODE_ID: 'ingest-kill' };
    const acked = new Set<string>();
    const resent = new Set<string>();
    const pending: string[][] = [];
    let next = 0;
    const now = Date.now();
    const body = (ids: string[]) =>
      JSON.stringify(ids.map((id, i) => ({ eventId: id, entityId: `video-${i % 37}`, eventType: 'view', timestamp: now - (i % 7) * 60_000 })));

    for (let round = 0; round < 6; round++) {
      const node = await startProcess('ingest', env, 'ingest-kill');
      const last = round === 5;
      const stopAt = Date.now() + (last ? 0 : 300 + Math.random() * 1_200);
      const producer = async () => {
        while (last ? pending.length > 0 : Date.now() < stopAt) {
          const retry = pending.shift();
          const ids = retry ?? Array.from({ length: 250 }, () => `ev-${next++}`);
          if (retry) for (const id of ids) resent.add(id);
          try {
            const r = await fetch(`${node.url}/v1/events`, { method: 'POST', body: body(ids), headers: { 'content-type': 'application/json' } });
            if (r.status !== 202) throw new Error(`status ${r.status}`);
            for (const id of ids) acked.add(id);
          } catch {
            pending.push(ids); // never acknowledged: the producer re-sends it later with the same ids
            if (!last) return;
          }
        }
      };
      await Promise.all([producer(), producer(), producer(), producer()]);
      if (last) expect(await node.kill('SIGTERM')).toBe(0);
      else await node.kill('SIGKILL');
    }
    expect(pending).toEqual([]);
    expect(acked.size).toBeGreaterThan(1_000);

    // The archive: every object announced by a manifest, and no object without one.
    const sqs = createSqs(cfg);
    const s3 = createS3(cfg);
    const manifests = (await receiveAll(sqs, cfg.SLUICE_QUEUE_NAME, { waitMs: 3_000 })).map((m) => decodeManifest(m.body));
    const keys = await listKeys(s3, cfg.SLUICE_RAW_BUCKET, 'events/');
    expect(new Set(manifests.map((m) => m.key))).toEqual(new Set(keys));
    const dir = path.join(cfg.SLUICE_DATA_DIR, 'download');
    mkdirSync(dir, { recursive: true });
    const files: string[] = [];
    for (const k of keys) {
      const f = path.join(dir, k.replaceAll('/', '_'));
      await downloadTo(s3, cfg.SLUICE_RAW_BUCKET, k, f);
      files.push(f);
    }
    await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duck') });
    const rows = await queryParquet(`SELECT event_id, count(*)::INT AS n FROM read_parquet(${parquetFiles(files)}) GROUP BY 1`);
    const inArchive = new Map(rows.map((r) => [r.event_id as string, r.n as number]));
    const missing = [...acked].filter((id) => !inArchive.has(id));
    expect(missing).toEqual([]);
    const twice = [...inArchive].filter(([id, n]) => n > 1 && !resent.has(id));
    expect(twice).toEqual([]);
    // Manifests agree with the objects they announce. A segment replayed after a kill that came between sending its
    // manifests and deleting it announces the same objects again (same key, same checksum): workers count a batch
    // once per key, so a repeated manifest must describe exactly the same object.
    const byKey = new Map<string, (typeof manifests)[number]>();
    for (const m of manifests) {
      const first = byKey.get(m.key);
      if (first) expect({ key: m.key, count: m.eventCount, sha: m.checksum.value }).toEqual({ key: m.key, count: first.eventCount, sha: first.checksum.value });
      else byKey.set(m.key, m);
    }
    const total = [...byKey.values()].reduce((n, m) => n + m.eventCount, 0);
    expect(total).toBe([...inArchive.values()].reduce((a, b) => a + b, 0));
  });
});
