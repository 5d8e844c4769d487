// `sluice schema --format duckdb|athena|spark|bigquery`: prints the table definition of the raw archive for engines
// that read its Hive layout directly, generated from the archive contract (shared/contracts/table-ddl.ts).
import type { Command } from 'commander';
import type { Config } from '../shared/config.js';
import { RAW_EVENTS_PREFIX } from '../shared/contracts/parquet-schema.js';
import { DDL_FORMATS, DEFAULT_TABLE, parseDdlFormat, tableDdl } from '../shared/contracts/table-ddl.js';

export interface SchemaArgs {
  format: string;
  location?: string;
  table?: string;
  connection?: string;
}

/** The definition to print, or throws with what is wrong (the command prints it and exits 2). */
export function schemaText(cfg: Pick<Config, 'SLUICE_RAW_BUCKET'>, o: SchemaArgs): string {
  const format = parseDdlFormat(o.format);
  return tableDdl(format, {
    location: o.location ?? `s3://${cfg.SLUICE_RAW_BUCKET}/${RAW_EVENTS_PREFIX}`,
    table: o.table,
    connection: o.connection,
  });
}

/** Registers `sluice schema`; `config` loads (or exits on) the configuration. */
export function addSchemaCommand(program: Command, config: () => Config): void {
  program
    .command('schema')
    .description('print the table definition of the raw Parquet archive (Hive layout dt=…/hour=…) for an engine that reads it directly')
    .requiredOption('--format <engine>', DDL_FORMATS.join(', '))
    .option('--location <uri>', 'folder of the raw layout (default s3://<SLUICE_RAW_BUCKET>/events/; s3a://… for Spark on Hadoop)')
    .option(
      '--table <name>',
      `table name (default ${Object.entries(DEFAULT_TABLE)
        .map(([f, t]) => `${f}: ${t}`)
        .join(', ')})`,
    )
    .option('--connection <name>', 'BigQuery only: the BigQuery Omni connection that reads s3:// (e.g. aws-us-east-1.sluice)')
    .action((o: SchemaArgs) => {
      let text: string;
      try {
        text = schemaText(config(), o);
      } catch (err) {
        process.stderr.write(`${(err as Error).message}\n`);
        process.exit(2);
      }
      process.stdout.write(text);
    });
}
