// One Iceberg table of Sluice (`sluice.events` or `sluice.rollups`): the handle the commits, the maintenance and
// compaction share. It loads the current version from the commit pointer in Redis, rebuilds a lost pointer from the
// newest version published in S3, and creates the table (version 1, no snapshot) when there is none. What a snapshot
// holds is read by workers/iceberg/manifest-reader.ts, a change committed by workers/iceberg/table-commit.ts (the
// optimistic commit protocol and its steps); the table's methods delegate to them.
import type { S3Client } from '@aws-sdk/client-s3';
import { randomUUID } from 'node:crypto';
import type { RedisClient } from '../../shared/clients/redis.js';
import { icebergLayout, metadataFileVersion, type CommitPointer, type IcebergTableLayout } from '../../shared/contracts/iceberg-table.js';
import { TransientError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { ManifestEntry, ManifestFile } from './avro-files.js';
import { CommitPointerStore } from './commit-pointer.js';
import { ManifestReader, type LiveEntry } from './manifest-reader.js';
import { MAX_ATTEMPTS, TableCommitter, type CommitAttempt, type CommitResult, type CommitStepHook, type PlannedSnapshot } from './table-commit.js';
import { TableFiles } from './table-files.js';
import { newTableMetadata, type Snapshot, type TableMetadata } from './table-metadata.js';
import { eventsTable, type TableDefinition } from './table-schema.js';

// The types of the table's API, importable with it.
export type { LiveEntry } from './manifest-reader.js';
export type { NewManifest } from './manifest-writer.js';
export type { CommitAttempt, CommitResult, CommitStep, CommitStepHook, PlannedSnapshot } from './table-commit.js';

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
  onStep?: CommitStepHook;
  now?: () => number;
}

/** A version of the table: its number, metadata file and content. */
export interface TableVersion {
  version: number;
  location: string;
  metadata: TableMetadata;
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
  private readonly reader: ManifestReader;
  private readonly committer: TableCommitter;

  constructor(private readonly deps: TableDeps) {
    this.definition = deps.definition ?? eventsTable();
    this.layout = icebergLayout(this.definition.name);
    this.files = new TableFiles(deps.s3, deps.rawBucket, this.layout);
    this.pointer = new CommitPointerStore(deps.redis, this.layout.pointerKey(deps.redisPrefix));
    this.location = this.layout.location(deps.rawBucket);
    this.qualifiedName = `sluice.${this.definition.name}`;
    this.now = deps.now ?? Date.now;
    this.reader = new ManifestReader(this.files);
    this.committer = new TableCommitter(this, deps);
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

  // Reading a snapshot (ManifestReader).

  /** The manifests a snapshot's manifest list names (cached: the list never changes). */
  manifestsOf(snapshot: Snapshot): Promise<ManifestFile[]> {
    return this.reader.manifestsOf(snapshot);
  }

  /** The manifests of the current snapshot of `v` (none before the first snapshot). */
  async manifests(v: TableVersion): Promise<ManifestFile[]> {
    return this.reader.manifests(v.metadata);
  }

  /** The manifests of `v` a new snapshot carries on: those still listing a live file. */
  async carriedManifests(v: TableVersion): Promise<ManifestFile[]> {
    return this.reader.carriedManifests(v.metadata);
  }

  /** The entries of a manifest, sequence numbers and snapshot id resolved (to be written again as EXISTING or DELETED). */
  async entries(m: ManifestFile): Promise<ManifestEntry[]> {
    return this.reader.entries(m);
  }

  /** The key-value metadata in a manifest's header. */
  async header(m: ManifestFile): Promise<Record<string, string>> {
    return this.reader.header(m);
  }

  /** Every data file the current snapshot of `v` holds (entries not DELETED), with its manifest. */
  async liveEntries(v: TableVersion): Promise<LiveEntry[]> {
    return this.reader.liveEntries(v.metadata);
  }

  // Committing (TableCommitter).

  /** Commits the change `plan` builds on the current version, rebuilt on the winner while other commits win. */
  async commit(what: string, plan: (attempt: CommitAttempt) => Promise<PlannedSnapshot | undefined>): Promise<CommitResult> {
    return this.committer.commit(what, plan);
  }

  /** Commits a change of the metadata alone (no new snapshot), built by `build` on the current version at every attempt. */
  async commitMetadata(
    what: string,
    build: (base: TableVersion) => TableMetadata | undefined,
  ): Promise<CommitResult & { base?: TableVersion; metadata?: TableMetadata }> {
    return this.committer.commitMetadata(what, build);
  }
}
