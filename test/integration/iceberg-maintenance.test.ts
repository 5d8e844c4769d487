// Maintenance of the Iceberg tables (workers/iceberg/maintenance.ts) against the real S3 emulator and Redis, read
// back by icebird and compared with the archive as DuckDB reads it: snapshot expiry keeps at least the minimum and
// deletes only what expired snapshots alone used; nothing is committed twice after everything expirable expired;
// old metadata versions go and a lost pointer is still rebuilt; orphans go once older than the grace, never
// referenced files, data files or a commit in flight; a crash at every step of an expiry leaves a readable table.
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../shared/config.js';
import { createS3 } from '../../shared/clients/aws.js';
import { createRedis } from '../../shared/clients/redis.js';
import { DAY_MS, HOUR_MS } from '../../shared/contracts/cold-layout.js';
import { commitPointerKey, metadataFileVersion, parseS3Uri } from '../../shared/contracts/iceberg-table.js';
import type { Event } from '../../shared/contracts/event.js';
import { createLogger } from '../../shared/logger.js';
import { runCompaction } from '../../workers/cold/compaction.js';
import { resolveDay } from '../../workers/cold/archive.js';
import { appendBatches, commitCompaction } from '../../workers/iceberg/archive-commits.js';
import { decodeAvroFile } from '../../workers/iceberg/avro-files.js';
import { openArchiveTable, runCommitJob } from '../../workers/iceberg/commit-job.js';
import type { CommitStep } from '../../workers/iceberg/iceberg-table.js';
import { maintainTable, type MaintenanceSettings } from '../../workers/iceberg/maintenance.js';
import { newTableMetadata, planExpiry, withSnapshot, type TableMetadata } from '../../workers/iceberg/table-metadata.js';
import { eventsTable } from '../../workers/iceberg/table-schema.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { nodeEntry } from '../../localstack/services.js';
import { spawnSync } from 'node:child_process';
import { testConfig } from '../support/config.js';
import { randomEvents } from '../support/batches.js';
import { TEST_ENDPOINTS } from '../support/endpoints.js';
import { archiveBatches, archiveRows, metadataObjects, routeS3ToLocal, rowsOfMetadata, tableRows, tableView } from '../support/iceberg.js';

const log = createLogger('iceberg-maintenance-test', process.env.SLUICE_LOG_LEVEL ?? 'warn');
const OLD_DAY = Math.floor(Date.now() / DAY_MS) * DAY_MS - 3 * DAY_MS; // older than SLUICE_COMPACT_AFTER (2d)
const OLD_DT = new Date(OLD_DAY).toISOString().slice(0, 10);
const DT = '2026-01-10';
const START = Date.parse(`${DT}T08:00:00Z`);
/** S3 Tables' defaults, as the settings have them. */
const DEFAULTS: MaintenanceSettings = { snapshotRetentionMs: 120 * HOUR_MS, minSnapshots: 1, orphanGraceMs: 3 * DAY_MS };
const LATER = () => Date.now() + 200 * HOUR_MS; // every snapshot of the test is older than 120 h then

let restore: () => void;
beforeAll(() => {
  restore = routeS3ToLocal(TEST_ENDPOINTS.awsEndpoint);
});
afterAll(() => restore());

const fresh = () => testConfig({ SLUICE_RECONCILE_GRACE: '0s' });

/** Runs `fn` with the tables of `cfg` (optionally with a fault hook or a shifted commit clock). */
async function withTables<T>(
  cfg: Config,
  fn: (t: ReturnType<typeof openArchiveTable>['deps']) => Promise<T>,
  opts: { onStep?: (s: CommitStep) => void | Promise<void>; now?: () => number } = {},
): Promise<T> {
  const t = openArchiveTable(cfg, log, opts);
  try {
    return await fn(t.deps);
  } finally {
    t.close();
  }
}

const commit = (cfg: Config, opts: { now?: () => number } = {}) => withTables(cfg, (d) => runCommitJob(d, { maintain: false }), opts);
const maintain = (cfg: Config, s: MaintenanceSettings, o: { nowMs?: number } = {}) => withTables(cfg, (d) => maintainTable(d.table, s, o));

