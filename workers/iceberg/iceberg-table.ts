// One Iceberg table of Sluice (`sluice.events` or `sluice.rollups`) and its commits, by optimistic concurrency (the
// Iceberg commit protocol): load the current version N, build the change on it (new manifests, a manifest list, the
// next metadata file — all under unique names), then swap the pointer N → N+1 (workers/iceberg/commit-pointer.ts).
// A lost swap means another commit won: the change is rebuilt on the new version, where its checks run again. After
// a swap the version is published for readers without a catalog (v<N>.metadata.json, version-hint.text); a committer
// that dies before that leaves it to the next one, which publishes any version the hint lags behind.
//
// Steps, in order (onStep after each; a crash at any one leaves the table at N or N+1, never in between):
//   manifests-written → manifest-list-written → metadata-written → pointer-swapped → published
// A metadata-only change (snapshot expiry) has the last three.
//
// Every snapshot is built on the current one: its manifests are the current snapshot's it keeps plus the ones it
// writes. So a manifest is listed by an unbroken run of snapshots, from the one that wrote it to the one that
// dropped it — the maintenance (workers/iceberg/maintenance.ts) relies on it to find what expired snapshots alone
// referenced without reading every manifest list.
import type { S3Client } from '@aws-sdk/client-s3';
import { randomInt, randomUUID } from 'node:crypto';
import type { RedisClient } from '../../shared/clients/redis.js';
import { icebergLayout, metadataFileVersion, type CommitPointer, type IcebergTableLayout } from '../../shared/contracts/iceberg-table.js';
import { TransientError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import {
  EntryStatus,
  MANIFEST_FILE_SCHEMA,
  decodeAvroFile,
  encodeAvroFile,
  manifestEntrySchema,
  partitionBound,
  type ManifestEntry,
  type ManifestFile,
} from './avro-files.js';
import { CommitPointerStore } from './commit-pointer.js';
import { TableFiles } from './table-files.js';
import { currentSnapshot, newTableMetadata, withSnapshot, type Snapshot, type SnapshotChange, type TableMetadata } from './table-metadata.js';
import { eventsTable, type PartitionSpec, type TableDefinition } from './table-schema.js';

export type CommitStep = 'manifests-written' | 'manifest-list-written' | 'metadata-written' | 'pointer-swapped' | 'published';

export interface TableDeps {
  s3: S3Client;
  redis: RedisClient;
  rawBucket: string;
  redisPrefix: string;
  log: Logger;
  /** The table (default: sluice.events). */
  definition?: TableDefinition;
  /** Properties of the table's first version besides the definition's (the maintenance settings). */
  properties?: Record<string, string>;
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
  /** Extra key-value metadata for the manifest's header (Sluice's own keys; readers ignore them). */
  header?: Record<string, string>;
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

/** A data file the current snapshot holds, with the manifest that lists it. */
export interface LiveEntry {
  entry: ManifestEntry;
  manifest: ManifestFile;
}

/** A decoded manifest: its entries (sequence numbers and snapshot ids resolved) and its header. */
interface DecodedManifest {
  entries: ManifestEntry[];
  header: Record<string, string>;
}

/** Attempts before giving up while other commits keep winning (each attempt rebuilds on the newest version). */
const MAX_ATTEMPTS = 20;
/** Decoded manifests kept in memory (immutable files, by location): a few entries each for the archive's appends. */
const MANIFESTS_MAX = 4096;
/** Decoded manifest lists kept in memory: the current snapshot's, the oldest kept one's and a few more. */
const LISTS_MAX = 16;
/** Manifests fetched at once when reading a snapshot's files. */
const READ_CONCURRENCY = 16;

/** Snapshot ids: random, positive, below 2^53 so they survive JSON in every language. */
const newSnapshotId = () => randomInt(1, 2 ** 47) * 64 + randomInt(0, 64);

function remember<T>(cache: Map<string, Promise<T>>, max: number, key: string, load: () => Promise<T>): Promise<T> {
  let p = cache.get(key);
  if (!p) {
    p = load();
    p.catch(() => cache.delete(key));
    if (cache.size >= max) cache.delete(cache.keys().next().value!);
    cache.set(key, p);
  }
  return p;
}

export class IcebergTable {
  readonly files: TableFiles;
  readonly pointer: CommitPointerStore;
  readonly layout: IcebergTableLayout;
  readonly definition: TableDefinition;
  readonly location: string;
  /** `sluice.<name>`, for messages. */
  readonly qualifiedName: string;
  /** The clock of commits (snapshot timestamps). */
  readonly now: () => number;
  private readonly lists = new Map<string, Promise<ManifestFile[]>>();
  private readonly decoded = new Map<string, Promise<DecodedManifest>>();

  constructor(private readonly deps: TableDeps) {
    this.definition = deps.definition ?? eventsTable();
    this.layout = icebergLayout(this.definition.name);
    this.files = new TableFiles(deps.s3, deps.rawBucket, this.layout);
    this.pointer = new CommitPointerStore(deps.redis, this.layout.pointerKey(deps.redisPrefix));
    this.location = this.layout.location(deps.rawBucket);
    this.qualifiedName = `sluice.${this.definition.name}`;
    this.now = deps.now ?? Date.now;
  }

  get log(): Logger {
    return this.deps.log;
  }

  /**
   * The current version, or undefined when there is no table. Without a pointer in Redis (a new or emptied Redis)
   * it is rebuilt from the newest published version in S3.
   */
  async current(): Promise<TableVersion | undefined> {
    let p = await this.pointer.read();
    if (!p) {
      const published = await this.newestPublished();
      if (!published) return undefined;
      const at: CommitPointer = { version: published, location: this.files.uri(this.layout.versionCopyKey(published)), committedAtMs: this.now() };
      if (await this.pointer.swap(0, at))
        this.deps.log.warn({ table: this.qualifiedName, version: published }, 'Iceberg commit pointer rebuilt from the metadata published in S3');
      p = await this.pointer.read();
      if (!p) throw new TransientError(`the Iceberg commit pointer ${this.pointer.key} vanished while it was rebuilt; retry`, 'iceberg_pointer_lost');
    }
    return { version: p.version, location: p.location, metadata: await this.files.metadata(p.location) };
  }

  /**
   * The newest version published in S3: version-hint.text when its copy exists, else the newest v<N> copy listed
   * (the maintenance deletes old copies, so counting up from v1 would find none); then any newer copy after it.
   */
  private async newestPublished(): Promise<number | undefined> {
    let v = (await this.files.versionHint()) ?? 0;
    if (v === 0 || !(await this.files.exists(this.layout.versionCopyKey(v)))) {
      v = 0;
      for (const o of await this.files.listMetadata()) if (/\/v\d+\.metadata\.json$/.test(o.key)) v = Math.max(v, metadataFileVersion(o.key) ?? 0);
    }
    while (await this.files.exists(this.layout.versionCopyKey(v + 1))) v++;
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
      const metadata = newTableMetadata(this.definition, { uuid: randomUUID(), location: this.location, nowMs: this.now() });
      Object.assign(metadata.properties, this.deps.properties);
      const location = await this.files.put(this.layout.metadataFileKey(1, randomUUID()), JSON.stringify(metadata), 'application/json');
      if (await this.pointer.swap(0, { version: 1, location, committedAtMs: this.now() })) {
        this.deps.log.info({ table: this.location }, `created the Iceberg table ${this.qualifiedName}`);
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

  /** The manifests a snapshot's manifest list names (cached: the list never changes). */
  manifestsOf(snapshot: Snapshot): Promise<ManifestFile[]> {
    const at = snapshot['manifest-list'];
    return remember(this.lists, LISTS_MAX, at, async () => (await decodeAvroFile<ManifestFile>(await this.files.getRequired(at), at)).records);
  }

  /** The manifests of the current snapshot of `v` (none before the first snapshot). */
  async manifests(v: TableVersion): Promise<ManifestFile[]> {
    const snap = currentSnapshot(v.metadata);
    return snap ? this.manifestsOf(snap) : [];
  }

  /**
   * The manifests of `v` a new snapshot carries on: those still listing a live file. A manifest left with only
   * DELETED entries told the snapshot that removed them what it removed; later snapshots drop it (as Iceberg's own
   * writers do), so replaced files leave no manifests behind.
   */
  async carriedManifests(v: TableVersion): Promise<ManifestFile[]> {
    return (await this.manifests(v)).filter((m) => m.added_files_count + m.existing_files_count > 0);
  }

  private decode(m: ManifestFile): Promise<DecodedManifest> {
    return remember(this.decoded, MANIFESTS_MAX, m.manifest_path, async () => {
      const { records, metadata } = await decodeAvroFile<ManifestEntry>(await this.files.getRequired(m.manifest_path), m.manifest_path);
      const entries = records.map((e) => ({
        ...e,
        snapshot_id: e.snapshot_id ?? m.added_snapshot_id,
        sequence_number: e.sequence_number ?? m.sequence_number,
        file_sequence_number: e.file_sequence_number ?? m.sequence_number,
      }));
      return { entries, header: metadata };
    });
  }

  /**
   * The entries of a manifest, each with its sequence numbers and snapshot id resolved (an ADDED entry inherits
   * them from the manifest), so it can be written again as EXISTING or DELETED.
   */
  async entries(m: ManifestFile): Promise<ManifestEntry[]> {
    return (await this.decode(m)).entries;
  }

  /** The key-value metadata in a manifest's header. */
  async header(m: ManifestFile): Promise<Record<string, string>> {
    return (await this.decode(m)).header;
  }

  /**
   * Every data file the current snapshot of `v` holds (entries not DELETED), with its manifest: what the table
   * holds is read from here, so it survives the expiry of the snapshots that added it.
   */
  async liveEntries(v: TableVersion): Promise<LiveEntry[]> {
    const manifests = await this.carriedManifests(v);
    const out: LiveEntry[] = [];
    for (let i = 0; i < manifests.length; i += READ_CONCURRENCY) {
      const chunk = manifests.slice(i, i + READ_CONCURRENCY);
      const decoded = await Promise.all(chunk.map((m) => this.entries(m)));
      for (const [j, entries] of decoded.entries())
        for (const entry of entries) if (entry.status !== EntryStatus.DELETED) out.push({ entry, manifest: chunk[j]! });
    }
    return out;
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
      const write = async (news: NewManifest[]): Promise<ManifestFile[]> => {
        const out: ManifestFile[] = [];
        for (const [i, m] of news.entries()) out.push(await this.writeManifest(base.metadata, m, snapshotId, sequence, i));
        await this.step('manifests-written', base.version, attempt);
        return out;
      };
      const planned = await plan({ base, snapshotId, sequence, write });
      if (!planned) return { version: base.version, committed: false, attempts: attempt };

      const listKey = `${this.layout.metadataPrefix}snap-${snapshotId}-${attempt}-${randomUUID()}.avro`;
      const list = await encodeAvroFile(MANIFEST_FILE_SCHEMA, planned.manifests, {
        'snapshot-id': String(snapshotId),
        'parent-snapshot-id': String(currentSnapshot(base.metadata)?.['snapshot-id'] ?? 'null'),
        'sequence-number': String(sequence),
        'format-version': '2',
      });
      const manifestList = await this.files.put(listKey, list, 'application/octet-stream');
      await this.step('manifest-list-written', base.version, attempt);

      const metadata = withSnapshot(base.metadata, base.location, { snapshotId, manifestList, change: planned.change, nowMs: this.now() });
      const next = await this.install(base, metadata, attempt);
      if (next === undefined) {
        this.deps.log.info({ table: this.qualifiedName, what, base: base.version, attempt }, 'another commit won the Iceberg table; rebuilding on its version');
        continue;
      }
      this.deps.log.info(
        {
          table: this.qualifiedName,
          what,
          version: next,
          operation: planned.change.operation,
          added: planned.change.addedFiles,
          removed: planned.change.deletedFiles,
        },
        'committed to the Iceberg table',
      );
      return { version: next, committed: true, attempts: attempt };
    }
    throw new TransientError(`${what}: other commits kept winning the Iceberg table for ${MAX_ATTEMPTS} attempts; retry later`, 'iceberg_commit_contended');
  }

  /**
   * Commits a change of the metadata alone (no new snapshot), built by `build` on the current version at every
   * attempt; undefined from `build` = nothing to change. Resolves with the base the winning attempt built on.
   */
  async commitMetadata(
    what: string,
    build: (base: TableVersion) => TableMetadata | undefined,
  ): Promise<CommitResult & { base?: TableVersion; metadata?: TableMetadata }> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const base = await this.ensure();
      const metadata = build(base);
      if (!metadata) return { version: base.version, committed: false, attempts: attempt };
      const next = await this.install(base, metadata, attempt);
      if (next === undefined) continue;
      this.deps.log.info({ table: this.qualifiedName, what, version: next }, 'committed to the Iceberg table');
      return { version: next, committed: true, attempts: attempt, base, metadata };
    }
    throw new TransientError(`${what}: other commits kept winning the Iceberg table for ${MAX_ATTEMPTS} attempts; retry later`, 'iceberg_commit_contended');
  }

  /** Writes `metadata` as version base+1, swaps the pointer and publishes; undefined when another commit won. */
  private async install(base: TableVersion, metadata: TableMetadata, attempt: number): Promise<number | undefined> {
    const next = base.version + 1;
    const location = await this.files.put(this.layout.metadataFileKey(next, randomUUID()), JSON.stringify(metadata), 'application/json');
    await this.step('metadata-written', base.version, attempt);
    if (!(await this.pointer.swap(base.version, { version: next, location, committedAtMs: this.now() }))) return undefined;
    await this.step('pointer-swapped', next, attempt);
    await this.files.publish(next, location);
    await this.step('published', next, attempt);
    return next;
  }

  private async step(s: CommitStep, version: number, attempt: number): Promise<void> {
    await this.deps.onStep?.(s, { version, attempt });
  }

  private async writeManifest(meta: TableMetadata, m: NewManifest, snapshotId: number, sequence: number, index: number): Promise<ManifestFile> {
    const schema = meta.schemas.find((s) => s['schema-id'] === meta['current-schema-id'])!;
    const bytes = await encodeAvroFile(manifestEntrySchema(m.spec, schema), m.entries, {
      schema: JSON.stringify(schema),
      'schema-id': String(schema['schema-id']),
      'partition-spec': JSON.stringify(m.spec.fields),
      'partition-spec-id': String(m.spec['spec-id']),
      'format-version': '2',
      content: 'data',
      ...m.header,
    });
    const path = await this.files.put(`${this.layout.metadataPrefix}${randomUUID()}-m${index}.avro`, bytes, 'application/octet-stream');
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
        const values = m.entries.map((e) => e.data_file.partition[f.name]).filter((v): v is number | string => v !== null && v !== undefined);
        const sorted = [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        return {
          contains_null: m.entries.some((e) => e.data_file.partition[f.name] == null),
          contains_nan: false,
          lower_bound: sorted.length ? partitionBound(sorted[0]!) : null,
          upper_bound: sorted.length ? partitionBound(sorted[sorted.length - 1]!) : null,
        };
      }),
      key_metadata: null,
    };
  }
}
