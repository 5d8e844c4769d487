// The query API's cold rollup reader (query/cold-reader.ts) against the S3 emulator and the embedded engine: a read
// that has chosen a version of a file keeps it until the engine has read it, even when another request downloads
// a newer version of that file meanwhile; the replaced copy is removed afterwards.
import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { DAY_MS, HOUR_MS, type RollupRow, rollupKey } from '../../shared/contracts/cold-layout.js';
import { openEngine } from '../../shared/parquet.js';
import { COLD_LISTING_TTL_MS, ColdRollupReader, type ColdRollupLayout, ENTITY_ROLLUPS } from '../../query/cold-reader.js';
import { writeRollupFile } from '../../workers/cold/rollup-sql.js';
import { testConfig } from '../support/config.js';

type Q = { entityId: string; eventType: string };
const DAY0 = Math.floor(Date.now() / DAY_MS) * DAY_MS - 30 * DAY_MS;
const row = (count: number): RollupRow => ({ entityId: 'e-1', eventType: 'view', periodMs: DAY0 + HOUR_MS, count, sum: count, min: 1, max: 1 });
const q = { entityId: 'e-1', eventType: 'view', fromMs: DAY0, toMs: DAY0 + DAY_MS };

let cfg: Awaited<ReturnType<typeof testConfig>>;
let cold: ColdStorage;
let dir: string;

/** Uploads a rollup file of DAY0 whose one row counts `count`. */
async function upload(count: number): Promise<void> {
  const file = path.join(dir, `upload-${count}.parquet`);
  await writeRollupFile([row(count)], file);
  await cold.putFile(rollupKey('1h', DAY0), file);
}

beforeAll(async () => {
  cfg = await testConfig();
  dir = path.join(cfg.SLUICE_DATA_DIR, 'cold-reader-test');
  mkdirSync(dir, { recursive: true });
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  cold = new ColdStorage(cfg);
});

describe('cold rollup reader', () => {
  it('keeps the version a read chose until the engine has read it, while another request downloads the newer one', async () => {
    await upload(1);
    let now = 0;
    // The first read stops after its files are chosen and downloaded, before the engine opens them (as when other
    // downloads of the same answer are still running).
    let reached!: () => void;
    const atRead = new Promise<void>((r) => (reached = r));
    let go!: () => void;
    const gate = new Promise<void>((r) => (go = r));
    let reads = 0;
    const layout: ColdRollupLayout<Q, RollupRow> = {
      ...ENTITY_ROLLUPS,
      read: async (files, rq) => {
        if (reads++ === 0) {
          reached();
          await gate;
        }
        return ENTITY_ROLLUPS.read(files, rq);
      },
    };
    const cacheDir = path.join(dir, 'cache');
    const reader = new ColdRollupReader<Q, RollupRow>(cold, cacheDir, () => now, layout);

    const first = reader.rows('1h', q);
    await atRead;
    await upload(2);
    now += COLD_LISTING_TTL_MS + 1; // the listing expires: the next request sees the new version
    expect((await reader.rows('1h', q)).map((r) => r.count)).toEqual([2]);
    go();
    expect((await first).map((r) => r.count)).toEqual([1]);

    // The replaced copy is gone once its read ended; the current one stays cached.
    await new Promise((r) => setTimeout(r, 50));
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.parquet'))).toHaveLength(1);
    expect((await reader.rows('1h', q)).map((r) => r.count)).toEqual([2]);
  });

  it('keeps the old copy when the download of a newer version fails, and removes it once one succeeds', async () => {
    // Downloads fail while `failing` is set: what S3 answering 500, or a cut connection, does to one read.
    let failing = false;
    class FlakyCold extends ColdStorage {
      override getToFile(key: string, file: string): Promise<void> {
        return failing ? Promise.reject(new Error('injected download failure')) : super.getToFile(key, file);
      }
    }
    const flaky = new FlakyCold(cfg);
    let now = 0;
    const cacheDir = path.join(dir, 'cache-failing');
    const reader = new ColdRollupReader<Q, RollupRow>(flaky, cacheDir, () => now);
    const local = () => readdirSync(cacheDir).filter((f) => f.endsWith('.parquet'));
    await upload(3);
    expect((await reader.rows('1h', q)).map((r) => r.count)).toEqual([3]);
    await upload(4);
    now += COLD_LISTING_TTL_MS + 1;
    failing = true;
    await expect(reader.rows('1h', q)).rejects.toThrow('injected download failure');
    failing = false;
    expect((await reader.rows('1h', q)).map((r) => r.count)).toEqual([4]);
    await new Promise((r) => setTimeout(r, 50));
    expect(local()).toHaveLength(1); // the first version's file went with its replacement
  });
});
