// Test helpers for the Iceberg tables: raw batches archived the way ingest stores them (object metadata included),
// rollup files written the way the rollup job writes them, the tables read back by an independent reader (icebird:
// metadata, manifests and rows), and the archive and the rollup files read by DuckDB the way analysts do, for
// comparison; the objects of a table's metadata folder as S3 lists them.
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { icebergManifests, icebergMetadata, icebergRead } from 'icebird';
import type { Config } from '../../shared/config.js';
import { createS3 } from '../../shared/clients/aws.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { sha256File, uploadFile } from '../../shared/clients/object-store.js';
import type { Event } from '../../shared/contracts/event.js';
import { encodeEventLine } from '../../shared/contracts/event-line.js';
import { rollupKey, rollupPrefix, parseRollupKey, type RollupResolution, type RollupRow } from '../../shared/contracts/cold-layout.js';
import { icebergLayout, icebergTableLocation, type IcebergTableName } from '../../shared/contracts/iceberg-table.js';
import { PARQUET_SCHEMA_VERSION, RAW_OBJECT_METADATA, rawEventsKey } from '../../shared/contracts/parquet-schema.js';
import { openEngine, parquetFiles, queryParquet } from '../../shared/parquet.js';
import { writeEventBatches } from '../../ingest/parquet-batch-writer.js';
import { downloadRaw, resolveDay } from '../../workers/cold/archive.js';
import { writeRollupFile } from '../../workers/cold/rollup-sql.js';

/**
 * icebird reads s3:// paths from https://<bucket>.s3.amazonaws.com/<key>; this sends those requests to the local S3
 * endpoint instead (path style), unchanged otherwise. The bytes come from the real emulator.
 */
export function routeS3ToLocal(endpoint: string): () => void {
  const original = globalThis.fetch;
  globalThis.fetch = ((input: string | URL | Request, init?: RequestInit) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const m = /^https:\/\/([^./]+)\.s3\.amazonaws\.com\/(.*)$/.exec(url);
    return original(m ? `${endpoint.replace(/\/$/, '')}/${m[1]}/${m[2]}` : input, init);
  }) as typeof fetch;
  return () => {
    globalThis.fetch = original;
  };
}

let seq = 0;

/** Writes `events` as raw batches (one per event-time hour) and stores them as ingest does, metadata included. */
export async function archiveBatches(cfg: Config, events: readonly Event[], node = cfg.SLUICE_NODE_ID): Promise<string[]> {
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  const dir = path.join(cfg.SLUICE_DATA_DIR, 'iceberg-batches', `${Date.now()}-${seq++}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'lines.ndjson'), events.map((e) => encodeEventLine(e, e.timestamp + 1_000, 'test')).join(''));
  const written = await writeEventBatches([path.join(dir, 'lines.ndjson')], path.join(dir, 'out'));
  const s3 = createS3(cfg);
  try {
    const keys: string[] = [];
    for (const w of written) {
      const key = rawEventsKey(w.partition, node, `${Date.now()}_${randomBytes(3).toString('hex')}`);
      const { sha256 } = await sha256File(w.file);
      await uploadFile(s3, cfg.SLUICE_RAW_BUCKET, key, w.file, {
        [RAW_OBJECT_METADATA.sha256]: sha256,
        [RAW_OBJECT_METADATA.eventCount]: String(w.eventCount),
        [RAW_OBJECT_METADATA.schemaVersion]: String(PARQUET_SCHEMA_VERSION),
      });
      keys.push(key);
    }
    return keys;
  } finally {
    s3.destroy();
  }
}

export interface TableView {
  version: number;
  /** Live data files of the current snapshot (s3:// paths), in manifest order; a path twice means a double commit. */
  files: string[];
  operations: string[];
  metadata: Awaited<ReturnType<typeof icebergMetadata>>;
}

/** The table as icebird sees it through version-hint.text (no catalog). */
export async function tableView(cfg: Config, table: IcebergTableName = 'events'): Promise<TableView> {
  const layout = icebergLayout(table);
  const tableUrl = layout.location(cfg.SLUICE_RAW_BUCKET);
  const metadata = await icebergMetadata({ tableUrl });
  const manifests = metadata['current-snapshot-id'] ? await icebergManifests(metadata) : [];
  const files = manifests.flatMap((m) => m.entries.filter((e) => e.status !== 2).map((e) => e.data_file.file_path));
  const version = Number((await (await fetch(`https://${cfg.SLUICE_RAW_BUCKET}.s3.amazonaws.com/${layout.versionHintKey}`)).text()).trim());
  return { version, files, operations: (metadata.snapshots ?? []).map((s) => s.summary.operation), metadata };
}

/** Keys of every object under a table's metadata folder. */
export async function metadataObjects(cfg: Config, table: IcebergTableName = 'events'): Promise<string[]> {
  const s3 = createS3(cfg);
  try {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({ Bucket: cfg.SLUICE_RAW_BUCKET, Prefix: icebergLayout(table).metadataPrefix, ContinuationToken: token }),
      );
      for (const o of page.Contents ?? []) if (o.Key) out.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  } finally {
    s3.destroy();
  }
}

