// Command lines that run the project's own entry files as child processes, from sources (via tsx) or from dist/.
// The same call works in both layouts: a `.ts` entry path is mapped to its built `.js` when running built.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder that holds cli/, shared/, … — the repository root from sources, dist/ (or another out dir) when built. */
const CODE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FROM_SOURCES = import.meta.url.endsWith('.ts');

/** node command line that runs one of the project's entry files (`cli/sluice.ts`), from sources (via tsx) or built. */
export function entryCommand(fileFromRoot: string): string[] {
  const file = path.join(CODE_ROOT, FROM_SOURCES ? fileFromRoot : fileFromRoot.replace(/\.ts$/, '.js'));
  return FROM_SOURCES ? [process.execPath, '--import', 'tsx', file] : [process.execPath, file];
}

/** Command line of one `sluice` sub-command, e.g. sluiceCommand('worker'). */
export function sluiceCommand(...args: string[]): string[] {
  return [...entryCommand('cli/sluice.ts'), ...args];
}