/** The table equals the archive — through version-hint.text and through the commit pointer — each event once. */
async function expectReadable(cfg: Config, days: readonly string[], events: readonly Event[]): Promise<void> {
  const view = await tableView(cfg);
  expect(new Set(view.files).size, 'a data file committed twice').toBe(view.files.length);
  const archive = await archiveRows(cfg, days);
  expect(archive.size).toBe(events.length);
  expect(await tableRows(cfg)).toEqual(archive);
  const current = await withTables(cfg, async (d) => (await d.table.current())!);
  expect(await rowsOfMetadata(current.metadata as never)).toEqual(archive);
}

/** Keys of the manifest list of each snapshot of the current version and of the manifests each lists. */
async function snapshotFiles(cfg: Config): Promise<{ id: number; list: string; manifests: string[] }[]> {
  return withTables(cfg, async (d) => {
    const cur = (await d.table.current())!;
    return Promise.all(
      cur.metadata.snapshots.map(async (s) => ({
        id: s['snapshot-id'],
        list: parseS3Uri(s['manifest-list'])!.key,
        manifests: (await d.table.manifestsOf(s)).map((m) => parseS3Uri(m.manifest_path)!.key),
      })),
    );
  });
}

/** Four snapshots: append (old day), append (DT), replace (compaction of the old day), append (DT). */
async function fourSnapshots(cfg: Config): Promise<Event[]> {
  const old = randomEvents(300, { start: OLD_DAY + HOUR_MS, minutes: 90, entities: 4, idPrefix: 'o' });
  const a = randomEvents(200, { start: START, minutes: 50, entities: 3, idPrefix: 'a' });
  const b = randomEvents(150, { start: START + 2 * HOUR_MS, minutes: 40, entities: 3, idPrefix: 'b' });
  await archiveBatches(cfg, old);
  await commit(cfg);
  await archiveBatches(cfg, a);
  await commit(cfg);
  await runCompaction(cfg, { log, days: [OLD_DT] });
  await archiveBatches(cfg, b);
  await commit(cfg);
  expect((await tableView(cfg)).operations).toEqual(['append', 'append', 'replace', 'append']);
  return [...old, ...a, ...b];
}

describe('the expiry plan', () => {
  /** A table whose snapshots were committed at `times` (ms), in this order. */
  function tableAt(times: readonly number[]): TableMetadata {
    let m = newTableMetadata(eventsTable(), { uuid: 'u', location: 's3://b/iceberg/events', nowMs: 0 });
    const change = { operation: 'append' as const, addedFiles: 1, addedRecords: 1, addedBytes: 1, deletedFiles: 0, deletedRecords: 0, removedBytes: 0 };
    for (const [i, t] of times.entries())
      m = withSnapshot(m, `s3://b/m${i}.json`, {
        snapshotId: i + 1,
        manifestList: `s3://b/l${i}.avro`,
        change: { ...change, changedPartitions: 1, extra: {} },
        nowMs: t,
      });
    return m;
  }
  const ids = (s: { 'snapshot-id': number }[]) => s.map((x) => x['snapshot-id']);

  it('expires what is older than the retention, never the newest minSnapshots nor one older than a kept snapshot', () => {
    const m = tableAt([1_000, 2_000, 3_000, 4_000, 5_000]);
    expect(ids(planExpiry(m, { nowMs: 10_000, maxAgeMs: 6_500, minSnapshots: 1 }).expired)).toEqual([1, 2, 3]);
    expect(ids(planExpiry(m, { nowMs: 10_000, maxAgeMs: 0, minSnapshots: 1 }).kept)).toEqual([5]);
    expect(ids(planExpiry(m, { nowMs: 10_000, maxAgeMs: 0, minSnapshots: 3 }).kept)).toEqual([3, 4, 5]);
    expect(ids(planExpiry(m, { nowMs: 10_000, maxAgeMs: 60_000, minSnapshots: 1 }).expired)).toEqual([]);
    // A committer whose clock ran ahead wrote snapshot 2 "later" than 3 and 4: the kept run starts at 2.
    const skewed = tableAt([1_000, 9_000, 3_000, 4_000, 5_000]);
    expect(ids(planExpiry(skewed, { nowMs: 10_000, maxAgeMs: 2_000, minSnapshots: 1 }).expired)).toEqual([1]);
    expect(planExpiry(tableAt([]), { nowMs: 10_000, maxAgeMs: 0, minSnapshots: 1 })).toEqual({ kept: [], expired: [] });
  });

  it('reads the version from both names of a metadata file, and nothing else', () => {
    expect(metadataFileVersion('iceberg/events/metadata/00012-3f2a.metadata.json')).toBe(12);
    expect(metadataFileVersion('iceberg/events/metadata/v7.metadata.json')).toBe(7);
    expect(metadataFileVersion('iceberg/events/metadata/snap-1-1-x.avro')).toBeUndefined();
    expect(metadataFileVersion('iceberg/events/metadata/version-hint.text')).toBeUndefined();
  });
});

