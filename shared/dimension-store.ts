// The embedded dimension store of one process (a worker, or the query API): the current version of one dimension table
// as a DuckDB database file on local disk (<dir>/<table>/v<N>.duckdb), ATTACHed read-only to the process's engine so a
// batch is enriched by one JOIN in the engine, and tables larger than the engine's memory are read from disk. The
// pointer in the raw bucket is read every poll interval; a new version is downloaded (checksum verified), built into
// its own file, attached, and swapped in atomically. Users take a lease: a batch keeps the version it started with,
// and an old version is detached and deleted only once no lease holds it. Without any loaded version the store answers
// version 0 and no attributes: enrichment then gives nothing, never an error.
import type { S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { DimensionManifest } from './contracts/dimensions.js';
import { downloadVersion, readCurrentVersion } from './dimension-tables.js';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';
import { connect, sqlIdent, sqlString, withConnection } from './parquet.js';
import { RETRY, withRetry } from './retry.js';

/** The table inside every version's database file. */
export const DIMENSION_RELATION = 'dimension';

/** One version in use: what a batch enriches with, from acquire() until release(). */
export interface DimensionLease {
  /** The table version (0: nothing loaded yet). */
  readonly version: number;
  readonly attributes: readonly string[];
  /** The attached table for SQL (`"alias".main.dimension`), or undefined at version 0. */
  readonly relation: string | undefined;
  release(): void;
}

export interface DimensionStoreOptions {
  s3: S3Client;
  /** SLUICE_RAW_BUCKET, where the tables are stored. */
  bucket: string;
  /** SLUICE_DIMENSIONS_TABLE. */
  table: string;
  /** Local folder of the database files (SLUICE_DATA_DIR/worker-dimensions, or query-dimensions). */
  dir: string;
  /** SLUICE_DIMENSIONS_POLL; 0 = never poll (tests call refresh()). */
  pollMs: number;
  log: Logger;
}

interface Version {
  manifest: DimensionManifest;
  alias: string;
  file: string;
  leases: number;
  retired: boolean;
}

/** Temporary files (downloads, builds) older than this are left-overs of a killed process. */
const STALE_TEMP_MS = 3_600_000;

export class DimensionStore {
  private current: Version | undefined;
  private readonly retired = new Set<Version>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private closed = false;
  /** Attach aliases are instance-wide: several stores in one process (a worker and the query API in tests) never share one. */
  private readonly aliasPrefix = `dim_${randomBytes(4).toString('hex')}`;
  private readonly folder: string;

  constructor(private readonly o: DimensionStoreOptions) {
    this.folder = path.join(o.dir, o.table);
  }

  /** The version in use now (0: none). */
  get version(): number {
    return this.current?.manifest.version ?? 0;
  }

  /**
   * Starts polling and loads the current version (retrying a failing store a few times before it throws; polling goes
   * on either way). Call after openEngine().
   */
  async start(): Promise<void> {
    mkdirSync(this.folder, { recursive: true });
    if (this.o.pollMs > 0 && !this.timer) {
      this.timer = setInterval(() => {
        this.refresh().catch((err: unknown) =>
          this.o.log.warn({ table: this.o.table, err: errorMessage(err) }, 'dimension table poll failed; keeping the version in use'),
        );
      }, this.o.pollMs);
      this.timer.unref();
    }
    await withRetry(() => this.refresh(), RETRY.slowCheck);
    if (!this.current)
      this.o.log.warn({ table: this.o.table }, 'no dimension table loaded yet (sluice dimensions load): batches get no attributes until one is');
  }

  /** The current version, held until release(); every call must be paired with one release(). */
  acquire(): DimensionLease {
    const v = this.current;
    if (!v) return { version: 0, attributes: [], relation: undefined, release: () => undefined };
    v.leases++;
    let released = false;
    return {
      version: v.manifest.version,
      attributes: v.manifest.attributes,
      relation: `${sqlIdent(v.alias)}.main.${sqlIdent(DIMENSION_RELATION)}`,
      release: () => {
        if (released) return;
        released = true;
        v.leases--;
        if (v.retired && v.leases === 0) void this.drop(v);
      },
    };
  }

  /** Reads the pointer once and swaps in a new version when it names one; concurrent calls share one run. */
  refresh(): Promise<void> {
    this.refreshing ??= this.refreshOnce().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async refreshOnce(): Promise<void> {
    if (this.closed) return;
    const m = await readCurrentVersion(this.o.s3, this.o.bucket, this.o.table);
    if (!m || m.version === this.current?.manifest.version) return;
    const file = await this.build(m);
    const alias = `${this.aliasPrefix}_v${m.version}`;
    await withConnection((c) => c.run(`ATTACH ${sqlString(file)} AS ${sqlIdent(alias)} (READ_ONLY)`));
    if (this.closed) {
      await withConnection((c) => c.run(`DETACH ${sqlIdent(alias)}`));
      return;
    }
    const old = this.current;
    this.current = { manifest: m, alias, file, leases: 0, retired: false };
    this.o.log.info(
      { table: this.o.table, version: m.version, rows: m.rows, attributes: m.attributes, previous: old?.manifest.version ?? 0 },
      'dimension table version in use',
    );
    if (old) this.retire(old);
    this.removeLeftovers(m.version);
  }

  /** The database file of version m: reused when a complete one is on disk, else downloaded and built. */
  private async build(m: DimensionManifest): Promise<string> {
    const file = path.join(this.folder, `v${m.version}.duckdb`);
    if (existsSync(file)) return file;
    const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
    const parquet = path.join(this.folder, `v${m.version}.${tag}.parquet.tmp`);
    const build = path.join(this.folder, `v${m.version}.${tag}.duckdb.tmp`);
    const alias = `${this.aliasPrefix}_build_${m.version}`;
    try {
      await downloadVersion(this.o.s3, this.o.bucket, m, parquet);
      const c = await connect();
      try {
        await c.run(`ATTACH ${sqlString(build)} AS ${sqlIdent(alias)}`);
        try {
          // Version files are sorted by entity id (the loader writes them so) and copied in file order: row groups' min/max
          // let point lookups skip most of the file, and no sort has to fit in the engine's memory.
          await c.run(`CREATE TABLE ${sqlIdent(alias)}.main.${sqlIdent(DIMENSION_RELATION)} AS SELECT * FROM read_parquet(${sqlString(parquet)})`);
          await c.run(`CHECKPOINT ${sqlIdent(alias)}`);
        } finally {
          await c.run(`DETACH ${sqlIdent(alias)}`);
        }
      } finally {
        c.closeSync();
      }
      await rename(build, file);
      return file;
    } finally {
      await Promise.all([rm(parquet, { force: true }), rm(build, { force: true }), rm(`${build}.wal`, { force: true })]);
    }
  }

  private retire(v: Version): void {
    v.retired = true;
    if (v.leases === 0) void this.drop(v);
    else this.retired.add(v);
  }

  private async drop(v: Version): Promise<void> {
    this.retired.delete(v);
    try {
      await withConnection((c) => c.run(`DETACH DATABASE IF EXISTS ${sqlIdent(v.alias)}`));
      await rm(v.file, { force: true });
    } catch (err) {
      this.o.log.warn({ table: this.o.table, version: v.manifest.version, err: errorMessage(err) }, 'could not drop an old dimension table version');
    }
  }

  /** Database files of other versions (a previous run's) and stale temporary files. */
  private removeLeftovers(keep: number): void {
    for (const name of readdirSync(this.folder)) {
      const f = path.join(this.folder, name);
      const m = /^v(\d+)\.duckdb$/.exec(name);
      const inUse = [...this.retired].some((v) => v.file === f) || this.current?.file === f;
      try {
        if (m && Number(m[1]) !== keep && !inUse) rmSync(f, { force: true });
        else if (name.endsWith('.tmp') && Date.now() - statSync(f).mtimeMs > STALE_TEMP_MS) rmSync(f, { force: true });
      } catch {
        // another process removed it first
      }
    }
  }

  /**
   * The value of `attribute` for each of `entityIds` that has one (one engine query over the ids; unknown entities
   * and empty values are left out). Used by the query API to filter top-K candidates.
   */
  async valuesOf(attribute: string, entityIds: readonly string[]): Promise<{ version: number; values: Map<string, string> }> {
    const lease = this.acquire();
    try {
      const values = new Map<string, string>();
      if (!lease.relation || !lease.attributes.includes(attribute) || entityIds.length === 0) return { version: lease.version, values };
      await withConnection(async (c) => {
        await c.run('CREATE OR REPLACE TEMP TABLE lookup_ids (entity_id VARCHAR)');
        const app = await c.createAppender('lookup_ids', 'main', 'temp');
        for (const id of entityIds) {
          app.appendVarchar(id);
          app.endRow();
        }
        app.closeSync();
        const [ids = [], vals = []] = (
          await c.runAndReadAll(
            `SELECT d.entity_id, d.${sqlIdent(attribute)} FROM lookup_ids l JOIN ${lease.relation} d ON d.entity_id = l.entity_id WHERE d.${sqlIdent(attribute)} IS NOT NULL`,
          )
        ).getColumnsJS() as [string[], string[]];
        for (let i = 0; i < ids.length; i++) values.set(ids[i]!, vals[i]!);
      });
      return { version: lease.version, values };
    } finally {
      lease.release();
    }
  }

  /** Stops polling and detaches every version (leases still held keep theirs until released). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.refreshing?.catch(() => undefined);
    const cur = this.current;
    this.current = undefined;
    if (cur) this.retire(cur);
  }
}
