// WAL segments of the default SLUICE_FLUSH_MAX_BYTES (128 MiB of realistic events) convert to Parquet under ingest's
// own engine settings (INGEST_ENGINE: 128 MB, one thread), also SLUICE_UPLOAD_CONCURRENCY of them at once as delivery
// runs them: before the fix two such conversions side by side failed with DuckDB "Out of Memory", so a large segment
// was retried forever. No services: the engine only.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { eventFactory } from '../../bench/lib/workload.js';
import { INGEST_ENGINE, writeEventBatches } from '../../ingest/parquet-batch-writer.js';
import { loadConfig } from '../../shared/config.js';
import { encodeEventLine } from '../../shared/contracts/event-line.js';
import { openEngine, parquetFiles, queryParquet } from '../../shared/parquet.js';

const defaults = loadConfig({});
const dir = mkdtempSync(path.join(os.tmpdir(), 'large-segment-'));
const baseMs = Date.UTC(2026, 5, 1, 10, 20);
/** The ingest pod's memory limit (deploy/k8s/ingest.yaml). */
const INGEST_MEMORY_LIMIT = 1024 * 1024 * 1024;

/** Writes realistic staged lines (Zipf entities, type mix, dims, 3 event-time hours) until the file holds `bytes`. */
async function writeSegment(file: string, bytes: number): Promise<number> {
  const next = eventFactory({ entities: 100_000, skew: 1.1, seed: 11, spreadMs: 3 * 3_600_000, baseMs });
  const countries = ['US', 'DE', 'FR', 'BR', 'IN', 'JP'];
  const out = createWriteStream(file);
  let written = 0;
  let lines = 0;
  while (written < bytes) {
    const e = next('3f2b9c1e-7d4a-4b8e-9c51');
    const line = encodeEventLine(
      { ...e, dims: lines % 4 === 0 ? null : { country: countries[lines % 6]!, device: 'ios' } },
      baseMs + 4 * 3_600_000,
      'checkout-web',
    );
    if (written + line.length > bytes) break;
    written += line.length;
    lines++;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return lines;
}

let lines = 0;
const segments: string[] = [];

beforeAll(async () => {
  await openEngine({ tempDir: path.join(dir, 'duckdb-tmp'), ...INGEST_ENGINE });
  segments.push(path.join(dir, 'segment-0.ndjson'));
  lines = await writeSegment(segments[0]!, defaults.SLUICE_FLUSH_MAX_BYTES);
  for (let i = 1; i < defaults.SLUICE_UPLOAD_CONCURRENCY; i++) {
    segments.push(path.join(dir, `segment-${i}.ndjson`));
    copyFileSync(segments[0]!, segments[i]!);
  }
}, 300_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('large WAL segments', () => {
  it('convert at the default SLUICE_FLUSH_MAX_BYTES, SLUICE_UPLOAD_CONCURRENCY at once, within the engine limit', async () => {
    expect(defaults.SLUICE_FLUSH_MAX_BYTES).toBe(128 * 1024 * 1024);
    let peakRss = process.memoryUsage().rss;
    const sample = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 25);
    const t0 = performance.now();
    try {
      const results = await Promise.all(segments.map((s, i) => writeEventBatches([s], path.join(dir, `out-${i}`))));
      const seconds = (performance.now() - t0) / 1000;
      console.info(
        `${segments.length} × ${lines} lines (${defaults.SLUICE_FLUSH_MAX_BYTES / 1048576} MiB) converted in ${seconds.toFixed(1)}s, peak RSS ${(peakRss / 1048576).toFixed(0)} MiB`,
      );
      for (const written of results) {
        expect(written.map((w) => w.partition.hour)).toEqual(['10', '11', '12', '13']);
        expect(written.reduce((n, w) => n + w.eventCount, 0)).toBe(lines);
        const [r] = await queryParquet(
          `SELECT count(*)::DOUBLE AS n, count(DISTINCT event_id)::DOUBLE AS ids FROM read_parquet(${parquetFiles(written.map((w) => w.file))})`,
        );
        expect(r).toEqual({ n: lines, ids: lines });
      }
    } finally {
      clearInterval(sample);
    }
    expect(peakRss).toBeLessThan(INGEST_MEMORY_LIMIT);
  }, 300_000);
});
