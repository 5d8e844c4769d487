// The engine's spill folder (shared/parquet.ts engineSpillDir): processes given the same temp folder — a fleet's
// workers, a worker and a job of one SLUICE_DATA_DIR — spill at once and each reads back its own data; folders left by
// ended processes of this host are removed, the others kept.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { engineSpillDir, openEngine, queryParquet } from '../../shared/parquet.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'engine-spill-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A sort larger than the children's memory limit (it spills), with an answer that depends on every row's place. */
const SPILLING_SQL =
  'SELECT count(*)::DOUBLE AS n, sum(rn * (i % 1000))::DOUBLE AS s FROM (SELECT i, row_number() OVER (ORDER BY md5(i::VARCHAR)) AS rn FROM range(1000000) t(i))';
const RUNS = 2;

/** A process that opens the engine on `tempDir` with little memory and prints the answer of RUNS spilling sorts. */
function spillingProcess(tempDir: string): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  const script = `
    const { openEngine, queryParquet } = await import(${JSON.stringify(path.join(root, 'shared/parquet.ts'))});
    await openEngine({ tempDir: ${JSON.stringify(tempDir)}, memoryLimit: '32MB', threads: 1 });
    for (let k = 0; k < ${RUNS}; k++) console.log(JSON.stringify((await queryParquet(${JSON.stringify(SPILLING_SQL)}))[0]));`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b));
  child.stderr.on('data', (b: Buffer) => (err += b));
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, out, err })));
}

describe('engine spill folder', () => {
  it('lets two processes spill into the same temp folder at once, each reading back its own data', async () => {
    await openEngine({ tempDir: path.join(dir, 'parent') });
    const [expected] = await queryParquet(SPILLING_SQL); // in this process's memory: no spill
    const shared = path.join(dir, 'shared');
    const results = await Promise.all([spillingProcess(shared), spillingProcess(shared)]);
    for (const r of results) {
      expect({ code: r.code, signal: r.signal }, r.err).toEqual({ code: 0, signal: null });
      expect(
        r.out
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l)),
      ).toEqual(Array.from({ length: RUNS }, () => expected));
    }
    // Each spilled into a folder of its own, which it left empty.
    const folders = readdirSync(shared);
    expect(folders).toHaveLength(2);
    for (const f of folders) expect(readdirSync(path.join(shared, f))).toEqual([]);
  });

  it("removes the folders of this host's ended processes, keeps those of running processes and other hosts", () => {
    const tempDir = path.join(dir, 'cleanup');
    const own = engineSpillDir(tempDir);
    const host = path.basename(own).slice(0, -`-${process.pid}`.length);
    expect(path.basename(own)).toBe(`${host}-${process.pid}`);
    writeFileSync(path.join(own, 'duckdb_temp_storage_DEFAULT-0.tmp'), 'spilled by this process');
    const ended = spawnSync(process.execPath, ['-e', '']).pid;
    const folder = (name: string) => {
      mkdirSync(path.join(tempDir, name), { recursive: true });
      writeFileSync(path.join(tempDir, name, 'duckdb_temp_storage_S64K-0.tmp'), 'spilled');
      return path.join(tempDir, name);
    };
    const endedHere = folder(`${host}-${ended}`);
    const runningHere = folder(`${host}-${process.ppid}`);
    const otherHost = folder(`${host}x-${ended}`);
    const notOurs = folder('notes');

    expect(engineSpillDir(tempDir)).toBe(own);
    expect(existsSync(endedHere)).toBe(false);
    for (const kept of [runningHere, otherHost, notOurs]) expect(readdirSync(kept)).toEqual(['duckdb_temp_storage_S64K-0.tmp']);
    expect(readdirSync(own)).toEqual(['duckdb_temp_storage_DEFAULT-0.tmp']);
  });
});
