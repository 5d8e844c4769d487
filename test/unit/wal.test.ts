import { describe, expect, it } from 'vitest';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WriteAheadLog } from '../../ingest/wal.js';
import { cutTornTail, type Segment } from '../../ingest/wal-segments.js';

function wal(overrides: Partial<ConstructorParameters<typeof WriteAheadLog>[0]> = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wal-'));
  const sealed: Segment[] = [];
  const commits: number[] = [];
  const w = new WriteAheadLog({
    dir,
    maxEvents: 1_000,
    maxBytes: 1 << 20,
    maxAgeMs: 60_000,
    fsync: true,
    onSealed: (s) => sealed.push(s),
    onCommit: (c) => commits.push(c.requests),
    ...overrides,
  });
  return { w, dir, sealed, commits };
}

describe('write-ahead log', () => {
  it('group-commits concurrent appends and keeps every line', async () => {
    const { w, sealed, commits } = wal();
    await Promise.all(Array.from({ length: 200 }, (_, i) => w.append(`{"i":"${i}"}\n`, 1)));
    expect(commits.reduce((a, b) => a + b, 0)).toBe(200);
    expect(commits.length).toBeLessThan(200); // many requests shared an fsync
    await w.close();
    expect(sealed).toHaveLength(1);
    expect(sealed[0]!.events).toBe(200);
    expect(readFileSync(sealed[0]!.path, 'utf8').trim().split('\n')).toHaveLength(200);
  });

  it('seals on max events and max bytes', async () => {
    const { w, sealed } = wal({ maxEvents: 10, maxBytes: 1 << 20 });
    for (let i = 0; i < 25; i++) await w.append('{"x":1}\n', 1);
    expect(sealed.map((s) => s.events)).toEqual([10, 10]);
    await w.close();
    expect(sealed.map((s) => s.events)).toEqual([10, 10, 5]);
    const b = wal({ maxEvents: 1_000, maxBytes: 100 });
    for (let i = 0; i < 30; i++) await b.w.append('{"x":"0123456789"}\n', 1);
    await b.w.close();
    expect(b.sealed.reduce((n, s) => n + s.events, 0)).toBe(30);
    expect(b.sealed.length).toBe(5);
    for (const s of b.sealed) expect(s.bytes).toBeGreaterThanOrEqual(100);
  });

  it('seals on age even when traffic stops (an idle segment is still flushed)', async () => {
    const { w, sealed } = wal({ maxAgeMs: 200 });
    await w.append('{"x":1}\n', 1);
    await new Promise((r) => setTimeout(r, 600));
    expect(sealed).toHaveLength(1);
    await w.close();
  });

  it('recovers leftover segments, cutting a torn tail and dropping empty files', async () => {
    const { dir } = wal();
    writeFileSync(path.join(dir, '1764067200000_000001.ndjson'), '{"a":1}\n{"a":2}\n{"a":');
    writeFileSync(path.join(dir, '1764067200001_000002.ndjson'), '');
    writeFileSync(path.join(dir, '1764067200002_000003.ndjson'), '{"a":3');
    const { w } = { w: new WriteAheadLog({ dir, maxEvents: 10, maxBytes: 1 << 20, maxAgeMs: 60_000, fsync: true, onSealed: () => undefined }) };
    const rec = w.recover();
    expect(rec.map((s) => [s.id, s.events])).toEqual([['1764067200000_000001', 2]]);
    expect(readFileSync(rec[0]!.path, 'utf8')).toBe('{"a":1}\n{"a":2}\n');
    expect(readdirSync(dir)).toEqual(['1764067200000_000001.ndjson']);
    // New segments continue the sequence after recovered ones.
    await w.append('{"a":4}\n', 1);
    await w.close();
    expect(readdirSync(dir).sort()[1]).toMatch(/_000004\.ndjson$/);
  });

  it('removes a segment file only on release, and only its own files', async () => {
    const { w, dir, sealed } = wal();
    await w.append('{"a":1}\n', 1);
    await w.close();
    expect(readdirSync(dir)).toEqual([path.basename(sealed[0]!.path)]); // sealed and handed over, still on disk
    const stranger = path.join(mkdtempSync(path.join(os.tmpdir(), 'not-wal-')), '1764067200000_000001.ndjson');
    writeFileSync(stranger, '{"a":2}\n');
    expect(() => w.release({ ...sealed[0]!, path: stranger })).toThrow(/is not a file of the WAL in .*it was not removed/);
    expect(existsSync(stranger)).toBe(true);
    w.release(sealed[0]!);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('cutTornTail keeps a file that ends with a newline', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'wal-'));
    const f = path.join(dir, 'x');
    writeFileSync(f, '{"a":1}\n');
    expect(cutTornTail(f)).toBe(8);
    appendFileSync(f, 'partial');
    expect(cutTornTail(f)).toBe(8);
  });
});