describe('Iceberg table maintenance', () => {
  it('expiry keeps the newest SLUICE_ICEBERG_MIN_SNAPSHOTS (the current one always) and deletes only the files expired snapshots alone used', async () => {
    const cfg = await fresh();
    const events = await fourSnapshots(cfg);
    const before = await snapshotFiles(cfg);
    const allBefore = await metadataObjects(cfg);

    // Nothing is old enough yet: no new version, nothing deleted.
    const v0 = (await tableView(cfg)).version;
    expect(await maintain(cfg, DEFAULTS)).toMatchObject({ version: v0, snapshots: 4, expiredSnapshots: 0, deletedExpired: 0, deletedOrphans: 0 });
    expect(await metadataObjects(cfg)).toEqual(allBefore);

    // 200 h later with a floor of 2: the two oldest expire.
    const two = await maintain(cfg, { ...DEFAULTS, minSnapshots: 2 }, { nowMs: LATER() });
    expect(two).toMatchObject({ version: v0 + 1, snapshots: 2, expiredSnapshots: 2 });
    const view = await tableView(cfg);
    expect(view.version).toBe(v0 + 1);
    expect(view.operations).toEqual(['replace', 'append']);
    const m = view.metadata as unknown as { 'snapshot-log': { 'snapshot-id': number }[]; properties: Record<string, string> };
    expect(m['snapshot-log'].map((e) => e['snapshot-id'])).toEqual(before.slice(2).map((s) => s.id));
    expect(m.properties).toMatchObject({
      'history.expire.max-snapshot-age-ms': String(120 * HOUR_MS),
      'history.expire.min-snapshots-to-keep': '2',
      'write.metadata.delete-after-commit.enabled': 'true',
      'write.metadata.previous-versions-max': '100',
    });
    const left = new Set(await metadataObjects(cfg));
    const keptFiles = new Set(before.slice(2).flatMap((s) => [s.list, ...s.manifests]));
    for (const s of before.slice(0, 2)) {
      expect(left.has(s.list), `manifest list of expired snapshot ${s.id}`).toBe(false);
      for (const k of s.manifests) expect(left.has(k), k).toBe(keptFiles.has(k));
    }
    for (const k of keptFiles) expect(left.has(k), k).toBe(true);
    const expiredOnly = new Set(
      before
        .slice(0, 2)
        .flatMap((s) => [s.list, ...s.manifests])
        .filter((k) => !keptFiles.has(k)),
    );
    expect(expiredOnly.size).toBe(3); // two manifest lists and the old day's first manifest, which the replace rewrote
    expect(two.deletedExpired).toBe(expiredOnly.size);
    await expectReadable(cfg, [OLD_DT, DT], events);

    // With the floor at 1 only the current snapshot is left, and the manifests are exactly the current ones.
    expect(await maintain(cfg, DEFAULTS, { nowMs: LATER() })).toMatchObject({ snapshots: 1, expiredSnapshots: 1 });
    const last = await snapshotFiles(cfg);
    expect(last).toHaveLength(1);
    expect((await metadataObjects(cfg)).filter((k) => k.endsWith('.avro')).sort()).toEqual([last[0]!.list, ...last[0]!.manifests].sort());
    await expectReadable(cfg, [OLD_DT, DT], events);
    // Never below one snapshot, however old.
    expect(await maintain(cfg, { ...DEFAULTS, snapshotRetentionMs: 0 }, { nowMs: LATER() })).toMatchObject({ snapshots: 1, expiredSnapshots: 0 });
  });

  it('after everything expirable expired, the same batches and compactions are never committed twice', async () => {
    const cfg = await fresh();
    const old = randomEvents(300, { start: OLD_DAY + HOUR_MS, minutes: 120, entities: 4, idPrefix: 'o' });
    const day = randomEvents(300, { start: START, minutes: 150, entities: 4, idPrefix: 'd' });
    const keys = [...(await archiveBatches(cfg, old)), ...(await archiveBatches(cfg, day))];
    expect(await commit(cfg)).toMatchObject({ appended: 5 });
    await maintain(cfg, DEFAULTS, { nowMs: LATER() });
    // The only snapshot left is the append: no summary, no expired snapshot says what it added.
    expect((await tableView(cfg)).metadata.snapshots).toHaveLength(1);

    await withTables(cfg, async (d) => {
      const again = await appendBatches(
        d,
        keys.map((key) => ({ key, bytes: 1, rows: 1 })),
      );
      expect(again).toMatchObject({ committed: false, added: [] });
      expect(await runCommitJob(d, { maintain: false })).toMatchObject({ appended: 0, compactions: 0 });
    });
    await expectReadable(cfg, [OLD_DT, DT], [...old, ...day]);

    // A compaction, then expiry of everything before it: its day file stays committed once.
    await runCompaction(cfg, { log, days: [OLD_DT] });
    await maintain(cfg, DEFAULTS, { nowMs: LATER() });
    expect((await tableView(cfg)).operations).toEqual(['replace']);
    await withTables(cfg, async (d) => {
      const [manifest] = (await resolveDay(d.s3, cfg.SLUICE_RAW_BUCKET, new ColdStorage(cfg), OLD_DT)).manifests;
      expect(await commitCompaction(d, manifest!)).toMatchObject({ committed: false });
      expect(
        await appendBatches(
          d,
          keys.map((key) => ({ key, bytes: 1, rows: 1 })),
        ),
      ).toMatchObject({ committed: false });
      expect(await runCommitJob(d, { maintain: false })).toMatchObject({ appended: 0, compactions: 0 });
    });
    await runCompaction(cfg, { log, days: [OLD_DT] }); // a rerun of the compaction changes nothing either
    expect((await tableView(cfg)).operations).toEqual(['replace']);
    await expectReadable(cfg, [OLD_DT, DT], [...old, ...day]);
  });

  it('metadata files of versions past write.metadata.previous-versions-max are deleted; a lost pointer is still rebuilt from S3', async () => {
    const cfg = await fresh();
    const events: Event[] = [];
    for (let i = 0; i < 5; i++) {
      const e = randomEvents(40, { start: START + i * HOUR_MS, minutes: 10, entities: 2, idPrefix: `r${i}` });
      events.push(...e);
      await archiveBatches(cfg, e);
      await commit(cfg);
    }
    const s = await maintain(cfg, { ...DEFAULTS, previousVersionsMax: 2 });
    expect(s.version).toBe(7); // 1 (created) + 5 appends + the property change
    const versions = (await metadataObjects(cfg)).filter((k) => k.endsWith('.metadata.json')).map((k) => Number(/\/v?(\d+)[-.]/.exec(k)![1]));
    expect(new Set(versions)).toEqual(new Set([5, 6, 7]));
    expect(s.deletedMetadata).toBe(2 * 4); // versions 1-4: the unique file and its v<N> copy each
    expect((await tableView(cfg)).metadata['metadata-log']).toHaveLength(2);

    // An emptied Redis and a lost version-hint.text: the newest copy is found by listing, not by counting from v1.
    const redis = createRedis(cfg);
    const s3 = createS3(cfg);
    try {
      await redis.del(commitPointerKey(cfg.SLUICE_REDIS_PREFIX));
      await s3.send(new PutObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: 'iceberg/events/metadata/version-hint.text', Body: 'garbage' }));
      const more = randomEvents(30, { start: START + 6 * HOUR_MS, minutes: 5, entities: 2, idPrefix: 'm' });
      await archiveBatches(cfg, more);
      expect(await commit(cfg)).toMatchObject({ appended: 1, version: 8 });
      await expectReadable(cfg, [DT], [...events, ...more]);
    } finally {
      redis.disconnect();
      s3.destroy();
    }
  });

  it('orphan clean-up deletes unreferenced metadata files once older than the grace, never referenced ones or data files', async () => {
    const cfg = await fresh();
    // Commits whose clock runs 10 days ahead: the files written now are 10 days older than every snapshot.
    const ahead = () => Date.now() + 10 * DAY_MS;
    const events = randomEvents(200, { start: START, minutes: 60, entities: 3 });
    const keys = await archiveBatches(cfg, events);
    const s3 = createS3(cfg);
    const strays = [
      'iceberg/events/metadata/lost-attempt-m0.avro',
      'iceberg/events/metadata/00009-lost.metadata.json',
      'iceberg/events/metadata/snap-1-1-x.avro',
    ];
    const outside = ['iceberg/events/data/not-metadata.parquet', 'iceberg/events/notes.txt'];
    try {
      for (const key of [...strays, ...outside]) await s3.send(new PutObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: key, Body: 'x' }));
      await commit(cfg, { now: ahead });
      await commit(cfg, { now: ahead }); // nothing new
      const referenced = (await metadataObjects(cfg)).filter((k) => !strays.includes(k));

      // Younger than the grace (11 days back from the oldest kept snapshot): kept.
      expect(await maintain(cfg, { ...DEFAULTS, orphanGraceMs: 11 * DAY_MS }, { nowMs: ahead() })).toMatchObject({ deletedOrphans: 0 });
      expect(await metadataObjects(cfg)).toEqual([...referenced, ...strays].sort());
      // Older than the grace: gone — and only they.
      expect(await maintain(cfg, DEFAULTS, { nowMs: ahead() })).toMatchObject({ deletedOrphans: strays.length, deletedMetadata: 0 });
      expect(await metadataObjects(cfg)).toEqual(referenced);
      for (const key of [...outside, ...keys]) await s3.send(new GetObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: key })); // still there
      await expectReadable(cfg, [DT], events);
    } finally {
      s3.destroy();
    }
  });

  it('a commit in flight keeps its unreferenced new files through a clean-up and commits a readable version', async () => {
    const cfg = await fresh();
    const first = randomEvents(100, { start: START, minutes: 30, entities: 2, idPrefix: 'f' });
    await archiveBatches(cfg, first);
    await commit(cfg);
    const second = randomEvents(100, { start: START + HOUR_MS, minutes: 30, entities: 2, idPrefix: 's' });
    await archiveBatches(cfg, second);
    let release!: () => void;
    const paused = new Promise<void>((r) => {
      release = r;
    });
    let reached!: () => void;
    const atList = new Promise<void>((r) => {
      reached = r;
    });
    const job = withTables(cfg, (d) => runCommitJob(d, { maintain: false }), {
      onStep: async (s) => {
        if (s === 'manifest-list-written') {
          reached();
          await paused;
        }
      },
    });
    await atList;
    // Four days later by the clock of the clean-up: the commit's files are young, the grace protects them.
    expect(await maintain(cfg, DEFAULTS, { nowMs: Date.now() + 4 * DAY_MS })).toMatchObject({ deletedOrphans: 0 });
    release();
    expect(await job).toMatchObject({ appended: 1 });
    await expectReadable(cfg, [DT], [...first, ...second]);
  });

  it.each(['metadata-written', 'pointer-swapped', 'published', 'some files deleted'])(
    'an expiry killed after %s leaves a readable table; a rerun and the orphan clean-up finish it',
    async (step) => {
      const cfg = await fresh();
      const events = await fourSnapshots(cfg);
      const v0 = (await tableView(cfg)).version;
      const kill = (at: string) => {
        if (at === step) throw new Error(`killed after ${at}`);
      };
      let deletes = 0;
      await expect(
        withTables(cfg, (d) => maintainTable(d.table, DEFAULTS, { nowMs: LATER(), onDelete: () => kill(++deletes === 2 ? 'some files deleted' : '') }), {
          onStep: kill,
        }),
      ).rejects.toThrow(`killed after ${step}`);
      const swapped = step !== 'metadata-written';
      expect(await withTables(cfg, async (d) => (await d.table.current())!.version)).toBe(swapped ? v0 + 1 : v0);
      await expectReadable(cfg, [OLD_DT, DT], events);

      // The rerun: expires what is left to expire (nothing, once the swap happened) and publishes.
      const rerun = await maintain(cfg, DEFAULTS, { nowMs: LATER() });
      expect(rerun).toMatchObject({ version: v0 + 1, snapshots: 1, expiredSnapshots: swapped ? 0 : 3 });
      await expectReadable(cfg, [OLD_DT, DT], events);
      // Files the killed run did not get to delete are orphans now: the clean-up deletes them after the grace.
      await maintain(cfg, { ...DEFAULTS, orphanGraceMs: 0 }, { nowMs: LATER() });
      const [only] = await snapshotFiles(cfg);
      expect((await metadataObjects(cfg)).filter((k) => k.endsWith('.avro')).sort()).toEqual([only!.list, ...only!.manifests].sort());
      await expectReadable(cfg, [OLD_DT, DT], events);
      // And commits go on.
      const more = randomEvents(50, { start: START + 5 * HOUR_MS, minutes: 10, entities: 2, idPrefix: 'm' });
      await archiveBatches(cfg, more);
      expect(await commit(cfg)).toMatchObject({ appended: 1 });
      await expectReadable(cfg, [OLD_DT, DT], [...events, ...more]);
    },
  );

  it('sluice iceberg maintain prints what it did per table; a setting out of range is refused with the reason', async () => {
    const cfg = await fresh();
    await archiveBatches(cfg, randomEvents(30, { start: START, minutes: 5, entities: 2 }));
    await commit(cfg);
    const [cmd, ...args] = nodeEntry('cli/sluice.ts');
    const run = (env: Record<string, string> = {}) =>
      spawnSync(cmd!, [...args, 'iceberg', 'maintain'], { env: { ...process.env, ...cfg.env, ...env }, encoding: 'utf8' });
    const ok = run();
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout.split('\n').filter(Boolean)).toEqual([
      'iceberg sluice.events maintained at version 2: 1 snapshot(s) kept, 0 expired; 0 file(s) of expired snapshots, 0 old metadata file(s) and 0 orphan(s) deleted',
      'iceberg sluice.rollups maintained at version 1: 0 snapshot(s) kept, 0 expired; 0 file(s) of expired snapshots, 0 old metadata file(s) and 0 orphan(s) deleted',
    ]);
    expect(ok.stderr).toContain('snapshots kept 120 h (at least 1), orphan grace 72 h');
    const bad = run({ SLUICE_ICEBERG_ORPHAN_GRACE: '5m' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('SLUICE_ICEBERG_ORPHAN_GRACE must be a duration of at least 1h like 7d or 90d, or inf (keep forever), got "5m"');
  });

  it('the commit job maintains both tables and deletes nothing they use', async () => {
    const cfg = await fresh();
    await archiveBatches(cfg, randomEvents(50, { start: START, minutes: 10, entities: 2 }));
    const s = await withTables(cfg, (d) => runCommitJob(d));
    expect(s.maintenance.map((m) => m.table)).toEqual(['sluice.events', 'sluice.rollups']);
    expect(s.maintenance[0]).toMatchObject({ version: 2, snapshots: 1, expiredSnapshots: 0 });
    // Reading the manifests back proves nothing the table uses was deleted.
    const [snap] = await snapshotFiles(cfg);
    const s3 = createS3(cfg);
    try {
      for (const key of [snap!.list, ...snap!.manifests]) {
        const body = await (await s3.send(new GetObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: key }))).Body!.transformToByteArray();
        await decodeAvroFile(Buffer.from(body), key);
      }
    } finally {
      s3.destroy();
    }
  });
});
