// The benchmarks' profile summary (bench/lib/cpu-profile.ts): self time per function and area from V8's samples,
// inclusive time counting a recursive function once per sample, a time window, and a clear error for other JSON.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type CpuProfile, readProfile, summarizeProfiles } from '../../bench/lib/cpu-profile.js';
import { PROJECT_ROOT } from '../../shared/config.js';

const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({
  id,
  callFrame: { functionName, url, lineNumber: 0 },
  children,
});
const ours = `file://${path.join(PROJECT_ROOT, '.data', 'bench-build', 'ingest', 'parse-body.js')}`;
// (root) → handle (ours) → handle (recursion) → JSON.parse-like native; plus fastify and idle.
const profile: CpuProfile = {
  nodes: [
    frame(1, '(root)', '', [2, 5, 6]),
    frame(2, 'handle', ours, [3]),
    frame(3, 'handle', ours, [4]),
    frame(4, 'parse', ''),
    frame(5, 'route', `file://${PROJECT_ROOT}/node_modules/fastify/lib/route.js`),
    frame(6, '(idle)', ''),
  ],
  startTime: 0,
  endTime: 0,
  // Each sample lasts until the next one (the last one has no length): 4 → 30 ms, 3 → 10, 5 → 20, 6 → 40.
  samples: [4, 3, 5, 6, 4],
  timeDeltas: [0, 30_000, 10_000, 20_000, 40_000],
};

describe('cpu profile summary', () => {
  it('sums self time by function, file and area, and inclusive time once per sample', () => {
    const s = summarizeProfiles([profile]);
    expect(s.totalMs).toBe(100);
    expect(s.idleMs).toBe(40);
    const ms = (rows: { name: string; ms: number }[], name: string) => rows.find((r) => r.name.startsWith(name))?.ms;
    expect(s.areas.map((r) => r.name)).toEqual(['(native)', 'fastify', 'ingest/']);
    expect(ms(s.files, 'ingest/parse-body.js')).toBe(10);
    // handle: its own 10 ms plus parse's 30 ms below it, not 30 twice for the recursion.
    expect(s.inclusive.find((r) => r.name === 'handle ingest/parse-body.js:1')?.ms).toBe(40);
    expect(s.functions[0]).toMatchObject({ name: 'parse', pct: 50 });
  });

  it('keeps only the samples of a window', () => {
    const s = summarizeProfiles([profile], { fromS: 0.025, toS: 0.045 });
    expect(s.totalMs).toBe(30); // the samples at 30 ms (10 ms long) and 40 ms (20 ms long)
  });

  it('refuses a file that is not a CPU profile, naming it', () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'cpu-profile-')), 'x.cpuprofile');
    writeFileSync(file, JSON.stringify({ nodes: [] }));
    expect(() => readProfile(file)).toThrow(/x\.cpuprofile is not a V8 CPU profile/);
  });
});
