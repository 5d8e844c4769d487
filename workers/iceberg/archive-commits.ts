// What the Iceberg table sluice.events holds: the archive as its readers see it (workers/cold/archive.ts) — live raw
// batches and verified compacted day files, each event in exactly one data file. Two changes keep it so:
//   appendBatches    an `append` of durable raw batches the table does not hold and no compaction superseded;
//   commitCompaction a `replace` (an `overwrite` when the table lacked some inputs) that adds a compacted day file and
//                    removes the raw batches it merged — run by compaction before it deletes those batches.
// The record of what was committed is the table itself: the data files of its current snapshot (tableHoldings) —
// a raw batch is committed iff the table holds it or a compaction manifest supersedes it, a compaction iff the
// table holds its day file (whose key names the compaction). It needs no snapshot summaries, so expiring snapshots
// loses nothing. Both changes check it again on every commit attempt, and the compaction manifests of the days
// they touch, so a batch is never committed twice, also when a compaction, another committer or a crashed run got
// there first. Data files are registered where they are, never rewritten.
import type { ColdStorage } from '../../shared/clients/cold-storage.js';
import { compactionDayPrefix, decodeCompactionManifest, parseCompactedKey, type CompactionManifest } from '../../shared/contracts/cold-layout.js';
import { parseS3Uri } from '../../shared/contracts/iceberg-table.js';
import { parseRawEventsKey } from '../../shared/contracts/parquet-schema.js';
import type { Logger } from '../../shared/logger.js';
import { EntryStatus, type DataFile, type ManifestEntry, type ManifestFile } from './avro-files.js';
import type { CommitResult, IcebergTable, TableVersion } from './iceberg-table.js';
import { SUMMARY } from './table-metadata.js';
import { DAY_FIELD, DAY_SPEC, FILE_SORT_ORDER, HOUR_FIELD, RAW_SPEC, dayPartition, rawPartition, type PartitionValues } from './table-schema.js';

/** A raw batch ready to be registered: its key in the raw bucket, size and rows (from ingest's object metadata). */
export interface DurableBatch {
  key: string;
  bytes: number;
  rows: number;
}

export interface CommitDeps {
  table: IcebergTable;
  rawBucket: string;
  cold: ColdStorage;
  log: Logger;
}

/** Batches per append snapshot: keeps each manifest small. */
export const MAX_BATCHES_PER_COMMIT = 2_000;

/** What version `v` of the events table holds: its data files (s3:// URIs) and the compactions whose day file it holds. */
export interface TableHoldings {
  files: Set<string>;
  compactions: Set<string>;
}

export async function tableHoldings(table: IcebergTable, v: TableVersion): Promise<TableHoldings> {
  const files = new Set<string>();
  const compactions = new Set<string>();
  for (const { entry, manifest } of await table.liveEntries(v)) {
    files.add(entry.data_file.file_path);
    if (manifest.partition_spec_id !== DAY_SPEC['spec-id']) continue;
    const key = parseCompactedKey(parseS3Uri(entry.data_file.file_path)?.key ?? '');
    if (key?.kind === 'data') compactions.add(key.id);
  }
  return { files, compactions };
}

const partitionRecord = (spec: typeof RAW_SPEC, values: PartitionValues): Record<string, number | string> =>
  Object.fromEntries(spec.fields.map((f) => [f.name, values[f['field-id']]!]));

function dataFile(path: string, spec: typeof RAW_SPEC, values: PartitionValues, rows: number, bytes: number): DataFile {
  return {
    content: 0,
    file_path: path,
    file_format: 'PARQUET',
    partition: partitionRecord(spec, values),
    record_count: rows,
    file_size_in_bytes: bytes,
    sort_order_id: FILE_SORT_ORDER['order-id'],
  };
}

/** Raw keys of `rawBucket` that the compaction manifests of `days` supersede (read fresh from the cold bucket). */
export async function supersededKeys(cold: ColdStorage, rawBucket: string, days: Iterable<string>): Promise<Set<string>> {
  const out = new Set<string>();
  for (const dt of new Set(days)) {
    for (const o of await cold.list(compactionDayPrefix(dt))) {
      if (parseCompactedKey(o.key)?.kind !== 'manifest') continue;
      const m = decodeCompactionManifest(await cold.getText(o.key), `s3://${cold.bucket}/${o.key}`);
      if (m.inputBucket === rawBucket) for (const k of m.inputs) out.add(k);
    }
  }
  return out;
}

/**
 * Appends `batches` to the table in one snapshot (operation append), leaving out those a snapshot already added or a
 * compaction superseded — checked again on the newest version at every attempt. `batches` are at most
 * MAX_BATCHES_PER_COMMIT. Resolves with committed: false when none was left.
 */