/** Rows of the events table read by icebird from `metadata` (e.g. what the commit pointer names), by event id. */
export async function rowsOfMetadata(metadata: Record<string, unknown>): Promise<Map<string, [number, string, number]>> {
  const rows = await icebergRead({ tableUrl: String(metadata.location), metadata: metadata as never });
  return rowsById(rows.map((r) => [String(r.event_id), toMs(r.event_time), String(r.entity_id), Number(r.value)]));
}

// ---- rollups ---------------------------------------------------------------------------------

/** Writes a rollup file of `rows` where the rollup job keeps the file of `res` starting at `startMs`; returns its key. */
export async function putRollupFile(cfg: Config, res: RollupResolution, startMs: number, rows: readonly RollupRow[]): Promise<string> {
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  const file = path.join(cfg.SLUICE_DATA_DIR, 'rollup-files', `${randomBytes(4).toString('hex')}.parquet`);
  await writeRollupFile(rows, file);
  const key = rollupKey(res, startMs);
  await new ColdStorage(cfg).putFile(key, file, { 'x-amz-meta-sluice-rollup': res });
  return key;
}

/** Rollup rows as a multiset: "entity|type|period ms|count|sum|min|max" → how many times. */
export type RollupBag = Map<string, number>;

const bagKey = (entity: unknown, type: unknown, periodMs: number, count: unknown, sum: unknown, min: unknown, max: unknown) =>
  `${String(entity)}|${String(type)}|${periodMs}|${Number(count)}|${Number(sum)}|${Number(min)}|${Number(max)}`;

function bagOf(keys: Iterable<string>): RollupBag {
  const bag: RollupBag = new Map();
  for (const k of keys) bag.set(k, (bag.get(k) ?? 0) + 1);
  return bag;
}

/** The rollups table's rows read by icebird from `metadata` (`resolution` aside: icebird reads only the files). */
export async function rollupTableRows(metadata: Record<string, unknown>): Promise<RollupBag> {
  if (!metadata['current-snapshot-id']) return new Map();
  const rows = await icebergRead({ tableUrl: String(metadata.location), metadata: metadata as never });
  return bagOf(rows.map((r) => bagKey(r.entity_id, r.event_type, toMs(r.period_start), r.count, r.sum, r.min, r.max)));
}

/** Each data file of the rollups table's current snapshot → its partition tuple, as icebird decodes the manifests. */
export async function rollupTableFiles(metadata: Record<string, unknown>): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>();
  if (!metadata['current-snapshot-id']) return out;
  for (const m of await icebergManifests(metadata as never))
    for (const e of m.entries) {
      if (e.status === 2) continue;
      if (out.has(e.data_file.file_path)) throw new Error(`${e.data_file.file_path} is in the table twice`);
      out.set(e.data_file.file_path, e.data_file.partition as Record<string, unknown>);
    }
  return out;
}

