// Where a process's time went, from the .cpuprofile files `node --cpu-prof` writes (BENCH_CPU_PROF, bench/lib/processes.ts):
// self time summed by function, by file and by area (our folders, each package, Node's internals, GC, idle), plus the
// inclusive time of functions (self + everything they called, recursion counted once). Several files are summed (the
// processes of `sluice ingest --processes N`). Run: node .data/bench-build/bench/lib/cpu-profile.js <files or folders>
// [--top N] [--from S] [--to S] (seconds from each profile's start: leave out start-up or shutdown).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROJECT_ROOT } from '../../shared/config.js';

/** The parts of V8's CPU profile format this reads. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  startTime: number;
  endTime: number;
  samples: number[];
  /** Microseconds before each sample (the first one from startTime). */
  timeDeltas: number[];
}

export interface ProfileRow {
  name: string;
  ms: number;
  /** Share of the non-idle time. */
  pct: number;
}

export interface ProfileSummary {
  /** Sampled time in the window, idle included. */
  totalMs: number;
  idleMs: number;
  /** Self time by function (`name file:line`). */
  functions: ProfileRow[];
  /** Self + callees' time by function, each sample counted once per function on its stack. */
  inclusive: ProfileRow[];
  files: ProfileRow[];
  areas: ProfileRow[];
}

/** A file's name as a reader looks for it: repository-relative for our code (source maps aside, built = source layout). */
function fileOf(url: string): string {
  if (url === '') return '';
  if (url.startsWith('node:')) return url;
  const file = url.startsWith('file://') ? fileURLToPath(url) : url;
  const rel = path.relative(PROJECT_ROOT, file);
  return rel.startsWith('..') ? file : rel.replace(/^\.data\/[^/]*build[^/]*\//, '').replace(/^dist\//, '');
}

/** The area of a frame: GC / idle / program, node internals, a package, or our top folder (ingest/, shared/, …). */
function areaOf(functionName: string, file: string): string {
  if (file === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (file.startsWith('node:')) return 'node internals';
  const nm = file.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const parts = file.slice(nm + 'node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  return file.includes('/') ? `${file.split('/')[0]}/` : file;
}

const IDLE = '(idle)';

/**
 * Sums one or more profiles. `fromS`/`toS` keep only samples taken within that window, in seconds from each profile's
 * first sample.
 */
export function summarizeProfiles(profiles: readonly CpuProfile[], window: { fromS?: number; toS?: number } = {}): ProfileSummary {
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const files = new Map<string, number>();
  const areas = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  const add = (m: Map<string, number>, k: string, us: number) => m.set(k, (m.get(k) ?? 0) + us);
  for (const p of profiles) {
    // Self time of each node in the window; a sample's time is the delta to the next one (V8's own attribution).
    const nodeUs = new Map<number, number>();
    let t = 0;
    const from = (window.fromS ?? 0) * 1e6;
    const to = (window.toS ?? Number.POSITIVE_INFINITY) * 1e6;
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i] ?? 0;
      const dt = p.timeDeltas[i + 1] ?? 0;
      if (t < from || t > to || dt <= 0) continue;
      nodeUs.set(p.samples[i]!, (nodeUs.get(p.samples[i]!) ?? 0) + dt);
    }
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const keyOf = (id: number) => {
      const f = byId.get(id)!.callFrame;
      const file = fileOf(f.url);
      return {
        fn: `${f.functionName || '(anonymous)'}${file ? ` ${file}:${f.lineNumber + 1}` : ''}`,
        file,
        area: areaOf(f.functionName, file),
        name: f.functionName,
      };
    };
    for (const [id, us] of nodeUs) {
      const k = keyOf(id);
      totalUs += us;
      if (k.name === IDLE) {
        idleUs += us;
        continue;
      }
      add(self, k.fn, us);
      add(files, k.file || k.area, us);
      add(areas, k.area, us);
      const seen = new Set<string>();
      for (let a: number | undefined = id; a !== undefined; a = parent.get(a)) {
        const fn = keyOf(a).fn;
        if (seen.has(fn) || fn === '(root)') continue;
        seen.add(fn);
        add(incl, fn, us);
      }
    }
  }
  const busy = Math.max(1, totalUs - idleUs);
  const rows = (m: Map<string, number>) =>
    [...m].map(([name, us]) => ({ name, ms: +(us / 1000).toFixed(1), pct: +((100 * us) / busy).toFixed(1) })).sort((a, b) => b.ms - a.ms);
  return {
    totalMs: +(totalUs / 1000).toFixed(1),
    idleMs: +(idleUs / 1000).toFixed(1),
    functions: rows(self),
    inclusive: rows(incl),
    files: rows(files),
    areas: rows(areas),
  };
}

/** The .cpuprofile files among `paths` (folders are listed, not recursed). */
export function profileFiles(paths: readonly string[]): string[] {
  return paths.flatMap((p) =>
    statSync(p).isDirectory()
      ? readdirSync(p)
          .filter((f) => f.endsWith('.cpuprofile'))
          .sort()
          .map((f) => path.join(p, f))
      : [p],
  );
}

export function readProfile(file: string): CpuProfile {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  if (!Array.isArray(p.nodes) || !Array.isArray(p.samples) || !Array.isArray(p.timeDeltas))
    throw new Error(`${file} is not a V8 CPU profile (.cpuprofile from node --cpu-prof): it lacks nodes, samples or timeDeltas`);
  return p;
}

/** The summary as text tables, `top` rows each. */
export function formatSummary(s: ProfileSummary, top = 25): string {
  const table = (title: string, rows: ProfileRow[]) =>
    [`${title}`, ...rows.slice(0, top).map((r) => `${r.pct.toFixed(1).padStart(6)} %  ${r.ms.toFixed(0).padStart(8)} ms  ${r.name}`)].join('\n');
  return [
    `sampled ${(s.totalMs / 1000).toFixed(2)} s, idle ${(s.idleMs / 1000).toFixed(2)} s, busy ${((s.totalMs - s.idleMs) / 1000).toFixed(2)} s (shares below are of busy time)`,
    table('\nby area (self time)', s.areas),
    table('\nby file (self time)', s.files),
    table('\nby function (self time)', s.functions),
    table('\nby function (inclusive: self + callees)', s.inclusive),
  ].join('\n');
}

function main(argv: string[]): void {
  const paths: string[] = [];
  let top = 25;
  const window: { fromS?: number; toS?: number } = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const num = (flag: string) => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < 0) throw new Error(`${flag} needs a number of seconds (or rows) ≥ 0, got ${JSON.stringify(argv[i])}`);
      return v;
    };
    if (a === '--top') top = num(a);
    else if (a === '--from') window.fromS = num(a);
    else if (a === '--to') window.toS = num(a);
    else paths.push(a);
  }
  const files = profileFiles(paths);
  if (!files.length) {
    process.stderr.write('usage: cpu-profile <.cpuprofile files or folders> [--top N] [--from S] [--to S]\n');
    process.exit(2);
  }
  process.stdout.write(`${files.length} profile(s): ${files.map((f) => path.basename(f)).join(', ')}\n`);
  process.stdout.write(`${formatSummary(summarizeProfiles(files.map(readProfile), window), top)}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
