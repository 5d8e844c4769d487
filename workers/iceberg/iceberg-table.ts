// One commit to the Iceberg table `sluice.events`, by optimistic concurrency (the Iceberg commit protocol): load
// the current version N, build the change on it (new manifests, a manifest list, the next metadata file — all under
// unique names), then swap the pointer N → N+1 (workers/iceberg/commit-pointer.ts). A lost swap means another
// commit won: the change is rebuilt on the new version, where its checks run again. After a swap the version is
// published for readers without a catalog (v<N>.metadata.json, version-hint.text); a committer that dies before that
// leaves it to the next one, which publishes any version the hint lags behind.
//
// Steps, in order (onStep after each; a crash at any one leaves the table at N or N+1, never in between):
//   manifests-written → manifest-list-written → metadata-written → pointer-swapped → published
import type { S3Client } from '@aws-sdk/client-s3';
import { randomInt, randomUUID } from 'node:crypto';
import type { RedisClient } from '../../shared/clients/redis.js';
import { ICEBERG_METADATA_PREFIX, icebergTableLocation, metadataFileKey, versionCopyKey, type CommitPointer } from '../../shared/contracts/iceberg-table.js';
import { TransientError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { MANIFEST_FILE_SCHEMA, decodeAvroFile, encodeAvroFile, intBound, manifestEntrySchema, type ManifestEntry, type ManifestFile } from './avro-files.js';
import { CommitPointerStore } from './commit-pointer.js';
import { TableFiles } from './table-files.js';
import { currentSnapshot, newTableMetadata, withSnapshot, type SnapshotChange, type TableMetadata } from './table-metadata.js';
import type { PartitionSpec } from './table-schema.js';

export type CommitStep = 'manifests-written' | 'manifest-list-written' | 'metadata-written' | 'pointer-swapped' | 'published';

export interface TableDeps {
  s3: S3Client;
  redis: RedisClient;
  rawBucket: string;
  redisPrefix: string;
  log: Logger;
  /** Called after each commit step (fault-injection point for tests; a throw stops the commit there). */
  onStep?: (step: CommitStep, info: { version: number; attempt: number }) => void | Promise<void>;
  now?: () => number;
}

/** A version of the table: its number, metadata file and content. */
export interface TableVersion {
  version: number;
  location: string;
  metadata: TableMetadata;
}

/** What a change adds to the new snapshot: its manifests (all of them, the kept ones included) and its summary. */
export interface PlannedSnapshot {
  manifests: ManifestFile[];
  change: SnapshotChange;
}

/** A manifest to write for the new snapshot. */
export interface NewManifest {
  spec: PartitionSpec;
  entries: ManifestEntry[];
}

/** One attempt of a commit: the version it builds on, the new snapshot's id and sequence number, a manifest writer. */
export interface CommitAttempt {
  base: TableVersion;
  snapshotId: number;
  sequence: number;
  /** Writes manifests for the new snapshot (ADDED entries inherit its snapshot id and sequence number). */
  write(manifests: NewManifest[]): Promise<ManifestFile[]>;
}

export interface CommitResult {
  /** The version the table is at after the call. */
  version: number;
  /** False when the change had nothing left to commit on the current version. */
  committed: boolean;
  attempts: number;
}

/** Attempts before giving up while other commits keep winning (each attempt rebuilds on the newest version). */
const MAX_ATTEMPTS = 20;

/** Snapshot ids: random, positive, below 2^53 so they survive JSON in every language. */
const newSnapshotId = () => randomInt(1, 2 ** 47) * 64 + randomInt(0, 64);

export class IcebergTable {
  readonly files: TableFiles;
  readonly pointer: CommitPointerStore;
  readonly location: string;
  private readonly now: () => number;

  constructor(private readonly deps: TableDeps) {
    this.files = new TableFiles(deps.s3, deps.rawBucket);
    this.pointer = new CommitPointerStore(deps.redis, deps.redisPrefix);
    this.location = icebergTableLocation(deps.rawBucket);
    this.now = deps.now ?? Date.now;
  }

  /**
   * The current version, or undefined when there is no table. Without a pointer in Redis (a new or emptied Redis)
   * it is rebuilt from the newest published version in S3 (version-hint.text, then probing v<N+1>… forward).
   */
  async current(): Promise<TableVersion | undefined> {
    let p = await this.pointer.read();
    if (!p) {
      const published = await this.newestPublished();
      if (!published) return undefined;
      const at: CommitPointer = { version: published, location: this.files.uri(versionCopyKey(published)), committedAtMs: this.now() };
      if (await this.pointer.swap(0, at)) this.deps.log.warn({ version: published }, 'Iceberg commit pointer rebuilt from the metadata published in S3');
      p = await this.pointer.read();
      if (!p) throw new TransientError(`the Iceberg commit pointer ${this.pointer.key} vanished while it was rebuilt; retry`, 'iceberg_pointer_lost');
    }
    return { version: p.version, location: p.location, metadata: await this.files.metadata(p.location) };
  }

  private async newestPublished(): Promise<number | undefined> {
    let v = (await this.files.versionHint()) ?? 0;
    if (v > 0 && !(await this.files.exists(versionCopyKey(v)))) v = 0;
    while (await this.files.exists(versionCopyKey(v + 1))) v++;
    return v > 0 ? v : undefined;
  }

  /** The current version, creating the table (version 1, no snapshot) when there is none. */
  async ensure(): Promise<TableVersion> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const cur = await this.current();
      if (cur) {
        await this.publishIfBehind(cur);
        return cur;
      }
      const metadata = newTableMetadata({ uuid: randomUUID(), location: this.location, nowMs: this.now() });
      const location = await this.files.put(metadataFileKey(1, randomUUID()), JSON.stringify(metadata), 'application/json');
      if (await this.pointer.swap(0, { version: 1, location, committedAtMs: this.now() })) {
        this.deps.log.info({ table: this.location }, 'created the Iceberg table sluice.events');
        await this.files.publish(1, location);
      }
    }
    throw new TransientError(`could not create the Iceberg table at ${this.location}`, 'iceberg_create_contended');
  }

  /** Publishes `cur` when version-hint.text lags behind it (a committer died between its swap and publishing). */
  private async publishIfBehind(cur: TableVersion): Promise<void> {
    const hint = await this.files.versionHint();
    if (hint === undefined || hint < cur.version) await this.files.publish(cur.version, cur.location);
  }

  /** The manifests of the current snapshot of `v` (none before the first snapshot). */
  async manifests(v: TableVersion): Promise<ManifestFile[]> {
    const snap = currentSnapshot(v.metadata);
    if (!snap) return [];
    const { records } = await decodeAvroFile<ManifestFile>(await this.files.getImmutable(snap['manifest-list']), snap['manifest-list']);
    return records;
  }

  /**
   * The manifests of `v` a new snapshot carries on: those still listing a live file. A manifest left with only
   * DELETED entries told the snapshot that removed them what it removed; later snapshots drop it (as Iceberg's own
   * writers do), so compacted days leave no manifests behind.
   */
  async carriedManifests(v: TableVersion): Promise<ManifestFile[]> {
    return (await this.manifests(v)).filter((m) => m.added_files_count + m.existing_files_count > 0);
  }

  /**
   * The entries of a manifest, each with its sequence numbers and snapshot id resolved (an ADDED entry inherits
   * them from the manifest), so it can be written again as EXISTING or DELETED.
   */
  async entries(m: ManifestFile): Promise<ManifestEntry[]> {
    const { records } = await decodeAvroFile<ManifestEntry>(await this.files.getImmutable(m.manifest_path), m.manifest_path);
    return records.map((e) => ({
      ...e,
      snapshot_id: e.snapshot_id ?? m.added_snapshot_id,
      sequence_number: e.sequence_number ?? m.sequence_number,
      file_sequence_number: e.file_sequence_number ?? m.sequence_number,
    }));
  }

  /**
   * Commits the change `plan` builds on the current version. `plan` runs again on each attempt (so its checks see
   * the newest table) and answers undefined when nothing is left to commit. Resolves once the change is current.
   * `plan` lists every manifest of the new snapshot: the base's it keeps and the ones it wrote with `write`.
   */
  async commit(what: string, plan: (attempt: CommitAttempt) => Promise<PlannedSnapshot | undefined>): Promise<CommitResult> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const base = await this.ensure();
      const snapshotId = newSnapshotId();
      const sequence = base.metadata['last-sequence-number'] + 1;
      const step = async (s: CommitStep, version: number) => this.deps.onStep?.(s, { version, attempt });
      const write = async (news: NewManifest[]): Promise<ManifestFile[]> => {
        const out: ManifestFile[] = [];
        for (const [i, m] of news.entries()) out.push(await this.writeManifest(base.metadata, m, snapshotId, sequence, i));
        await step('manifests-written', base.version);
        return out;
      };
      const planned = await plan({ base, snapshotId, sequence, write });
      if (!planned) return { version: base.version, committed: false, attempts: attempt };

      const listKey = `${ICEBERG_METADATA_PREFIX}snap-${snapshotId}-${attempt}-${randomUUID()}.avro`;
      const list = await encodeAvroFile(MANIFEST_FILE_SCHEMA, planned.manifests, {
        'snapshot-id': String(snapshotId),
        'parent-snapshot-id': String(currentSnapshot(base.metadata)?.['snapshot-id'] ?? 'null'),
        'sequence-number': String(sequence),
        'format-version': '2',
      });
      const manifestList = await this.files.put(listKey, list, 'application/octet-stream');
      await step('manifest-list-written', base.version);

      const next = base.version + 1;
      const metadata = withSnapshot(base.metadata, base.location, { snapshotId, manifestList, change: planned.change, nowMs: this.now() });
      const location = await this.files.put(metadataFileKey(next, randomUUID()), JSON.stringify(metadata), 'application/json');
      await step('metadata-written', base.version);

      if (!(await this.pointer.swap(base.version, { version: next, location, committedAtMs: this.now() }))) {
        this.deps.log.info({ what, base: base.version, attempt }, 'another commit won the Iceberg table; rebuilding on its version');
        continue;
      }
      await step('pointer-swapped', next);
      await this.files.publish(next, location);
      await step('published', next);
      this.deps.log.info(
        { what, version: next, operation: planned.change.operation, added: planned.change.addedFiles, removed: planned.change.deletedFiles },
        'committed to the Iceberg table',
      );
      return { version: next, committed: true, attempts: attempt };
    }
    throw new TransientError(`${what}: other commits kept winning the Iceberg table for ${MAX_ATTEMPTS} attempts; retry later`, 'iceberg_commit_contended');
  }

  private async writeManifest(meta: TableMetadata, m: NewManifest, snapshotId: number, sequence: number, index: number): Promise<ManifestFile> {
    const schema = meta.schemas.find((s) => s['schema-id'] === meta['current-schema-id'])!;
    const bytes = await encodeAvroFile(manifestEntrySchema(m.spec), m.entries, {
      schema: JSON.stringify(schema),
      'schema-id': String(schema['schema-id']),
      'partition-spec': JSON.stringify(m.spec.fields),
      'partition-spec-id': String(m.spec['spec-id']),
      'format-version': '2',
      content: 'data',
    });
    const path = await this.files.put(`${ICEBERG_METADATA_PREFIX}${randomUUID()}-m${index}.avro`, bytes, 'application/octet-stream');
    const count = (status: number) => m.entries.filter((e) => e.status === status);
    const rows = (es: ManifestEntry[]) => es.reduce((n, e) => n + e.data_file.record_count, 0);
    const [existing, added, deleted] = [count(0), count(1), count(2)];
    const live = [...existing, ...added];
    const seqs = live.map((e) => e.sequence_number ?? sequence);
    return {
      manifest_path: path,
      manifest_length: bytes.length,
      partition_spec_id: m.spec['spec-id'],
      content: 0,
      sequence_number: sequence,
      min_sequence_number: seqs.length ? Math.min(...seqs) : sequence,
      added_snapshot_id: snapshotId,
      added_files_count: added.length,
      existing_files_count: existing.length,
      deleted_files_count: deleted.length,
      added_rows_count: rows(added),
      existing_rows_count: rows(existing),
      deleted_rows_count: rows(deleted),
      partitions: m.spec.fields.map((f) => {
        const values = m.entries.map((e) => e.data_file.partition[f.name]).filter((v): v is number => typeof v === 'number');
        return {
          contains_null: m.entries.some((e) => e.data_file.partition[f.name] == null),
          contains_nan: false,
          lower_bound: values.length ? intBound(Math.min(...values)) : null,
          upper_bound: values.length ? intBound(Math.max(...values)) : null,
        };
      }),
      key_metadata: null,
    };
  }
}
