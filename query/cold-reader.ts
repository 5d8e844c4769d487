// Reads hourly and daily rollups from the cold bucket for ranges older than InfluxDB keeps them: lists the
// rollup files (listing cached briefly), downloads each once per version (etag) into a local cache folder,
// and queries them with the Parquet engine. Files are rewritten by the rollup job, so a new etag re-downloads.
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { ColdObject, ColdStorage } from '../shared/clients/cold-storage.js';
import { coldFileStart, parseRollupKey, rollupPrefix, type RollupResolution, type RollupRow } from '../shared/contracts/cold-layout.js';
import { openEngine } from '../shared/parquet.js';
import { readRollups } from './cold-parquet.js';

/** How long a listing of the cold rollups is trusted before it is listed again. */
export const COLD_LISTING_TTL_MS = 60_000;
/** Downloads in parallel for one answer. */
const DOWNLOAD_CONCURRENCY = 8;

/** Where one kind of cold rollup files lives and how its rows of one series are read: the entity rollups by default. */
export interface ColdRollupLayout<K, R> {
  prefix(res: RollupResolution): string;
  parse(key: string): { res: RollupResolution; startMs: number } | undefined;
  read(files: readonly string[], q: K & { fromMs: number; toMs: number }): Promise<R[]>;
}

type EntityQuery = { entityId: string; eventType: string };

/** The local copy of one version (etag) of a cold file. */
interface LocalCopy {
  etag: string;
  file: Promise<string>;
  /** Reads of rows() holding this copy now: a replaced copy's file is removed once the last of them has ended. */
  readers: number;
  replaced: boolean;
}

/** The entity rollups (contracts/cold-layout.ts). */
export const ENTITY_ROLLUPS: ColdRollupLayout<EntityQuery, RollupRow> = { prefix: rollupPrefix, parse: parseRollupKey, read: readRollups };

export class ColdRollupReader<K = EntityQuery, R = RollupRow> {
  private readonly listings = new Map<RollupResolution, { at: number; objects: Promise<ColdObject[]> }>();
  /** key → local copy of the version with that etag. */
  private readonly local = new Map<string, LocalCopy>();
  private engine: Promise<unknown> | undefined;

  constructor(
    private readonly cold: ColdStorage,
    private readonly cacheDir: string,
    private readonly now: () => number = Date.now,
    private readonly layout: ColdRollupLayout<K, R> = ENTITY_ROLLUPS as unknown as ColdRollupLayout<K, R>,
  ) {
    mkdirSync(cacheDir, { recursive: true });
  }

  private listing(res: RollupResolution): Promise<ColdObject[]> {
    const cached = this.listings.get(res);
    if (cached && this.now() - cached.at < COLD_LISTING_TTL_MS) return cached.objects;
    const objects = this.cold.list(this.layout.prefix(res));
    objects.catch(() => this.listings.delete(res));
    this.listings.set(res, { at: this.now(), objects });
    return objects;
  }

  /** The local copy of `o`'s version, downloaded once; the copy it replaces is removed once no read holds it. */
  private fetch(o: ColdObject): LocalCopy {
    const have = this.local.get(o.key);
    if (have && have.etag === o.etag) return have;
    const file = path.join(this.cacheDir, `${o.key.replaceAll('/', '_')}-${o.etag.replace(/[^A-Za-z0-9]/g, '')}.parquet`);
    const p = this.cold.getToFile(o.key, file).then(() => {
      if (have) {
        have.replaced = true;
        if (have.readers === 0) removeCopy(have);
      }
      return file;
    });
    const copy: LocalCopy = { etag: o.etag, file: p, readers: 0, replaced: false };
    // A failed download is not kept (the next read tries again); the copy it was to replace stays the key's, so its
    // file is removed when a later download does replace it, not left behind in the cache folder.
    p.catch(() => {
      if (this.local.get(o.key) !== copy) return;
      if (have) this.local.set(o.key, have);
      else this.local.delete(o.key);
    });
    this.local.set(o.key, copy);
    return copy;
  }

  /** Rollup rows of one series whose period starts in [fromMs, toMs). */
  async rows(res: RollupResolution, q: K & { fromMs: number; toMs: number }): Promise<R[]> {
    if (q.toMs <= q.fromMs) return [];
    const first = coldFileStart(res, q.fromMs);
    const wanted = (await this.listing(res)).filter((o) => {
      const k = this.layout.parse(o.key);
      return k !== undefined && k.res === res && k.startMs >= first && k.startMs < q.toMs;
    });
    if (!wanted.length) return [];
    this.engine ??= openEngine({ tempDir: path.join(this.cacheDir, 'duckdb-tmp'), memoryLimit: '256MB' });
    await this.engine;
    // Every copy is held from the moment it is chosen until the engine has read it: a newer version downloaded
    // meanwhile (another request, after the listing expired) must not remove a file this read is about to open.
    const held: LocalCopy[] = [];
    try {
      const files: string[] = [];
      for (let i = 0; i < wanted.length; i += DOWNLOAD_CONCURRENCY) {
        const copies = wanted.slice(i, i + DOWNLOAD_CONCURRENCY).map((o) => this.fetch(o));
        for (const c of copies) c.readers++;
        held.push(...copies);
        files.push(...(await Promise.all(copies.map((c) => c.file))));
      }
      return await this.layout.read(files, q);
    } finally {
      for (const c of held) if (--c.readers === 0 && c.replaced) removeCopy(c);
    }
  }
}

/** Removes the file of a copy replaced by a newer version. */
function removeCopy(c: LocalCopy): void {
  void c.file.then(
    (f) => rmSync(f, { force: true }),
    () => undefined,
  );
}
