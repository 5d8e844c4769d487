// Cost of the dimension enrichment in the engine, no services: a 1M-row dimension table built into a database file the
// way workers build it (shared/dimension-store.ts) and ATTACHed read-only; then (1) the batch query of
// workers/dimensions/attribute-lines.ts over 1M events of 100k entities (2 attributes), against the same grouping
// without the join (what a batch costs anyway), both as µs per event; (2) point lookups of single entities (a prepared
// statement, as a per-event lookup would cost); (3) the query API's candidate lookup (DimensionStore.valuesOf) of
// 10k ids. Median of BENCH_DIM_RUNS runs. Writes bench/results/dimensions-<date>.json.
// Run: npx tsx bench/dimensions.ts (BENCH_DIM_ROWS, BENCH_DIM_EVENTS, BENCH_DIM_MEMORY to change the sizes/limit).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../shared/config.js';
import { connect, openEngine, sqlString } from '../shared/parquet.js';
import { attributeAggregatesSql } from '../workers/dimensions/attribute-lines.js';

const ROWS = Number(process.env.BENCH_DIM_ROWS ?? 1_000_000);
const EVENTS = Number(process.env.BENCH_DIM_EVENTS ?? 1_000_000);
const ENTITIES = Number(process.env.BENCH_DIM_ENTITIES ?? 100_000);
const RUNS = Number(process.env.BENCH_DIM_RUNS ?? 5);
const LOOKUPS = Number(process.env.BENCH_DIM_LOOKUPS ?? 2_000);
const MEMORY = process.env.BENCH_DIM_MEMORY ?? '256MB';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function main() {
  const dir = path.join(PROJECT_ROOT, '.data', 'bench-dimensions');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await openEngine({ tempDir: path.join(dir, 'tmp'), memoryLimit: MEMORY, threads: 2 });
  const c = await connect();
  const parquet = path.join(dir, 'v1.parquet');
  const db = path.join(dir, 'v1.duckdb');
  // The version file as the loader writes it (sorted by entity id), then the database file as workers build it.
  await c.run(`COPY (SELECT 'ent-' || lpad(i::VARCHAR, 7, '0') AS entity_id, 'channel-' || (i % 1000) AS channel, 'category-' || (i % 37) AS category
    FROM range(${ROWS}) t(i) ORDER BY entity_id) TO ${sqlString(parquet)} (FORMAT parquet, COMPRESSION zstd)`);
  const buildMs = await timed(async () => {
    await c.run(`ATTACH ${sqlString(db)} AS build`);
    await c.run(`CREATE TABLE build.main.dimension AS SELECT * FROM read_parquet(${sqlString(parquet)})`);
    await c.run('CHECKPOINT build');
    await c.run('DETACH build');
  });
  await c.run(`ATTACH ${sqlString(db)} AS dim (READ_ONLY)`);
  const relation = 'dim.main.dimension';
  // A batch's counted rows: entities spread over the table (a few unknown), two event types, one hour of event time.
  await c.run(`CREATE TEMP TABLE batch AS SELECT
      CASE WHEN i % 100 = 0 THEN 'unknown-' || i ELSE 'ent-' || lpad(((hash(i % ${ENTITIES}) % ${ROWS}))::VARCHAR, 7, '0') END AS entity_id,
      CASE WHEN i % 3 = 0 THEN 'like' ELSE 'view' END AS event_type, (i * 3_599) % 3_600_000 AS ts, (i % 97)::DOUBLE AS value
    FROM range(${EVENTS}) t(i)`);
  const withJoin = attributeAggregatesSql('batch', relation, ['channel', 'category']);
  const baseline = `SELECT entity_id, event_type, ts // 60000 AS m, count(*), sum(value), min(value), max(value) FROM batch GROUP BY ALL`;
  const joinMs: number[] = [];
  const baseMs: number[] = [];
  let groups = 0;
  for (let r = 0; r < RUNS; r++) {
    baseMs.push(await timed(() => c.runAndReadAll(baseline)));
    joinMs.push(
      await timed(async () => {
        groups = (await c.runAndReadAll(withJoin)).currentRowCount;
      }),
    );
  }
  // Point lookups, one entity per statement: what a per-event lookup would cost.
  const p = await c.prepare(`SELECT channel, category FROM ${relation} WHERE entity_id = $1`);
  const lookupMs = await timed(async () => {
    for (let i = 0; i < LOOKUPS; i++) {
      p.bindVarchar(1, `ent-${String((i * 7_919) % ROWS).padStart(7, '0')}`);
      await p.runAndReadAll();
    }
  });
  // The same with the id as a literal (the scan then skips row groups by their min/max).
  const literalMs = await timed(async () => {
    for (let i = 0; i < LOOKUPS; i++)
      await c.runAndReadAll(`SELECT channel, category FROM ${relation} WHERE entity_id = ${sqlString(`ent-${String((i * 7_919) % ROWS).padStart(7, '0')}`)}`);
  });
  // The query API's candidate lookup: 10k ids appended and joined once.
  const candidatesMs = await timed(async () => {
    await c.run('CREATE OR REPLACE TEMP TABLE lookup_ids (entity_id VARCHAR)');
    const app = await c.createAppender('lookup_ids', 'main', 'temp');
    for (let i = 0; i < 10_000; i++) {
      app.appendVarchar(`ent-${String((i * 104_729) % ROWS).padStart(7, '0')}`);
      app.endRow();
    }
    app.closeSync();
    await c.runAndReadAll(`SELECT d.entity_id, d.channel FROM lookup_ids l JOIN ${relation} d ON d.entity_id = l.entity_id`);
  });
  c.closeSync();
  const joinMedian = median(joinMs);
  const baseMedian = median(baseMs);
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: os.availableParallelism(), loadavg1: os.loadavg()[0] },
    engine: { memoryLimit: MEMORY, threads: 2 },
    table: { rows: ROWS, attributes: 2, buildMs: Math.round(buildMs) },
    batch: { events: EVENTS, entities: ENTITIES, attributeGroups: groups },
    enrichmentQuery: { medianMs: Math.round(joinMedian), usPerEvent: +((joinMedian * 1000) / EVENTS).toFixed(3) },
    groupingWithoutJoin: { medianMs: Math.round(baseMedian), usPerEvent: +((baseMedian * 1000) / EVENTS).toFixed(3) },
    enrichmentOverGrouping: +(joinMedian / baseMedian).toFixed(2),
    pointLookup: {
      lookups: LOOKUPS,
      preparedUsPerLookup: +((lookupMs * 1000) / LOOKUPS).toFixed(1),
      literalUsPerLookup: +((literalMs * 1000) / LOOKUPS).toFixed(1),
    },
    candidateLookup10k: { ms: Math.round(candidatesMs), usPerId: +((candidatesMs * 1000) / 10_000).toFixed(2) },
  };
  const out = path.join(PROJECT_ROOT, 'bench', 'results', `dimensions-${result.date.slice(0, 10)}.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n→ ${path.relative(PROJECT_ROOT, out)}\n`);
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