export async function appendBatches(deps: CommitDeps, batches: readonly DurableBatch[]): Promise<CommitResult & { added: string[] }> {
  if (batches.length > MAX_BATCHES_PER_COMMIT) throw new RangeError(`at most ${MAX_BATCHES_PER_COMMIT} batches per append, got ${batches.length}`);
  const byKey = new Map(batches.map((b) => [b.key, b]));
  for (const key of byKey.keys())
    if (!parseRawEventsKey(key)) throw new Error(`${key} is not a raw batch key (events/dt=…/hour=…/<node>-<id>.parquet); it cannot be registered`);
  let added: string[] = [];
  const result = await deps.table.commit(`append of ${byKey.size} batch(es)`, async ({ base, write }) => {
    const held = await tableHoldings(deps.table, base);
    const open = [...byKey.values()].filter((b) => !held.files.has(deps.table.files.uri(b.key)));
    const superseded = await supersededKeys(
      deps.cold,
      deps.rawBucket,
      open.map((b) => parseRawEventsKey(b.key)!.dt),
    );
    const fresh = open.filter((b) => !superseded.has(b.key)).sort((a, b) => (a.key < b.key ? -1 : 1));
    if (!fresh.length) return undefined;
    const entries: ManifestEntry[] = fresh.map((b) => {
      const k = parseRawEventsKey(b.key)!;
      return {
        status: EntryStatus.ADDED,
        snapshot_id: null,
        sequence_number: null,
        file_sequence_number: null,
        data_file: dataFile(deps.table.files.uri(b.key), RAW_SPEC, rawPartition(k.dt, k.hour), b.rows, b.bytes),
      };
    });
    const written = await write([{ spec: RAW_SPEC, entries }]);
    added = fresh.map((b) => b.key);
    return {
      manifests: [...(await deps.table.carriedManifests(base)), ...written],
      change: {
        operation: 'append',
        addedFiles: fresh.length,
        addedRecords: fresh.reduce((n, b) => n + b.rows, 0),
        addedBytes: fresh.reduce((n, b) => n + b.bytes, 0),
        deletedFiles: 0,
        deletedRecords: 0,
        removedBytes: 0,
        changedPartitions: new Set(fresh.map((b) => b.key.split('/').slice(1, 3).join('/'))).size,
        extra: {},
      },
    };
  });
  return { ...result, added: result.committed ? added : [] };
}

/** True when a manifest of raw batches (spec 0) may hold files of `day` (days since the epoch), by its partition summary. */
function mayHoldDay(m: ManifestFile, day: number): boolean {
  if (m.partition_spec_id !== RAW_SPEC['spec-id']) return false;
  const s = m.partitions?.[RAW_SPEC.fields.indexOf(DAY_FIELD)];
  if (!s?.lower_bound || !s.upper_bound) return true;
  return s.lower_bound.readInt32LE(0) <= day && day <= s.upper_bound.readInt32LE(0);
}

/**
 * Commits a verified compaction: its day file added (spec 1, partition day(event_time)), the raw batches it merged
 * removed where the table holds them. `replace` when the table held every input (the table's rows do not change),
 * `overwrite` when it lacked some (their rows are added with the day file). Nothing when the table holds it already.
 */
export async function commitCompaction(deps: Omit<CommitDeps, 'cold'>, m: CompactionManifest): Promise<CommitResult> {
  const inputs = new Set(m.inputs.map((k) => `s3://${m.inputBucket}/${k}`));
  const day = Number(dayPartition(m.dt)[DAY_FIELD['field-id']]);
  return deps.table.commit(`compaction ${m.id} of ${m.dt}`, async ({ base, snapshotId, write }) => {
    if ((await tableHoldings(deps.table, base)).compactions.has(m.id)) return undefined;
    const kept: ManifestFile[] = [];
    const rewritten: { spec: typeof RAW_SPEC; entries: ManifestEntry[] }[] = [];
    const removed: ManifestEntry[] = [];
    for (const mf of await deps.table.carriedManifests(base)) {
      if (!mayHoldDay(mf, day)) {
        kept.push(mf);
        continue;
      }
      const entries = await deps.table.entries(mf);
      const hit = entries.filter((e) => e.status !== EntryStatus.DELETED && inputs.has(e.data_file.file_path));
      if (!hit.length) {
        kept.push(mf);
        continue;
      }
      removed.push(...hit);
      rewritten.push({
        spec: RAW_SPEC,
        entries: entries
          .filter((e) => e.status !== EntryStatus.DELETED)
          .map((e) => (hit.includes(e) ? { ...e, status: EntryStatus.DELETED, snapshot_id: snapshotId } : { ...e, status: EntryStatus.EXISTING })),
      });
    }
    const addedEntry: ManifestEntry = {
      status: EntryStatus.ADDED,
      snapshot_id: null,
      sequence_number: null,
      file_sequence_number: null,
      data_file: dataFile(`s3://${m.output.bucket}/${m.output.key}`, DAY_SPEC, dayPartition(m.dt), m.rows, m.output.bytes),
    };
    const written = await write([...rewritten, { spec: DAY_SPEC, entries: [addedEntry] }]);
    const removedRows = removed.reduce((n, e) => n + e.data_file.record_count, 0);
    const hours = new Set(removed.map((e) => e.data_file.partition[HOUR_FIELD.name]));
    return {
      manifests: [...kept, ...written],
      change: {
        operation: removed.length === inputs.size && removedRows === m.rows ? 'replace' : 'overwrite',
        addedFiles: 1,
        addedRecords: m.rows,
        addedBytes: m.output.bytes,
        deletedFiles: removed.length,
        deletedRecords: removedRows,
        removedBytes: removed.reduce((n, e) => n + e.data_file.file_size_in_bytes, 0),
        changedPartitions: hours.size + 1,
        extra: { [SUMMARY.compactionId]: m.id, [SUMMARY.compactionDay]: m.dt },
      },
    };
  });
}
