// Batches that can never be processed (missing object, corrupt bytes, unknown manifest version, checksum
// mismatch, unreadable manifest) land in the DLQ with their reason and leave the batch queue; `sluice dlq`
// lists and shows them, and redrive puts them back on the batch queue.
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createS3 } from '../../shared/clients/aws.js';
import { listDeadLetters, redriveDeadLetters, showDeadLetter } from '../../workers/dead-letters.js';
import { startWorker } from '../../workers/main.js';
import { testConfig } from '../support/config.js';
import { closedAfterEach, workerTestLog } from '../support/in-process.js';
import {
  FAST_WORKER_ENV,
  diffAggregates,
  groundTruth,
  influxAggregates,
  metricValue,
  metricValueOrZero,
  pastHour,
  queueDepth,
  randomEvents,
  sendManifests,
  uploadBatches,
  waitUntil,
} from '../support/batches.js';

const log = workerTestLog;
const running = closedAfterEach();

describe('worker dead letters', () => {
  it('dead-letters poison batches with their reason, and redrive brings them back', async () => {
    const cfg = await testConfig(FAST_WORKER_ENV);
    const start = pastHour();
    const make = () => randomEvents(500, { start, minutes: 3 });
    const [missing] = await uploadBatches(cfg, make(), { skipUpload: true });
    const [corrupt] = await uploadBatches(cfg, make(), { bytes: randomBytes(4_096) });
    const [future] = await uploadBatches(cfg, make(), { manifestVersion: '2.0' });
    const [tampered] = await uploadBatches(cfg, make(), { wrongChecksum: true });
    const poison = { batch_missing: missing!, batch_corrupt: corrupt!, manifest_version_unsupported: future!, checksum_mismatch: tampered! };
    const bodies = [...Object.values(poison).map((b) => b.body), 'not a manifest'];
    const sent = await sendManifests(cfg, bodies);

    const w = await startWorker(cfg, log, { workerId: 'worker-dlq-test' });
    running.push(w);
    await waitUntil('five dead letters', async () => (await queueDepth(cfg, cfg.SLUICE_DLQ_NAME)) === 5);
    await waitUntil('batch queue empty', async () => (await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)) === 0);
    expect(await metricValue(w.url, 'sluice_worker_batches_total', 'outcome="rejected"')).toBe(5);
    expect(await metricValue(w.url, 'sluice_worker_dead_letters_total', 'reason="checksum_mismatch"')).toBe(1);

    const listed = await listDeadLetters(cfg, { max: 100 });
    expect(listed.map((d) => d.reason).sort()).toEqual([...Object.keys(poison), 'manifest_invalid'].sort());
    expect(new Set(listed.map((d) => d.originalMessageId))).toEqual(new Set(sent));
    for (const d of listed) {
      expect(d.worker).toBe('worker-dlq-test');
      expect(d.detail).toBeTruthy();
    }
    // listing does not consume
    expect(await queueDepth(cfg, cfg.SLUICE_DLQ_NAME)).toBe(5);

    const shown = await showDeadLetter(cfg, sent[3]!);
    expect(shown).toMatchObject({ reason: 'checksum_mismatch', key: tampered!.manifest.key, originalMessageId: sent[3] });
    expect(shown!.detail).toContain(tampered!.manifest.key);
    expect(await showDeadLetter(cfg, 'no-such-id')).toBeUndefined();

    // The missing object is restored; re-driving its dead letter now delivers the batch.
    const s3 = createS3(cfg);
    await s3.send(new PutObjectCommand({ Bucket: missing!.manifest.bucket, Key: missing!.manifest.key, Body: missing!.bytes }));
    s3.destroy();
    const missingLetter = listed.find((d) => d.reason === 'batch_missing')!;
    expect(await redriveDeadLetters(cfg, { ids: [missingLetter.messageId] })).toBe(1);
    await waitUntil('re-driven batch delivered', async () => (await metricValueOrZero(w.url, 'sluice_worker_batches_total', 'outcome="delivered"')) === 1);
    expect(diffAggregates(await influxAggregates(cfg, start, start + 3_600_000), groundTruth(missing!.events))).toEqual([]);
    expect(await queueDepth(cfg, cfg.SLUICE_DLQ_NAME)).toBe(4);

    // With the worker stopped, --all moves every remaining dead letter back to the batch queue.
    await running.pop()!.close();
    expect(await redriveDeadLetters(cfg, { all: true })).toBe(4);
    expect(await queueDepth(cfg, cfg.SLUICE_DLQ_NAME)).toBe(0);
    expect(await queueDepth(cfg, cfg.SLUICE_QUEUE_NAME)).toBe(4);
  });
});
