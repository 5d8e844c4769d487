// `sluice dimensions load|list|show`: loads a dimension table (CSV with a header, or Parquet: entity_id, then string
// attributes) as the next version in the raw bucket, and reports what is loaded. Workers and the query API pick the
// new version up within SLUICE_DIMENSIONS_POLL. A table that does not validate is refused with each problem's file,
// line (or row) and column; nothing is published then (exit 2).
import path from 'node:path';
import type { Command } from 'commander';
import type { Config } from '../shared/config.js';
import type { DimensionManifest } from '../shared/contracts/dimensions.js';
import { PermanentError, SluiceError } from '../shared/errors.js';

const n = (x: number) => x.toLocaleString('en-US');

/** One line per version: number, rows, attributes, when and from what it was loaded. */
export function describeVersion(m: DimensionManifest, current: number | undefined): string {
  return `  v${m.version}${m.version === current ? ' (current)' : ''}: ${n(m.rows)} rows, attributes ${m.attributes.join(', ')}; loaded ${m.loadedAt} from ${m.source.file} (${m.source.format}), ${n(m.bytes)} bytes, sha256 ${m.sha256.slice(0, 12)}…`;
}

/** Exits with the error's message: 2 for input that will never load (bad file, bad name), 1 otherwise. */
function fail(err: unknown): never {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof SluiceError && !err.retryable ? 2 : 1);
}

/** Registers `sluice dimensions`; `config` loads (or exits on) the configuration. */
export function addDimensionsCommands(program: Command, config: () => Config): void {
  const dims = program.command('dimensions').description('load and inspect the dimension tables workers enrich events with (entity_id → attributes)');
  dims
    .command('load <file>')
    .description('validate a CSV (with a header) or Parquet file — entity_id first, then string attributes — and store it as the next version')
    .option('--name <name>', 'table name (default: SLUICE_DIMENSIONS_TABLE)')
    .action(async (file: string, o: { name?: string }) => {
      const cfg = config();
      const table = o.name ?? cfg.SLUICE_DIMENSIONS_TABLE;
      const [{ openEngine }, { createS3 }, { loadDimensionTable }] = await Promise.all([
        import('../shared/parquet.js'),
        import('../shared/clients/aws.js'),
        import('../workers/dimensions/table-load.js'),
      ]);
      await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
      const s3 = createS3(cfg);
      try {
        process.stderr.write(`dimensions: validating ${file} for table "${table}" in s3://${cfg.SLUICE_RAW_BUCKET}/dimensions/${table}/\n`);
        const m = await loadDimensionTable(s3, cfg.SLUICE_RAW_BUCKET, { input: file, table, tempDir: path.join(cfg.SLUICE_DATA_DIR, 'dimensions-tmp') });
        process.stdout.write(
          `loaded dimension table "${m.table}" version ${m.version}: ${n(m.rows)} rows, attributes ${m.attributes.join(', ')} (s3://${cfg.SLUICE_RAW_BUCKET}/${m.dataKey})\n` +
            `workers and the query API use it within SLUICE_DIMENSIONS_POLL (${cfg.SLUICE_DIMENSIONS_POLL / 1000}s)` +
            (table === cfg.SLUICE_DIMENSIONS_TABLE ? '' : `, once SLUICE_DIMENSIONS_TABLE=${table}`) +
            '; batches counted before keep the attributes they were counted with (sluice replay recounts a range with the current version)\n',
        );
      } catch (err) {
        fail(err);
      } finally {
        s3.destroy();
      }
    });
  dims
    .command('list')
    .description('the loaded tables: current version, rows, attributes, when loaded, and how many versions')
    .action(async () => {
      const cfg = config();
      const [{ createS3 }, t] = await Promise.all([import('../shared/clients/aws.js'), import('../shared/dimension-tables.js')]);
      const s3 = createS3(cfg);
      try {
        const names = await t.listTables(s3, cfg.SLUICE_RAW_BUCKET);
        if (!names.length) process.stdout.write(`no dimension table in s3://${cfg.SLUICE_RAW_BUCKET}/dimensions/ (load one: sluice dimensions load FILE)\n`);
        for (const name of names) {
          const [cur, versions] = await Promise.all([t.readCurrentVersion(s3, cfg.SLUICE_RAW_BUCKET, name), t.listVersions(s3, cfg.SLUICE_RAW_BUCKET, name)]);
          if (!cur) continue;
          process.stdout.write(
            `${name}${name === cfg.SLUICE_DIMENSIONS_TABLE ? ' (SLUICE_DIMENSIONS_TABLE)' : ''}: version ${cur.version} of ${versions.length}, ${n(cur.rows)} rows, attributes ${cur.attributes.join(', ')}, loaded ${cur.loadedAt}\n`,
          );
        }
      } catch (err) {
        fail(err);
      } finally {
        s3.destroy();
      }
    });
  dims
    .command('show [name]')
    .description('every version of one table (default: SLUICE_DIMENSIONS_TABLE), or one with --version')
    .option('--version <n>', 'show only this version, with its manifest')
    .action(async (name: string | undefined, o: { version?: string }) => {
      const cfg = config();
      const table = name ?? cfg.SLUICE_DIMENSIONS_TABLE;
      const [{ createS3 }, t] = await Promise.all([import('../shared/clients/aws.js'), import('../shared/dimension-tables.js')]);
      if (o.version !== undefined && !/^[1-9]\d{0,8}$/.test(o.version))
        fail(new PermanentError(`--version must be a version number such as 3, got ${JSON.stringify(o.version)}`, 'usage'));
      const s3 = createS3(cfg);
      try {
        const cur = await t.readCurrentVersion(s3, cfg.SLUICE_RAW_BUCKET, table);
        if (o.version !== undefined) {
          const m = await t.readVersion(s3, cfg.SLUICE_RAW_BUCKET, table, Number(o.version));
          if (!m) {
            const have = await t.listVersions(s3, cfg.SLUICE_RAW_BUCKET, table);
            throw new PermanentError(
              `dimension table "${table}" has no version ${o.version} (${have.length ? `versions: ${have.join(', ')}` : 'nothing loaded under that name'})`,
              'dimension_version_missing',
            );
          }
          process.stdout.write(`${table}\n${describeVersion(m, cur?.version)}\n${JSON.stringify(m, null, 2)}\n`);
          return;
        }
        const versions = await t.listVersions(s3, cfg.SLUICE_RAW_BUCKET, table);
        if (!versions.length)
          throw new PermanentError(
            `no dimension table "${table}" in s3://${cfg.SLUICE_RAW_BUCKET}/dimensions/ (load one: sluice dimensions load FILE --name ${table})`,
            'dimension_table_missing',
          );
        process.stdout.write(`${table}: current version ${cur?.version ?? '(none)'}\n`);
        for (const v of versions) {
          const m = await t.readVersion(s3, cfg.SLUICE_RAW_BUCKET, table, v);
          if (m) process.stdout.write(`${describeVersion(m, cur?.version)}\n`);
        }
      } catch (err) {
        fail(err);
      } finally {
        s3.destroy();
      }
    });
}
