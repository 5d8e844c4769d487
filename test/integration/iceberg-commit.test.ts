// The Iceberg table over the archive (workers/iceberg/), against the real S3 emulator and Redis, read back by an
// independent reader (icebird, through version-hint.text) and compared with the archive as DuckDB reads it: every
// durable batch registered once, compaction swapping raw batches for its day file, a crash after every commit step,
// two committers at once, a committer racing a compaction, and a lost commit pointer — each ending with every event
// of the archive in the table exactly once.
import { PutObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config.js';
import { createS3 } from '../../shared/clients/aws.js';
import { createRedis } from '../../shared/clients/redis.js';
import { DAY_MS } from '../../shared/contracts/cold-layout.js';
import { commitPointerKey, versionCopyKey } from '../../shared/contracts/iceberg-table.js';
import { RAW_OBJECT_METADATA, partitionOf, rawEventsKey } from '../../shared/contracts/parquet-schema.js';
import type { Event } from '../../shared/contracts/event.js';
import { createLogger } from '../../shared/logger.js';
import { queryParquet } from '../../shared/parquet.js';
import { runCompaction, type CompactionStep } from '../../workers/cold/compaction.js';
import { decodeAvroFile } from '../../workers/iceberg/avro-files.js';
import { openArchiveTable, runCommitJob } from '../../workers/iceberg/commit-job.js';
import type { CommitStep } from '../../workers/iceberg/iceberg-table.js';
import { batchKeyOf } from '../../workers/point-offset.js';
import { startIcebergSchedule } from '../../workers/iceberg/schedule.js';
import { nodeEntry } from '../../localstack/services.js';
import { spawnSync } from 'node:child_process';
import { testConfig } from '../support/config.js';
import { randomEvents, waitUntil } from '../support/batches.js';
import { TEST_ENDPOINTS } from '../support/endpoints.js';
import { archiveBatches, archiveRows, routeS3ToLocal, tableRows, tableView } from '../support/iceberg.js';

const log = createLogger('iceberg-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const OLD_DAY = Math.floor(Date.now() / DAY_MS) * DAY_MS - 3 * DAY_MS; // older than SLUICE_COMPACT_AFTER (2d)
const OLD_DT = new Date(OLD_DAY).toISOString().slice(0, 10);
const DT = '2026-01-10';
const START = Date.parse(`${DT}T08:00:00Z`);

let restore: () => void;
beforeAll(() => {
  restore = routeS3ToLocal(TEST_ENDPOINTS.awsEndpoint);
});
afterAll(() => restore());

/** A fresh pipeline (own buckets, Redis prefix) where every batch is durable at once unless told otherwise. */
const fresh = (overrides: Record<string, string> = {}) => testConfig({ SLUICE_RECONCILE_GRACE: '0s', ...overrides });

async function commitJob(cfg: Config, onStep?: (step: CommitStep) => void | Promise<void>) {
  const t = openArchiveTable(cfg, log, { onStep });
  try {
    return await runCommitJob(t.deps);
  } finally {
    t.close();
  }
}

/** The table equals the archive: the same events (time, entity, value), each once, and no data file twice. */
async function expectTableIsArchive(cfg: Config, days: readonly string[], events: readonly Event[]): Promise<void> {
  const view = await tableView(cfg);
  expect(new Set(view.files).size, 'a data file committed twice').toBe(view.files.length);
  const [table, archive] = await Promise.all([tableRows(cfg), archiveRows(cfg, days)]);
  expect(table.size).toBe(events.length);
  expect(table).toEqual(archive);
  for (const e of events) expect(table.get(e.eventId), e.eventId).toEqual([e.timestamp, e.entityId, e.value]);
}

describe('the Iceberg table over the archive', () => {
  it('the local S3 emulator ignores conditional writes, so the commit pointer is a compare-and-swap in Redis', async () => {
    const cfg = await fresh();
    const s3 = createS3(cfg);
    try {
      const put = (body: string, cond: { IfNoneMatch?: string; IfMatch?: string }) =>
        s3.send(new PutObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: 'probe', Body: body, ...cond }));
      await put('first', {});
      // AWS S3 and MinIO answer 412 Precondition Failed to both; s3rver 3.7 overwrites.
      await put('second', { IfNoneMatch: '*' });
      await put('third', { IfMatch: '"not-the-etag"' });
      const r = await s3.send(new GetObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: 'probe' }));
      expect(await r.Body!.transformToString()).toBe('third');
    } finally {
      s3.destroy();
    }
  });

  it('registers every durable batch once (spec-conformant v2 metadata, Avro files with field ids); a rerun commits nothing', async () => {
    const cfg = await fresh();
    const events = randomEvents(900, { start: START, minutes: 150, entities: 7 });
    const keys = await archiveBatches(cfg, events);
    expect(keys).toHaveLength(3);
    const s = await commitJob(cfg);
    expect(s).toMatchObject({ appended: 3, compactions: 0, waiting: 0, problems: [], version: 2 });
    await expectTableIsArchive(cfg, [DT], events);

    const view = await tableView(cfg);
    const m = view.metadata as unknown as Record<string, unknown> & { properties: Record<string, string>; snapshots: { summary: Record<string, string> }[] };
    expect(m).toMatchObject({ 'format-version': 2, location: `s3://${cfg.SLUICE_RAW_BUCKET}/iceberg/events`, 'default-spec-id': 0, 'last-sequence-number': 1 });
    expect(m['partition-specs']).toEqual([
      {
        'spec-id': 0,
        fields: [
          { name: 'event_time_day', transform: 'day', 'source-id': 4, 'field-id': 1000 },
          { name: 'event_time_hour', transform: 'hour', 'source-id': 4, 'field-id': 1001 },
        ],
      },
      { 'spec-id': 1, fields: [{ name: 'event_time_day', transform: 'day', 'source-id': 4, 'field-id': 1000 }] },
    ]);
    const mapping = JSON.parse(m.properties['schema.name-mapping.default']!) as { 'field-id': number; names: string[] }[];
    expect(mapping.map((f) => `${f['field-id']}:${f.names[0]}`)).toEqual([
      '1:event_id',
      '2:entity_id',
      '3:event_type',
      '4:event_time',
      '5:value',
      '6:dims',
      '7:ingest_time',
      '8:producer',
      '9:schema_version',
      '10:session_id',
    ]);
    expect((m.schemas as { fields: { name: string; type: unknown }[] }[])[0]!.fields.find((f) => f.name === 'event_time')!.type).toBe('timestamptz');
    expect(m.snapshots[0]!.summary).toMatchObject({ operation: 'append', 'added-data-files': '3', 'added-records': '900', 'total-records': '900' });
    // What the table holds is its manifests: no summary lists batch keys (expiring a snapshot loses no record).
    expect(Object.keys(m.snapshots[0]!.summary).filter((k) => k.startsWith('sluice.'))).toEqual([]);
    expect([...view.files].sort()).toEqual(keys.map((k) => `s3://${cfg.SLUICE_RAW_BUCKET}/${k}`).sort());

    // Readers resolve manifest fields by id: every field of the Avro schemas carries one, and the header the table spec's keys.
    const s3 = createS3(cfg);
    try {
      const snap = (view.metadata.snapshots ?? [])[0]!;
      const listKey = snap['manifest-list'].replace(`s3://${cfg.SLUICE_RAW_BUCKET}/`, '');
      const get = async (key: string) =>
        Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: key }))).Body!.transformToByteArray());
      const list = await decodeAvroFile<{ manifest_path: string; sequence_number: number }>(await get(listKey), listKey);
      expect(list.metadata).toMatchObject({ 'format-version': '2', 'sequence-number': '1', 'snapshot-id': String(snap['snapshot-id']) });
      const fieldIds = (schema: { fields: { 'field-id'?: number; type: unknown }[] }): (number | undefined)[] =>
        schema.fields.flatMap((f) => [f['field-id'], ...(typeof f.type === 'object' && f.type && 'fields' in f.type ? fieldIds(f.type as never) : [])]);
      expect(fieldIds(JSON.parse(list.metadata['avro.schema']!))).not.toContain(undefined);
      const manifestKey = list.records[0]!.manifest_path.replace(`s3://${cfg.SLUICE_RAW_BUCKET}/`, '');
      const manifest = await decodeAvroFile(await get(manifestKey), manifestKey);
      expect(manifest.metadata).toMatchObject({ 'format-version': '2', content: 'data', 'partition-spec-id': '0', 'schema-id': '0' });
      expect(JSON.parse(manifest.metadata['partition-spec']!)).toHaveLength(2);
      expect(fieldIds(JSON.parse(manifest.metadata['avro.schema']!))).toEqual(expect.arrayContaining([0, 1, 2, 3, 4, 100, 102, 103, 104, 1000, 1001]));
    } finally {
      s3.destroy();
    }

    expect(await commitJob(cfg)).toMatchObject({ appended: 0, version: 2 });
    expect((await tableView(cfg)).version).toBe(2);
  });

  it('a batch waits until it is delivered (ledger) or older than the grace; objects ingest did not write are reported, not registered', async () => {
    const cfg = await fresh({ SLUICE_RECONCILE_GRACE: '1h' });
    const events = randomEvents(200, { start: START, minutes: 30, entities: 3 });
    const [key] = await archiveBatches(cfg, events);
    const s3 = createS3(cfg);
    const stray = rawEventsKey(partitionOf(START), 'other', 'abc123');
    await s3.send(new PutObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: stray, Body: 'not from ingest' }));
    s3.destroy();
    const first = await commitJob(cfg);
    expect(first).toMatchObject({ appended: 0, waiting: 1 });
    expect(first.problems).toEqual([
      `s3://${cfg.SLUICE_RAW_BUCKET}/${stray}: no ${RAW_OBJECT_METADATA.eventCount} metadata (not written by ingest); not registered`,
    ]);

    const t = openArchiveTable(cfg, log);
    try {
      await t.deps.ledger.record(batchKeyOf({ bucket: cfg.SLUICE_RAW_BUCKET, key: key! }));
      expect(await runCommitJob(t.deps)).toMatchObject({ appended: 1, waiting: 0 });
      // Written long enough ago: durable without the ledger.
      const [late] = await archiveBatches(cfg, randomEvents(10, { start: START, minutes: 1, entities: 1 }));
      expect(await runCommitJob(t.deps, { nowMs: Date.now() + 2 * 3_600_000 })).toMatchObject({ appended: 1 });
      expect((await tableView(cfg)).files).toContain(`s3://${cfg.SLUICE_RAW_BUCKET}/${late}`);
    } finally {
      t.close();
    }
  });

  it('compaction swaps the raw batches of its day for the compacted file in one replace snapshot, before deleting them', async () => {
    const cfg = await fresh();
    const events = randomEvents(1_000, { start: OLD_DAY + 3_600_000, minutes: 240, entities: 9 });
    await archiveBatches(cfg, events);
    expect(await commitJob(cfg)).toMatchObject({ appended: 4 });
    const [day] = await runCompaction(cfg, { log, days: [OLD_DT] });
    expect(day!.inputs).toBe(4);
    const view = await tableView(cfg);
    expect(view.operations).toEqual(['append', 'replace']);
    expect(view.files).toEqual([`s3://${cfg.SLUICE_COLD_BUCKET}/events/dt=${OLD_DT}/compacted-${day!.id}.parquet`]);
    const replace = (view.metadata.snapshots ?? [])[1]!.summary;
    expect(replace).toMatchObject({ 'deleted-data-files': '4', 'added-data-files': '1', 'total-records': '1000', 'sluice.compaction-id': day!.id });
    await expectTableIsArchive(cfg, [OLD_DT], events);
    expect(await commitJob(cfg)).toMatchObject({ appended: 0, compactions: 0 });

    // The replace snapshot lists the removed batches as DELETED; the next snapshot drops that manifest (no live file).
    const later = randomEvents(50, { start: START, minutes: 5, entities: 2, idPrefix: 'later' });
    await archiveBatches(cfg, later);
    expect(await commitJob(cfg)).toMatchObject({ appended: 1 });
    const s3 = createS3(cfg);
    try {
      const listOf = async (snapshot: { 'manifest-list': string }) => {
        const key = snapshot['manifest-list'].replace(`s3://${cfg.SLUICE_RAW_BUCKET}/`, '');
        const body = await (await s3.send(new GetObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: key }))).Body!.transformToByteArray();
        return (await decodeAvroFile<{ added_files_count: number; existing_files_count: number; deleted_files_count: number }>(Buffer.from(body), key)).records;
      };
      const snaps = (await tableView(cfg)).metadata.snapshots ?? [];
      expect((await listOf(snaps[1]!)).map((m) => [m.added_files_count, m.existing_files_count, m.deleted_files_count])).toEqual([
        [0, 0, 4],
        [1, 0, 0],
      ]);
      for (const m of await listOf(snaps[2]!)) expect(m.added_files_count + m.existing_files_count).toBeGreaterThan(0);
    } finally {
      s3.destroy();
    }
    await expectTableIsArchive(cfg, [OLD_DT, DT], [...events, ...later]);
  });

  it('compaction of a day the table never held commits an overwrite; the commit job then has nothing to add', async () => {
    const cfg = await fresh();
    const events = randomEvents(300, { start: OLD_DAY, minutes: 120, entities: 4 });
    await archiveBatches(cfg, events);
    await runCompaction(cfg, { log, days: [OLD_DT] });
    expect((await tableView(cfg)).operations).toEqual(['overwrite']);
    expect(await commitJob(cfg)).toMatchObject({ appended: 0, compactions: 0 });
    await expectTableIsArchive(cfg, [OLD_DT], events);
  });

  it.each<CommitStep>(['manifests-written', 'manifest-list-written', 'metadata-written', 'pointer-swapped', 'published'])(
    'a commit job killed after %s loses and duplicates nothing once it runs again',
    async (step) => {
      const cfg = await fresh();
      const events = randomEvents(400, { start: START, minutes: 120, entities: 5 });
      await archiveBatches(cfg, events);
      await expect(
        commitJob(cfg, (s) => {
          if (s === step) throw new Error(`killed after ${s}`);
        }),
      ).rejects.toThrow(`killed after ${step}`);
      const again = await commitJob(cfg);
      expect(again.appended).toBe(step === 'pointer-swapped' || step === 'published' ? 0 : 2);
      expect(again.version).toBe(2);
      await expectTableIsArchive(cfg, [DT], events);
      expect((await tableView(cfg)).version).toBe(2); // published, also after a crash before publishing
    },
  );

  it.each<CompactionStep>(['manifest-written', 'table-committed'])(
    'compaction killed after %s: the rerun leaves the table equal to the archive',
    async (step) => {
      const cfg = await fresh();
      const events = randomEvents(500, { start: OLD_DAY, minutes: 180, entities: 5 });
      await archiveBatches(cfg, events);
      await commitJob(cfg);
      await expect(
        runCompaction(cfg, {
          log,
          days: [OLD_DT],
          onStep: (s) => {
            if (s === step) throw new Error(`killed after ${s}`);
          },
        }),
      ).rejects.toThrow(`killed after ${step}`);
      await expectTableIsArchive(cfg, [OLD_DT], events); // the raw batches still exist: readable either way
      await runCompaction(cfg, { log, days: [OLD_DT] });
      expect((await tableView(cfg)).operations).toEqual(['append', 'replace']);
      await expectTableIsArchive(cfg, [OLD_DT], events);
    },
  );

  it('two committers at once: the one whose swap loses rebuilds on the winner, and every batch is in the table once', async () => {
    const cfg = await fresh();
    const first = randomEvents(300, { start: START, minutes: 60, entities: 4, idPrefix: 'a' });
    await archiveBatches(cfg, first);
    // A plans on version 1 and stops before its swap; B commits meanwhile (and a second set of batches arrives).
    let release!: () => void;
    const paused = new Promise<void>((r) => {
      release = r;
    });
    let reachedSwap!: () => void;
    const atSwap = new Promise<void>((r) => {
      reachedSwap = r;
    });
    let stops = 0;
    const a = commitJob(cfg, async (s) => {
      if (s === 'metadata-written' && stops++ === 0) {
        reachedSwap();
        await paused;
      }
    });
    // A failing before its swap would leave atSwap pending forever: its error ends the test instead.
    await Promise.race([atSwap, a.then(() => Promise.reject(new Error('committer A finished without reaching its swap')))]);
    const second = randomEvents(200, { start: START + 7_200_000, minutes: 30, entities: 4, idPrefix: 'b' });
    await archiveBatches(cfg, second);
    const b = await commitJob(cfg);
    expect(b.appended).toBe(2); // B added A's batch and the new one
    release();
    const ra = await a;
    expect(ra.appended).toBe(0); // rebuilt on B's version: nothing left
    await expectTableIsArchive(cfg, [DT], [...first, ...second]);

    // And unscripted: three jobs at once over new batches.
    const third = randomEvents(300, { start: START + 10_800_000, minutes: 90, entities: 4, idPrefix: 'c' });
    await archiveBatches(cfg, third);
    const runs = await Promise.all([commitJob(cfg), commitJob(cfg), commitJob(cfg)]);
    expect(runs.reduce((n, r) => n + r.appended, 0)).toBe(2);
    await expectTableIsArchive(cfg, [DT], [...first, ...second, ...third]);
  });

  it('a committer racing a compaction of the same day never adds the batches the compaction replaced', async () => {
    const cfg = await fresh();
    const events = randomEvents(400, { start: OLD_DAY, minutes: 120, entities: 4 });
    await archiveBatches(cfg, events);
    let release!: () => void;
    const paused = new Promise<void>((r) => {
      release = r;
    });
    let planned!: () => void;
    const atPlan = new Promise<void>((r) => {
      planned = r;
    });
    let stops = 0;
    const job = commitJob(cfg, async (s) => {
      if (s === 'manifests-written' && stops++ === 0) {
        planned();
        await paused;
      }
    });
    // the job has planned to append the two raw batches of the day (or failed before: its error ends the test)
    await Promise.race([atPlan, job.then(() => Promise.reject(new Error('the commit job finished without planning')))]);
    await runCompaction(cfg, { log, days: [OLD_DT] }); // commits the day file, deletes the raw batches
    release();
    expect((await job).appended).toBe(0);
    expect((await tableView(cfg)).operations).toEqual(['overwrite']);
    await expectTableIsArchive(cfg, [OLD_DT], events);
  });

  it('a lost commit pointer (emptied Redis) is rebuilt from the published metadata; commits continue from there', async () => {
    const cfg = await fresh();
    const events = randomEvents(200, { start: START, minutes: 30, entities: 2, idPrefix: 'p' });
    await archiveBatches(cfg, events);
    await commitJob(cfg);
    const redis = createRedis(cfg);
    try {
      await redis.del(commitPointerKey(cfg.SLUICE_REDIS_PREFIX));
      const more = randomEvents(100, { start: START + 3_600_000, minutes: 30, entities: 2, idPrefix: 'q' });
      await archiveBatches(cfg, more);
      expect(await commitJob(cfg)).toMatchObject({ appended: 1, version: 3 });
      expect(await redis.hget(commitPointerKey(cfg.SLUICE_REDIS_PREFIX), 'version')).toBe('3');
      await expectTableIsArchive(cfg, [DT], [...events, ...more]);
    } finally {
      redis.disconnect();
    }
  });

  it('registers schema v1 files as they are: their timestamps read as the same instants', async () => {
    const cfg = await fresh();
    const events = randomEvents(50, { start: START, minutes: 10, entities: 2, idPrefix: 'v1' });
    const file = `${cfg.SLUICE_DATA_DIR}/v1.parquet`;
    const values = events.map((e) => `('${e.eventId}', '${e.entityId}', '${e.eventType}', ${e.timestamp}, ${e.value})`).join(', ');
    await queryParquet(`COPY (SELECT id AS event_id, ent AS entity_id, typ AS event_type, epoch_ms(ts)::TIMESTAMP_MS AS event_time, v::DOUBLE AS value,
        NULL::MAP(VARCHAR, VARCHAR) AS dims, epoch_ms(ts)::TIMESTAMP_MS AS ingest_time, 'p' AS producer, 1::INTEGER AS schema_version
        FROM (VALUES ${values}) t(id, ent, typ, ts, v) ORDER BY ent, ts) TO '${file}' (FORMAT parquet)`);
    const s3 = createS3(cfg);
    const { readFileSync } = await import('node:fs');
    await s3.send(
      new PutObjectCommand({
        Bucket: cfg.SLUICE_RAW_BUCKET,
        Key: rawEventsKey(partitionOf(START), 'old', 'v1batch'),
        Body: readFileSync(file),
        Metadata: { [RAW_OBJECT_METADATA.sha256]: '0'.repeat(64), [RAW_OBJECT_METADATA.eventCount]: '50', [RAW_OBJECT_METADATA.schemaVersion]: '1' },
      }),
    );
    s3.destroy();
    expect(await commitJob(cfg)).toMatchObject({ appended: 1 });
    await expectTableIsArchive(cfg, [DT], events);
    expect((await tableView(cfg)).metadata).toBeDefined();
    expect(versionCopyKey(2)).toBe('iceberg/events/metadata/v2.metadata.json');
  });

  it('sluice start commits on a schedule: new batches appear in the table without a manual run; a failed run is retried', async () => {
    const cfg = await fresh();
    const events = randomEvents(100, { start: START, minutes: 20, entities: 2, idPrefix: 's1' });
    await archiveBatches(cfg, events);
    const redis = createRedis(cfg);
    const t = openArchiveTable(cfg, log, { redis });
    const schedule = startIcebergSchedule(t.deps, { SLUICE_ICEBERG_COMMIT_INTERVAL: 300 }, log);
    try {
      await waitUntil('the first scheduled commit', async () => (await t.deps.table.current())?.version === 2);
      // A corrupt pointer makes runs fail; once it is repaired the schedule catches up by itself.
      await redis.hset(commitPointerKey(cfg.SLUICE_REDIS_PREFIX), 'version', 'garbage');
      const more = randomEvents(80, { start: START + 3_600_000, minutes: 20, entities: 2, idPrefix: 's2' });
      await archiveBatches(cfg, more);
      expect(await schedule.runOnce()).toBeUndefined();
      await redis.del(commitPointerKey(cfg.SLUICE_REDIS_PREFIX));
      await waitUntil('the scheduled commit of the new batch', async () => (await t.deps.table.current())?.version === 3);
      await expectTableIsArchive(cfg, [DT], [...events, ...more]);
    } finally {
      await schedule.stop();
      t.close();
      redis.disconnect();
    }
  });

  it('sluice iceberg commit: prints what it committed; a bad --day is refused with the reason', async () => {
    const cfg = await fresh();
    await archiveBatches(cfg, randomEvents(60, { start: START, minutes: 10, entities: 2 }));
    const [cmd, ...args] = nodeEntry('cli/sluice.ts');
    const run = (...extra: string[]) => spawnSync(cmd!, [...args, 'iceberg', 'commit', ...extra], { env: { ...process.env, ...cfg.env }, encoding: 'utf8' });
    const ok = run();
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^iceberg sluice\.events at version 2: 1 day\(s\) looked at, 0 compaction\(s\) and 1 batch\(es\) committed/);
    const bad = run('--day', '2026-13-45');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--day must be a date like 2026-11-24, got "2026-13-45"');
  });
});
