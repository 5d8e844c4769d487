// What the Iceberg table sluice.rollups holds: the rollup files of the cold bucket (rollups/1h/dt=YYYY-MM-DD/ and
// rollups/1d/dt=YYYY-MM/part.parquet, written by workers/cold/rollup.ts), registered where they are. The rollup job
// rewrites a file in place when it recomputes its periods (late data, reruns), so a commit compares each file with
// the version the table registered — its ETag, kept in the header of the manifest listing it (`sluice.etags`) — and
// swaps a changed one for its new version (size and rows) in one snapshot: `append` for new files, `overwrite` when
// files changed, `delete` when files are gone. A manifest per resolution holds every file of it, rewritten when one
// of them changes. The rollup job commits each file right after writing it; the commit job (`sluice iceberg commit`)
// catches up with any it missed. Between the rewrite of a file and its commit, readers of that file's old version
// fail (its registered size no longer matches) rather than read wrong rows.
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../../shared/config.js';
import { createS3 } from '../../shared/clients/aws.js';
import type { ColdObject, ColdStorage } from '../../shared/clients/cold-storage.js';
import type { RedisClient } from '../../shared/clients/redis.js';
import { parseRollupKey, rollupPrefix, type RollupResolution } from '../../shared/contracts/cold-layout.js';
import { parseS3Uri } from '../../shared/contracts/iceberg-table.js';
import { errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { openEngine, queryParquet, sqlString } from '../../shared/parquet.js';
import { EntryStatus, type DataFile, type ManifestEntry, type ManifestFile } from './avro-files.js';
import { maintenanceProperties, maintenanceSettings } from './maintenance.js';
import { IcebergTable, type CommitResult, type LiveEntry, type NewManifest, type TableDeps } from './iceberg-table.js';
import { ROLLUP_SORT_ORDER, ROLLUP_SPECS, rollupPartition, rollupsTable } from './table-schema.js';

/** Manifest header key: JSON object, data file path → ETag of the version registered. */
export const ETAGS_HEADER = 'sluice.etags';

export interface RollupCommitDeps {
  /** The table sluice.rollups. */
  table: IcebergTable;
  cold: ColdStorage;
  log: Logger;
  /** Folder where a changed file is downloaded while its rows are counted. */
  tmpDir: string;
}

export interface RollupCommitResult extends CommitResult {
  /** Keys (cold bucket) registered for the first time, swapped for a new version, and removed (the file is gone). */
  added: string[];
  replaced: string[];
  removed: string[];
  /** Files not registered, with the reason (unreadable as Parquet, or rewritten while they were read: next time). */
  problems: string[];
}

const RESOLUTIONS: readonly RollupResolution[] = ['1h', '1d'];
/** Reads of a file that keeps changing under the reader before it is left for the next commit. */
const READ_ATTEMPTS = 3;

const unquote = (etag: string): string => etag.replace(/^"|"$/g, '');

/** A rollup file as it is now in the cold bucket: the version a commit registers. */
interface FileVersion {
  key: string;
  res: RollupResolution;
  startMs: number;
  etag: string;
  bytes: number;
  rows: number;
}

/** Rows of the files already counted, by key and ETag (a version never changes). */
const counted = new Map<string, number>();
const COUNTED_MAX = 4096;

/**
 * The version of `obj` to register: its rows counted from a downloaded copy, the copy checked to be the listed
 * version (same ETag before and after, same size). A reason instead when it cannot be registered now.
 */
async function readVersion(deps: RollupCommitDeps, obj: ColdObject): Promise<FileVersion | string> {
  const k = parseRollupKey(obj.key)!;
  let cur: ColdObject | undefined = obj;
  for (let attempt = 1; attempt <= READ_ATTEMPTS && cur; attempt++) {
    const etag = unquote(cur.etag);
    const memo = counted.get(`${cur.key}@${etag}`);
    if (memo !== undefined) return { key: cur.key, res: k.res, startMs: k.startMs, etag, bytes: cur.bytes, rows: memo };
    mkdirSync(deps.tmpDir, { recursive: true });
    const file = path.join(deps.tmpDir, `rollup-${randomBytes(6).toString('hex')}.parquet`);
    try {
      await deps.cold.getToFile(cur.key, file);
      const after = await deps.cold.stat(cur.key);
      if (!after || unquote(after.etag) !== etag || statSync(file).size !== cur.bytes) {
        cur = after;
        continue;
      }
      let rows: number;
      try {
        rows = Number((await queryParquet(`SELECT count(*)::BIGINT AS n FROM read_parquet(${sqlString(file)})`))[0]!.n);
      } catch (err) {
        const reason = (errorMessage(err).split('\n')[0] ?? '').replaceAll(file, 'the file').trim();
        return `s3://${deps.cold.bucket}/${cur.key} is not a readable Parquet file (${reason}); not registered`;
      }
      if (counted.size >= COUNTED_MAX) counted.delete(counted.keys().next().value!);
      counted.set(`${cur.key}@${etag}`, rows);
      return { key: cur.key, res: k.res, startMs: k.startMs, etag, bytes: cur.bytes, rows };
    } finally {
      rmSync(file, { force: true });
    }
  }
  return cur
    ? `s3://${deps.cold.bucket}/${obj.key} changed while it was read ${READ_ATTEMPTS} times; the next commit registers it`
    : `s3://${deps.cold.bucket}/${obj.key} was deleted while it was read`;
}

/** The rollup files now in the cold bucket: `keys` only, or every one. */
async function rollupObjects(cold: ColdStorage, keys: readonly string[] | undefined): Promise<Map<string, ColdObject | undefined>> {
  const out = new Map<string, ColdObject | undefined>();
  if (keys) {
    for (const key of keys) out.set(key, await cold.stat(key));
    return out;
  }
  for (const res of RESOLUTIONS) for (const o of await cold.list(rollupPrefix(res))) if (parseRollupKey(o.key)) out.set(o.key, o);
  return out;
}

/** The ETag each live entry was registered with (from its manifest's header). */
async function registeredEtags(table: IcebergTable, live: readonly LiveEntry[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const seen = new Set<string>();
  for (const { manifest } of live) {
    if (seen.has(manifest.manifest_path)) continue;
    seen.add(manifest.manifest_path);
    const raw = (await table.header(manifest))[ETAGS_HEADER];
    if (!raw) continue;
    try {
      for (const [p, e] of Object.entries(JSON.parse(raw) as Record<string, string>)) out.set(p, e);
    } catch {
      // An unreadable header: its files count as changed and are registered again.
    }
  }
  return out;
}

function dataFile(uri: string, v: FileVersion): DataFile {
  const spec = ROLLUP_SPECS[v.res];
  const values = rollupPartition(v.res, v.startMs);
  return {
    content: 0,
    file_path: uri,
    file_format: 'PARQUET',
    partition: Object.fromEntries(spec.fields.map((f) => [f.name, values[f['field-id']]!])),
    record_count: v.rows,
    file_size_in_bytes: v.bytes,
    sort_order_id: ROLLUP_SORT_ORDER['order-id'],
  };
}

/**
 * Brings sluice.rollups up to date with the rollup files (all of them, or `keys` only): registers new files, swaps
 * changed ones for their current version and removes entries of files that are gone, in one snapshot; checked
 * again on the newest version at every attempt. Resolves with committed: false when the table was up to date.
 */
export async function commitRollups(deps: RollupCommitDeps, o: { keys?: readonly string[] } = {}): Promise<RollupCommitResult> {
  for (const key of o.keys ?? [])
    if (!parseRollupKey(key)) throw new Error(`${key} is not a rollup file key (rollups/1h/dt=YYYY-MM-DD/part.parquet or rollups/1d/dt=YYYY-MM/part.parquet)`);
  await openEngine({ tempDir: path.join(deps.tmpDir, 'duckdb') });
  const uri = (key: string) => `s3://${deps.cold.bucket}/${key}`;
  let outcome: Omit<RollupCommitResult, keyof CommitResult> = { added: [], replaced: [], removed: [], problems: [] };
  const result = await deps.table.commit(`rollup files (${o.keys ? o.keys.join(', ') : 'all'})`, async ({ base, snapshotId, write }) => {
    const now = { added: [] as string[], replaced: [] as string[], removed: [] as string[], problems: [] as string[] };
    outcome = now;
    const live = await deps.table.liveEntries(base);
    const etags = await registeredEtags(deps.table, live);
    const objects = await rollupObjects(deps.cold, o.keys);
    const liveByPath = new Map(live.map((l) => [l.entry.data_file.file_path, l]));
    // Files to consider: the ones asked for, or every file listed and every file the table holds.
    const keys = new Set(o.keys ?? [...objects.keys()]);
    if (!o.keys) for (const p of liveByPath.keys()) if (parseS3Uri(p)?.bucket === deps.cold.bucket) keys.add(parseS3Uri(p)!.key);

    const versions = new Map<string, FileVersion>();
    const gone = new Set<string>();
    for (const key of [...keys].sort()) {
      const obj = objects.get(key);
      const held = liveByPath.get(uri(key));
      if (!obj) {
        if (held) gone.add(key);
        continue;
      }
      if (held && etags.get(uri(key)) === unquote(obj.etag) && held.entry.data_file.file_size_in_bytes === obj.bytes) continue;
      const v = await readVersion(deps, obj);
      if (typeof v === 'string') now.problems.push(v);
      else versions.set(key, v);
    }
    if (!versions.size && !gone.size) return undefined;

    // One manifest per resolution touched, holding all its files; the other resolutions' manifests are kept.
    const resOf = (key: string) => parseRollupKey(key)!.res;
    const touched = new Set([...versions.keys(), ...gone].map(resOf));
    const kept: ManifestFile[] = [];
    const rewritten: NewManifest[] = [];
    const removedEntries: ManifestEntry[] = [];
    for (const mf of await deps.table.carriedManifests(base))
      if (!RESOLUTIONS.some((r) => touched.has(r) && ROLLUP_SPECS[r]['spec-id'] === mf.partition_spec_id)) kept.push(mf);
    for (const res of RESOLUTIONS) {
      if (!touched.has(res)) continue;
      const spec = ROLLUP_SPECS[res];
      const entries: ManifestEntry[] = [];
      const header: Record<string, string> = {};
      for (const l of live) {
        if (l.manifest.partition_spec_id !== spec['spec-id']) continue;
        const key = parseS3Uri(l.entry.data_file.file_path)?.key ?? '';
        if (versions.has(key) || gone.has(key)) {
          entries.push({ ...l.entry, status: EntryStatus.DELETED, snapshot_id: snapshotId });
          removedEntries.push(l.entry);
        } else {
          entries.push({ ...l.entry, status: EntryStatus.EXISTING });
          const etag = etags.get(l.entry.data_file.file_path);
          if (etag) header[l.entry.data_file.file_path] = etag;
        }
      }
      for (const v of versions.values()) {
        if (v.res !== res) continue;
        entries.push({ status: EntryStatus.ADDED, snapshot_id: null, sequence_number: null, file_sequence_number: null, data_file: dataFile(uri(v.key), v) });
        header[uri(v.key)] = v.etag;
      }
      rewritten.push({ spec, entries, header: { [ETAGS_HEADER]: JSON.stringify(header) } });
    }
    const written = await write(rewritten);
    for (const v of versions.values()) (liveByPath.has(uri(v.key)) ? now.replaced : now.added).push(v.key);
    now.removed.push(...gone);
    const added = [...versions.values()];
    return {
      manifests: [...kept, ...written],
      change: {
        operation: removedEntries.length === 0 ? 'append' : added.length === 0 ? 'delete' : 'overwrite',
        addedFiles: added.length,
        addedRecords: added.reduce((n, v) => n + v.rows, 0),
        addedBytes: added.reduce((n, v) => n + v.bytes, 0),
        deletedFiles: removedEntries.length,
        deletedRecords: removedEntries.reduce((n, e) => n + e.data_file.record_count, 0),
        removedBytes: removedEntries.reduce((n, e) => n + e.data_file.file_size_in_bytes, 0),
        changedPartitions: new Set([...versions.keys(), ...gone]).size,
        extra: {},
      },
    };
  });
  return { ...result, ...(result.committed ? outcome : { added: [], replaced: [], removed: [], problems: outcome.problems }) };
}

/** sluice.rollups from the configuration (its metadata in the raw bucket, its pointer in Redis). */
export function openRollupsTable(
  cfg: Config,
  log: Logger,
  redis: RedisClient,
  o: Pick<TableDeps, 'onStep' | 'now' | 'properties'> = {},
): { table: IcebergTable; close(): void } {
  const s3 = createS3(cfg);
  const table = new IcebergTable({
    s3,
    redis,
    rawBucket: cfg.SLUICE_RAW_BUCKET,
    redisPrefix: cfg.SLUICE_REDIS_PREFIX,
    log,
    definition: rollupsTable(),
    ...o,
  });
  return { table, close: () => s3.destroy() };
}

/**
 * For the rollup job: commits each rollup file to sluice.rollups right after it is written, so the table names its
 * new version within a commit. A failed commit is logged, not thrown: the file is written, and the commit job
 * (`sluice iceberg commit`, `sluice start`) registers it on its next run.
 */
export function openRollupRegistrar(
  cfg: Config,
  log: Logger,
  deps: { redis: RedisClient; cold: ColdStorage },
): { register(key: string): Promise<void>; close(): void } {
  const { table, close } = openRollupsTable(cfg, log, deps.redis, { properties: maintenanceProperties(maintenanceSettings(cfg)) });
  const tmpDir = path.join(cfg.SLUICE_DATA_DIR, 'iceberg-tmp');
  return {
    async register(key) {
      try {
        await commitRollups({ table, cold: deps.cold, log, tmpDir }, { keys: [key] });
      } catch (err) {
        log.warn(
          { key, err: errorMessage(err) },
          'could not commit the rollup file to the Iceberg table sluice.rollups; the next `sluice iceberg commit` does',
        );
      }
    },
    close,
  };
}
