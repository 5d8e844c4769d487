// Commits to an Iceberg table by optimistic concurrency (the Iceberg commit protocol): load the current version N,
// build the change on it (new manifests, a manifest list, the next metadata file — all under unique names), then swap
// the pointer N → N+1 (workers/iceberg/commit-pointer.ts). A lost swap means another commit won: the change is rebuilt
// on the new version, where its checks run again. After a swap the version is published for readers without a
// catalog (v<N>.metadata.json, version-hint.text); a committer that dies before that leaves it to the next one, which
// publishes any version the hint lags behind (IcebergTable.ensure).
//
// Steps, in order (onStep after each; a crash at any one leaves the table at N or N+1, never in between):
//   manifests-written → manifest-list-written → metadata-written → pointer-swapped → published
// A metadata-only change (snapshot expiry) has the last three.
//
// Every snapshot is built on the current one: its manifests are the current snapshot's it keeps plus the ones it
// writes. So a manifest is listed by an unbroken run of snapshots, from the one that wrote it to the one that
// dropped it — the maintenance (workers/iceberg/maintenance.ts) relies on it to find what expired snapshots alone
// referenced without reading every manifest list.
import { randomInt, randomUUID } from 'node:crypto';
import { TransientError } from '../../shared/errors.js';
import type { ManifestFile } from './avro-files.js';
import type { IcebergTable, TableVersion } from './iceberg-table.js';
import { writeManifest, writeManifestList, type NewManifest } from './manifest-writer.js';
import { withSnapshot, type SnapshotChange, type TableMetadata } from './table-metadata.js';

export type CommitStep = 'manifests-written' | 'manifest-list-written' | 'metadata-written' | 'pointer-swapped' | 'published';

/** Called after each commit step (fault-injection point for tests; a throw stops the commit there). */
export type CommitStepHook = (step: CommitStep, info: { version: number; attempt: number }) => void | Promise<void>;

/** What a change adds to the new snapshot: its manifests (all of them, the kept ones included) and its summary. */
export interface PlannedSnapshot {
  manifests: ManifestFile[];
  change: SnapshotChange;
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
export const MAX_ATTEMPTS = 20;

/** Snapshot ids: random, positive, below 2^53 so they survive JSON in every language. */
const newSnapshotId = () => randomInt(1, 2 ** 47) * 64 + randomInt(0, 64);

/** The commits of one table: its files, pointer, clock and log are the table's. */
export class TableCommitter {
  constructor(
    private readonly table: IcebergTable,
    /** The table's deps: `onStep` is read at each step. */
    private readonly hooks: { onStep?: CommitStepHook },
  ) {}

  /**
   * Commits the change `plan` builds on the current version. `plan` runs again on each attempt (so its checks see
   * the newest table) and answers undefined when nothing is left to commit. Resolves once the change is current.
   * `plan` lists every manifest of the new snapshot: the base's it keeps and the ones it wrote with `write`.
   */
  async commit(what: string, plan: (attempt: CommitAttempt) => Promise<PlannedSnapshot | undefined>): Promise<CommitResult> {
    const t = this.table;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const base = await t.ensure();
      const snapshotId = newSnapshotId();
      const sequence = base.metadata['last-sequence-number'] + 1;
      const write = async (news: NewManifest[]): Promise<ManifestFile[]> => {
        const out: ManifestFile[] = [];
        for (const [i, m] of news.entries()) out.push(await writeManifest(t.files, base.metadata, m, { snapshotId, sequence }, i));
        await this.step('manifests-written', base.version, attempt);
        return out;
      };
      const planned = await plan({ base, snapshotId, sequence, write });
      if (!planned) return { version: base.version, committed: false, attempts: attempt };

      const manifestList = await writeManifestList(t.files, base.metadata, planned.manifests, { snapshotId, sequence }, attempt);
      await this.step('manifest-list-written', base.version, attempt);

      const metadata = withSnapshot(base.metadata, base.location, { snapshotId, manifestList, change: planned.change, nowMs: t.now() });
      const next = await this.install(base, metadata, attempt);
      if (next === undefined) {
        t.log.info({ table: t.qualifiedName, what, base: base.version, attempt }, 'another commit won the Iceberg table; rebuilding on its version');
        continue;
      }
      t.log.info(
        {
          table: t.qualifiedName,
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
    const t = this.table;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const base = await t.ensure();
      const metadata = build(base);
      if (!metadata) return { version: base.version, committed: false, attempts: attempt };
      const next = await this.install(base, metadata, attempt);
      if (next === undefined) continue;
      t.log.info({ table: t.qualifiedName, what, version: next }, 'committed to the Iceberg table');
      return { version: next, committed: true, attempts: attempt, base, metadata };
    }
    throw new TransientError(`${what}: other commits kept winning the Iceberg table for ${MAX_ATTEMPTS} attempts; retry later`, 'iceberg_commit_contended');
  }

  /** Writes `metadata` as version base+1, swaps the pointer and publishes; undefined when another commit won. */
  private async install(base: TableVersion, metadata: TableMetadata, attempt: number): Promise<number | undefined> {
    const t = this.table;
    const next = base.version + 1;
    const location = await t.files.put(t.layout.metadataFileKey(next, randomUUID()), JSON.stringify(metadata), 'application/json');
    await this.step('metadata-written', base.version, attempt);
    if (!(await t.pointer.swap(base.version, { version: next, location, committedAtMs: t.now() }))) return undefined;
    await this.step('pointer-swapped', next, attempt);
    await t.files.publish(next, location);
    await this.step('published', next, attempt);
    return next;
  }

  private async step(s: CommitStep, version: number, attempt: number): Promise<void> {
    await this.hooks.onStep?.(s, { version, attempt });
  }
}
