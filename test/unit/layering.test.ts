// The folders are the architecture (docs/architecture.md): this test reads the imports of every .ts file and fails
// when an arrow points the wrong way — production code importing the dev stack, benchmarks or tests; shared/
// importing a service or the CLI; a service importing another — or when production code reads the environment
// anywhere but shared/config.ts.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../shared/config.js';

const SERVICES = ['ingest', 'workers', 'query'] as const;
const PRODUCTION = [...SERVICES, 'shared', 'cli'] as const;
const ALL_FOLDERS = [...PRODUCTION, 'localstack', 'bench', 'test'] as const;
type Folder = (typeof ALL_FOLDERS)[number];

/** What each folder may import (besides itself and packages). */
const MAY_IMPORT: Record<Folder, readonly Folder[]> = {
  shared: [],
  ingest: ['shared'],
  workers: ['shared'],
  query: ['shared'],
  cli: ['shared', 'ingest', 'workers', 'query'],
  localstack: ['shared', 'cli'],
  bench: ['shared', 'ingest', 'workers', 'query', 'cli', 'localstack'],
  test: ALL_FOLDERS,
};

/** Relative specifiers of static imports, re-exports, side-effect imports and dynamic import() calls. */
function importsOf(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm)) out.push(m[1]!);
  return out;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) return d.name === 'node_modules' ? [] : tsFiles(p);
    return d.name.endsWith('.ts') ? [p] : [];
  });
}

const folderOf = (fileFromRoot: string) => fileFromRoot.split(path.sep)[0] as Folder;

/** Every import that crosses folders against MAY_IMPORT, as "file → target". */
function layeringViolations(files: { file: string; source: string }[]): string[] {
  const bad: string[] = [];
  for (const { file, source } of files) {
    const from = folderOf(file);
    for (const spec of importsOf(source)) {
      if (!spec.startsWith('.')) continue;
      const target = path.relative(PROJECT_ROOT, path.resolve(PROJECT_ROOT, path.dirname(file), spec));
      const to = folderOf(target);
      if (to === from || !(ALL_FOLDERS as readonly string[]).includes(to)) continue;
      if (!MAY_IMPORT[from].includes(to)) bad.push(`${file} → ${target} (${from}/ may import only ${MAY_IMPORT[from].join(', ') || 'packages'})`);
    }
  }
  return bad;
}

/** Reads of SLUICE_* / AWS_* variables outside shared/config.ts (copying the environment for a child process is fine). */
function environmentReads(files: { file: string; source: string }[]): string[] {
  const bad: string[] = [];
  for (const { file, source } of files) {
    if (file === path.join('shared', 'config.ts') || !(PRODUCTION as readonly string[]).includes(folderOf(file))) continue;
    for (const m of source.matchAll(/process\.env(?:\.(\w+)|\[)/g)) {
      // The AWS SDK's own switch for its Node version notice (shared/clients/aws.ts) is not a Sluice setting.
      if (m[1] === 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED') continue;
      bad.push(`${file} reads ${m[0]}; read settings through shared/config.ts`);
    }
  }
  return bad;
}

const ROOTS: readonly Folder[] = ALL_FOLDERS;
const project = () =>
  ROOTS.flatMap((f) => tsFiles(path.join(PROJECT_ROOT, f))).map((abs) => ({ file: path.relative(PROJECT_ROOT, abs), source: readFileSync(abs, 'utf8') }));

describe('layering', () => {
  it('finds the imports of every form', () => {
    const src = [
      "import { a } from '../shared/a.js';",
      "import type { B } from './b.js';",
      "export { c } from '../workers/c.js';",
      "import '../localstack/side-effect.js';",
      "const { d } = await import('../bench/d.js');",
      "// import { e } from '../test/e.js';",
    ].join('\n');
    expect(importsOf(src)).toEqual(['../shared/a.js', './b.js', '../workers/c.js', '../localstack/side-effect.js', '../bench/d.js']);
  });

  it('flags each forbidden direction', () => {
    const cases: [string, string][] = [
      ['workers/fleet/supervisor.ts', "import { nodeEntry } from '../../localstack/services.js';"],
      ['cli/sluice.ts', "const { runLoad } = await import('../bench/load-generator.js');"],
      ['query/x.ts', "import { testEnv } from '../test/support/config.js';"],
      ['shared/x.ts', "import { startWorker } from '../workers/main.js';"],
      ['shared/clients/x.ts', "import { program } from '../../cli/sluice.js';"],
      ['ingest/x.ts', "import { MessageHandler } from '../workers/message-handler.js';"],
      ['bench/x.ts', "import { startProcess } from '../test/support/processes.js';"],
    ];
    for (const [file, source] of cases) expect(layeringViolations([{ file, source }]), file).toHaveLength(1);
    expect(layeringViolations([{ file: 'cli/x.ts', source: "import { startIngest } from '../ingest/main.js';" }])).toEqual([]);
    expect(layeringViolations([{ file: 'localstack/x.ts', source: "import { loadConfig } from '../shared/config.js';" }])).toEqual([]);
  });

  it('no file imports against the layering', () => {
    expect(layeringViolations(project())).toEqual([]);
  });

  it('production code reads the environment only through shared/config.ts', () => {
    expect(environmentReads([{ file: 'shared/logger.ts', source: 'const l = process.env.SLUICE_LOG_LEVEL;' }])).toHaveLength(1);
    expect(environmentReads(project())).toEqual([]);
  });
});
