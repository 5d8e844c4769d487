// Disk pressure on the WAL: past SLUICE_WAL_MAX_BYTES (S3 and SQS down, so nothing is released) and on a full disk
// (a 2 MiB tmpfs, where the machine allows mounting one) ingest answers 503 + Retry-After, never 202 for an event it
// did not fsync, keeps what it acknowledged, and takes traffic again by itself once space returns. Afterwards every
// acknowledged event is in the archive exactly once and no refused one is.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { createLogger } from '../../shared/logger.js';
import { PROJECT_ROOT } from '../../shared/config.js';
import { startIngest } from '../../ingest/main.js';
import { waitUntil } from '../support/batches.js';
import { archiveEventIdCounts } from '../support/archive.js';
import { testConfig } from '../support/config.js';
import { TEST_ENDPOINTS } from '../support/endpoints.js';
import { startAwsProxy } from '../support/aws-proxy.js';

let batch = 0;
/** Posts 100 events; returns the status, Retry-After, error text and the ids sent. */
async function post(url: string) {
  const now = Date.now();
  const ids = Array.from({ length: 100 }, (_, i) => `b${batch}-${i}`);
  batch++;
  const body = ids.map((id, i) => ({ eventId: id, entityId: `entity-${i % 7}`, eventType: 'view', timestamp: now - (i % 3) * 60_000, value: i }));
  const r = await fetch(`${url}/v1/events`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  const json = (await r.json()) as { error?: string };
  return { status: r.status, retryAfter: r.headers.get('retry-after'), error: json.error, ids };
}

/** Acknowledged ids appear once, refused ones never. */
function expectExactlyAcknowledged(counts: Map<string, number>, acked: string[], refused: string[]) {
  expect(acked.filter((id) => counts.get(id) !== 1)).toEqual([]);
  expect(refused.filter((id) => counts.has(id))).toEqual([]);
  expect(counts.size).toBe(acked.length);
}

/** Whether this machine lets the test mount a tmpfs (root in a privileged environment); why not otherwise. */
function mountProbe(): string | undefined {
  const dir = path.join(PROJECT_ROOT, '.data', 'tests', `mount-probe-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'pipe' });
    execFileSync('umount', [dir], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return String((err as { stderr?: Buffer }).stderr ?? err).trim() || 'mount failed';
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const cannotMount = mountProbe();
const mounted: string[] = [];
afterAll(() => {
  for (const m of mounted) execFileSync('umount', ['-l', m], { stdio: 'pipe' });
});

describe('WAL under disk pressure', () => {
  it('answers 503 + Retry-After past SLUICE_WAL_MAX_BYTES, loses nothing acknowledged, and recovers when delivery frees space', async () => {
    const proxy = await startAwsProxy(TEST_ENDPOINTS.awsEndpoint);
    const cfg = await testConfig({ AWS_ENDPOINT_URL: proxy.url, SLUICE_WAL_MAX_BYTES: '96KiB', SLUICE_FLUSH_MAX_AGE: '200ms' });
    const node = await startIngest(cfg, createLogger('wal-cap', 'silent'));
    const acked: string[] = [];
    const refused: string[] = [];
    try {
      proxy.mode = 'all-down'; // nothing is delivered, so nothing is released
      let r = await post(node.url);
      for (let i = 0; i < 200 && r.status === 202; i++) {
        acked.push(...r.ids);
        r = await post(node.url);
      }
      expect(r.status).toBe(503);
      expect(r.retryAfter).toBe('2');
      expect(r.error).toMatch(/SLUICE_WAL_MAX_BYTES=98304/);
      refused.push(...r.ids);
      expect(acked.length).toBeGreaterThan(0);
      expect(node.wal.bytesOnDisk).toBeLessThanOrEqual(96 * 1024);

      proxy.mode = 'up';
      await waitUntil(
        'ingest takes traffic again',
        async () => {
          const again = await post(node.url);
          (again.status === 202 ? acked : refused).push(...again.ids);
          return again.status === 202;
        },
        60_000,
      );
    } finally {
      proxy.mode = 'up'; // a failed assertion must not leave the close waiting for S3
      await node.close();
      await proxy.close();
    }
    expectExactlyAcknowledged(await archiveEventIdCounts({ ...cfg, AWS_ENDPOINT_URL: TEST_ENDPOINTS.awsEndpoint }), acked, refused);
  }, 120_000);

  it.skipIf(cannotMount !== undefined)(
    `answers 503 + Retry-After on a full disk (ENOSPC) and recovers when space returns${cannotMount ? ` — skipped: cannot mount a tmpfs here (${cannotMount})` : ''}`,
    async () => {
      const base = await testConfig();
      const dataDir = path.join(base.SLUICE_DATA_DIR, 'small-disk');
      mkdirSync(dataDir, { recursive: true });
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dataDir]);
      mounted.push(dataDir);
      const cfg = { ...base, SLUICE_DATA_DIR: dataDir, SLUICE_FLUSH_MAX_AGE: 60_000 };
      const node = await startIngest(cfg, createLogger('wal-enospc', 'silent'));
      const acked: string[] = [];
      const refused: string[] = [];
      const filler = path.join(dataDir, 'filler');
      try {
        acked.push(...(await post(node.url)).ids);
        // Fill the disk to the last byte.
        const fd = openSync(filler, 'w');
        try {
          const chunk = Buffer.alloc(4096, 1);
          for (;;) writeSync(fd, chunk);
        } catch (err) {
          expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
        } finally {
          closeSync(fd);
        }
        const statuses: number[] = [];
        for (let i = 0; i < 5; i++) {
          const r = await post(node.url);
          statuses.push(r.status);
          if (r.status === 202) acked.push(...r.ids);
          else {
            expect(r.status).toBe(503);
            expect(r.retryAfter).toBe('2');
            refused.push(...r.ids);
          }
        }
        expect(statuses).toContain(503);
        rmSync(filler); // space returns
        await waitUntil(
          'ingest takes traffic again',
          async () => {
            const again = await post(node.url);
            (again.status === 202 ? acked : refused).push(...again.ids);
            return again.status === 202;
          },
          30_000,
        );
      } finally {
        rmSync(filler, { force: true });
        await node.close();
      }
      expectExactlyAcknowledged(await archiveEventIdCounts(base), acked, refused);
    },
    120_000,
  );
});
