// Test helpers for the Parquet archive: schema-v2 batch files (with session_id), uploading a file as a raw
// batch, and "what an analyst sees" — the live raw + verified compacted files of a day, resolved by the
// same rule compaction and audits use, with their exact rows and deduplicated totals.
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../../shared/config.js';
import { createS3 } from '../../shared/clients/aws.js';
import { ColdStorage } from '../../shared/clients/cold-storage.js';
import { partitionOf, rawEventsKey } from '../../shared/contracts/parquet-schema.js';
import { archiveTotals, type ArchiveTotal } from '../../workers/cold/audit-sql.js';
import { fingerprintEventFiles } from '../../workers/cold/compaction-sql.js';
import { openEngine, parquetFiles, queryParquet } from '../../shared/parquet.js';
import { downloadTo, listKeys } from './sqs.js';
import { downloadRaw, resolveDay } from '../../workers/cold/archive.js';
import type { Event } from '../../shared/contracts/event.js';

const sql = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** Writes `events` as a schema-v2 batch file (v1 columns + session_id, schema_version 2), sorted like ingest does. */
export async function writeV2File(events: readonly Event[], file: string): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  const values = events
    .map((e, i) => `(${sql(e.eventId)}, ${sql(e.entityId)}, ${sql(e.eventType)}, ${e.timestamp}, ${e.value}, ${sql(`s-${i % 3}`)})`)
    .join(',\n');
  await queryParquet(`COPY (
      SELECT id AS event_id, ent AS entity_id, typ AS event_type, epoch_ms(ts)::TIMESTAMP_MS AS event_time, v::DOUBLE AS value,
             NULL::MAP(VARCHAR, VARCHAR) AS dims, epoch_ms(ts)::TIMESTAMP_MS AS ingest_time, 'test-v2' AS producer, 2::INTEGER AS schema_version, sid AS session_id
      FROM (VALUES ${values}) t(id, ent, typ, ts, v, sid) ORDER BY entity_id, event_time, event_id
    ) TO ${sql(file)} (FORMAT parquet, COMPRESSION zstd)`);
}

/** Uploads a local Parquet file as a raw batch of the hour of `eventTimeMs`; returns its key. */
export async function uploadRawFile(cfg: Config, file: string, eventTimeMs: number): Promise<string> {
  const key = rawEventsKey(partitionOf(eventTimeMs), cfg.SLUICE_NODE_ID, randomBytes(6).toString('hex'));
  const s3 = createS3(cfg);
  try {
    await s3.send(new PutObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: key, Body: readFileSync(file) }));
  } finally {
    s3.destroy();
  }
  return key;
}

export interface ArchiveView {
  /** Rows across every live file (an event stored twice would count twice here). */
  rows: number;
  totals: ArchiveTotal[];
  liveRaw: string[];
  supersededRaw: string[];
  compacted: string[];
  unverified: string[];
}

/** What readers of the archive see for one day right now. */
export async function archiveView(cfg: Config, dt: string): Promise<ArchiveView> {
  const s3 = createS3(cfg);
  const cold = new ColdStorage(cfg);
  const dir = path.join(cfg.SLUICE_DATA_DIR, 'view', randomBytes(4).toString('hex'));
  mkdirSync(dir, { recursive: true });
  try {
    const day = await resolveDay(s3, cfg.SLUICE_RAW_BUCKET, cold, dt);
    const files: string[] = [];
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
    const dayMs = Date.parse(`${dt}T00:00:00Z`);
    return {
      rows: files.length ? (await fingerprintEventFiles(files)).rows : 0,
      totals: await archiveTotals(files, { fromMs: dayMs, toMs: dayMs + 86_400_000 }),
      liveRaw: day.liveRaw.map((r) => r.key),
      supersededRaw: day.supersededRaw.map((r) => r.key),
      compacted: day.manifests.map((m) => m.output.key),
      unverified: day.unverified.map((u) => u.key),
    };
  } finally {
    s3.destroy();
  }
}

/** Expected totals per (entity, type) of events, each id once (first occurrence wins). */
export function expectedTotals(events: Iterable<Event>): ArchiveTotal[] {
  const seen = new Set<string>();
  const m = new Map<string, ArchiveTotal>();
  for (const e of events) {
    if (seen.has(e.eventId)) continue;
    seen.add(e.eventId);
    const k = `${e.entityId}\u0000${e.eventType}`;
    const t = m.get(k) ?? { entityId: e.entityId, eventType: e.eventType, count: 0, sum: 0 };
    t.count++;
    t.sum += e.value;
    m.set(k, t);
  }
  return [...m.values()].sort((a, b) => (a.entityId < b.entityId ? -1 : a.entityId > b.entityId ? 1 : a.eventType < b.eventType ? -1 : 1));
}

/** Totals compared with a float tolerance on sums. */
export function sameTotals(a: readonly ArchiveTotal[], b: readonly ArchiveTotal[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i]!;
    return x.entityId === y.entityId && x.eventType === y.eventType && x.count === y.count && Math.abs(x.sum - y.sum) <= 1e-9 * Math.max(1, Math.abs(x.sum));
  });
}

/** Downloads every raw object of the run's bucket into a folder of its own: their keys and local files. */
export async function downloadArchive(cfg: Config): Promise<{ keys: string[]; files: string[] }> {
  const s3 = createS3(cfg);
  try {
    const keys = await listKeys(s3, cfg.SLUICE_RAW_BUCKET, 'events/');
    const dir = path.join(cfg.SLUICE_DATA_DIR, 'archive-read', randomBytes(4).toString('hex'));
    mkdirSync(dir, { recursive: true });
    const files: string[] = [];
    for (const k of keys) {
      const f = path.join(dir, k.replaceAll('/', '_'));
      await downloadTo(s3, cfg.SLUICE_RAW_BUCKET, k, f);
      files.push(f);
    }
    await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duck') });
    return { keys, files };
  } finally {
    s3.destroy();
  }
}

/** Every event id in the raw archive with how often it is stored (what an analyst sums, read with DuckDB), and the archive's keys. */
export async function archivedEventIds(cfg: Config): Promise<{ keys: string[]; counts: Map<string, number> }> {
  const { keys, files } = await downloadArchive(cfg);
  if (!files.length) return { keys, counts: new Map() };
  const rows = await queryParquet(`SELECT event_id, count(*)::INT AS n FROM read_parquet(${parquetFiles(files)}) GROUP BY 1`);
  return { keys, counts: new Map(rows.map((r) => [r.event_id as string, r.n as number])) };
}

/** How many rows each event id has across every raw object of the run's bucket. */
export async function archiveEventIdCounts(cfg: Config): Promise<Map<string, number>> {
  return (await archivedEventIds(cfg)).counts;
}