/** The rollup files of the cold bucket read by DuckDB: their rows, and each file's resolution (its folder). */
export async function rollupFileRows(cfg: Config): Promise<{ rows: RollupBag; files: Map<string, RollupResolution> }> {
  const cold = new ColdStorage(cfg);
  const dir = path.join(cfg.SLUICE_DATA_DIR, 'rollup-read', randomBytes(4).toString('hex'));
  mkdirSync(dir, { recursive: true });
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  const files = new Map<string, RollupResolution>();
  const local: string[] = [];
  for (const res of ['1h', '1d'] as const)
    for (const o of await cold.list(rollupPrefix(res))) {
      if (!parseRollupKey(o.key)) continue;
      const f = path.join(dir, `${local.length}.parquet`);
      await cold.getToFile(o.key, f);
      local.push(f);
      files.set(`s3://${cfg.SLUICE_COLD_BUCKET}/${o.key}`, res);
    }
  if (!local.length) return { rows: new Map(), files };
  const rows = await queryParquet(
    `SELECT entity_id, event_type, epoch_ms(period_start)::DOUBLE AS t, count, sum, min, max FROM read_parquet(${parquetFiles(local)})`,
  );
  return { rows: bagOf(rows.map((r) => bagKey(r.entity_id, r.event_type, Number(r.t), r.count, r.sum, r.min, r.max))), files };
}

/** Rows of the table read by icebird (data files included), by event id: [event time ms, entity, value]. */
export async function tableRows(cfg: Config, metadataFileName?: string): Promise<Map<string, [number, string, number]>> {
  const rows = await icebergRead({ tableUrl: icebergTableLocation(cfg.SLUICE_RAW_BUCKET), ...(metadataFileName ? { metadataFileName } : {}) });
  return rowsById(rows.map((r) => [String(r.event_id), toMs(r.event_time), String(r.entity_id), Number(r.value)]));
}

export function toMs(v: unknown): number {
  if (v instanceof Date) return v.getTime();
  if (typeof v === 'bigint') return Number(v / 1000n);
  return Number(v);
}

function rowsById(rows: [string, number, string, number][]): Map<string, [number, string, number]> {
  const m = new Map<string, [number, string, number]>();
  for (const [id, t, e, v] of rows) {
    if (m.has(id)) m.set(`${id}#dup${m.size}`, [t, e, v]);
    else m.set(id, [t, e, v]);
  }
  return m;
}

/** The archive of `days` as analysts read it with DuckDB (live raw + verified compacted files), by event id. */
export async function archiveRows(cfg: Config, days: readonly string[]): Promise<Map<string, [number, string, number]>> {
  const s3 = createS3(cfg);
  const cold = new ColdStorage(cfg);
  const dir = path.join(cfg.SLUICE_DATA_DIR, 'archive-read', randomBytes(4).toString('hex'));
  mkdirSync(dir, { recursive: true });
  try {
    const files: string[] = [];
    for (const dt of days) {
      const day = await resolveDay(s3, cfg.SLUICE_RAW_BUCKET, cold, dt);
      for (const r of day.liveRaw) {
        const f = path.join(dir, `${files.length}.parquet`);
        await downloadRaw(s3, cfg.SLUICE_RAW_BUCKET, r.key, f);
        files.push(f);
      }
      for (const m of day.manifests) {
        const f = path.join(dir, `${files.length}.parquet`);
        await cold.getToFile(m.output.key, f);
        files.push(f);
      }
    }
    if (!files.length) return new Map();
    const rows = await queryParquet(
      `SELECT event_id, epoch_ms(event_time)::DOUBLE AS t, entity_id, value FROM read_parquet(${parquetFiles(files)}, union_by_name = true)`,
    );
    return rowsById(rows.map((r) => [String(r.event_id), Number(r.t), String(r.entity_id), Number(r.value)]));
  } finally {
    s3.destroy();
  }
}
