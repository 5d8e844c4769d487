// Test helpers for the Iceberg table over the archive: raw batches archived the way ingest stores them (object
// metadata included), the table read back by an independent reader (icebird: its metadata, manifests and rows), and
// the archive read by DuckDB the way analysts do, for comparison.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { icebergManifests, icebergMetadata, icebergRead } from 'icebird';
import type { Config } from '../../shared/config.js';
import { createS3 } from '../../shared/clients/aws.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { sha256File, uploadFile } from '../../shared/clients/object-store.js';
import { encodeEventLine, type Event } from '../../shared/contracts/event.js';
import { icebergTableLocation } from '../../shared/contracts/iceberg-table.js';
import { PARQUET_SCHEMA_VERSION, RAW_OBJECT_METADATA, rawEventsKey } from '../../shared/contracts/parquet-schema.js';
import { openEngine, parquetFiles, queryParquet } from '../../shared/parquet.js';
import { writeEventBatches } from '../../ingest/parquet-batch-writer.js';
import { downloadRaw, resolveDay } from '../../workers/cold/archive.js';

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
export async function tableView(cfg: Config): Promise<TableView> {
  const tableUrl = icebergTableLocation(cfg.SLUICE_RAW_BUCKET);
  const metadata = await icebergMetadata({ tableUrl });
  const manifests = metadata['current-snapshot-id'] ? await icebergManifests(metadata) : [];
  const files = manifests.flatMap((m) => m.entries.filter((e) => e.status !== 2).map((e) => e.data_file.file_path));
  const version = Number((await (await fetch(`https://${cfg.SLUICE_RAW_BUCKET}.s3.amazonaws.com/iceberg/events/metadata/version-hint.text`)).text()).trim());
  return { version, files, operations: (metadata.snapshots ?? []).map((s) => s.summary.operation), metadata };
}

/** Rows of the table read by icebird (data files included), by event id: [event time ms, entity, value]. */
export async function tableRows(cfg: Config, metadataFileName?: string): Promise<Map<string, [number, string, number]>> {
  const rows = await icebergRead({ tableUrl: icebergTableLocation(cfg.SLUICE_RAW_BUCKET), ...(metadataFileName ? { metadataFileName } : {}) });
  return rowsById(rows.map((r) => [String(r.event_id), toMs(r.event_time), String(r.entity_id), Number(r.value)]));
}

function toMs(v: unknown): number {
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
