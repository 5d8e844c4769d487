// Builds real batches for worker tests the way ingest does: events → staged NDJSON → Parquet (ingest/parquet-batch-writer)
// → S3 object with its sha256 → manifest on SQS; plus the exact expected aggregates and readers of the results.
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../../shared/config.js';
import { createS3, createSqs, queueUrl } from '../../shared/clients/aws.js';
import { queueBacklog } from '../../shared/queue-stats.js';
import { MEASUREMENT_1M } from '../../shared/contracts/influx-series.js';
import { createInflux } from '../../shared/clients/influx.js';
import type { Event } from '../../shared/contracts/event.js';
import { encodeEventLine } from '../../shared/contracts/event-line.js';
import { encodeManifest, type BatchManifest } from '../../shared/contracts/manifest.js';
import { PARQUET_SCHEMA_VERSION, rawEventsKey } from '../../shared/contracts/parquet-schema.js';
import { openEngine } from '../../shared/parquet.js';
import { writeEventBatches } from '../../ingest/parquet-batch-writer.js';
import { sleep } from '../../shared/retry.js';

export function testEvent(eventId: string, entityId: string, timestamp: number, value = 1, eventType = 'view'): Event {
  return { eventId, entityId, eventType, timestamp, value, dims: null };
}

/** Start of the hour two hours ago: event times far enough back that every minute is complete. */
export function pastHour(): number {
  return Math.floor(Date.now() / 3_600_000) * 3_600_000 - 2 * 3_600_000;
}

/** `n` events with unique ids over `entities` entities and two event types, spread over `minutes` minutes from `start`. */
export function randomEvents(n: number, opts: { start: number; minutes?: number; entities?: number; idPrefix?: string }): Event[] {
  const prefix = opts.idPrefix ?? randomBytes(4).toString('hex');
  const span = (opts.minutes ?? 5) * 60_000;
  const out: Event[] = [];
  for (let i = 0; i < n; i++) {
    const entity = `e${(i * 7919) % (opts.entities ?? 20)}`;
    out.push(testEvent(`${prefix}-${i}`, entity, opts.start + ((i * 104_729) % span), ((i * 31) % 97) / 4 - 3, i % 3 === 0 ? 'like' : 'view'));
  }
  return out;
}

export interface UploadedBatch {
  manifest: BatchManifest;
  body: string;
  events: Event[];
  /** The object's bytes (uploaded unless skipUpload). */
  bytes: Buffer;
}

export interface UploadOptions {
  /** Replace the object's bytes (the manifest still describes them correctly: a "corrupt batch"). */
  bytes?: Buffer;
  /** Manifest checksum that does not match the object. */
  wrongChecksum?: boolean;
  /** Send a manifest for an object that was never uploaded. */
  skipUpload?: boolean;
  manifestVersion?: string;
}

let seq = 0;

/** Writes `events` as Parquet (one file per event-time hour) and uploads each as a batch; returns their manifests. */
export async function uploadBatches(cfg: Config, events: readonly Event[], opts: UploadOptions = {}): Promise<UploadedBatch[]> {
  await openEngine({ tempDir: path.join(cfg.SLUICE_DATA_DIR, 'duckdb-tmp') });
  const dir = path.join(cfg.SLUICE_DATA_DIR, 'test-batches', `${Date.now()}-${seq++}-${randomBytes(3).toString('hex')}`);
  mkdirSync(dir, { recursive: true });
  const lines = path.join(dir, 'staged.ndjson');
  writeFileSync(lines, events.map((e) => encodeEventLine(e, Date.now(), 'test')).join(''));
  const written = await writeEventBatches([lines], path.join(dir, 'out'));
  const s3 = createS3(cfg);
  try {
    const out: UploadedBatch[] = [];
    for (const w of written) {
      const bytes = opts.bytes ?? readFileSync(w.file);
      const unique = randomBytes(6).toString('hex');
      const key = rawEventsKey(w.partition, cfg.SLUICE_NODE_ID, unique);
      if (!opts.skipUpload) await s3.send(new PutObjectCommand({ Bucket: cfg.SLUICE_RAW_BUCKET, Key: key, Body: bytes }));
      const sha = createHash('sha256').update(bytes).digest('hex');
      const manifest: BatchManifest = {
        manifestVersion: opts.manifestVersion ?? '1.0',
        bucket: cfg.SLUICE_RAW_BUCKET,
        key,
        eventCount: w.eventCount,
        minEventTime: new Date(w.minEventTimeMs).toISOString(),
        maxEventTime: new Date(w.maxEventTimeMs).toISOString(),
        byteSize: bytes.length,
        checksum: { algorithm: 'sha256', value: opts.wrongChecksum ? sha.replace(/^./, (c) => (c === '0' ? '1' : '0')) : sha },
        schemaVersion: PARQUET_SCHEMA_VERSION,
        producer: 'test',
        createdAt: new Date().toISOString(),
      };
      const { manifestVersion, ...rest } = manifest;
      const body = manifestVersion === '1.0' ? encodeManifest(rest) : JSON.stringify(manifest);
      const hour = Math.floor(w.minEventTimeMs / 3_600_000);
      out.push({ manifest, body, bytes, events: events.filter((e) => Math.floor(e.timestamp / 3_600_000) === hour) });
    }
    return out;
  } finally {
    s3.destroy();
  }
}

/** Sends manifest bodies to the batch queue; returns the SQS message ids. */
export async function sendManifests(cfg: Config, bodies: readonly string[]): Promise<string[]> {
  const sqs = createSqs(cfg);
  try {
    const url = await queueUrl(sqs, cfg.SLUICE_QUEUE_NAME);
    const ids: string[] = [];
    for (const b of bodies) ids.push((await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: b }))).MessageId!);
    return ids;
  } finally {
    sqs.destroy();
  }
}

/** Visible + in-flight (+ delayed) messages of a queue. */
export async function queueDepth(cfg: Config, name: string): Promise<number> {
  const sqs = createSqs(cfg);
  try {
    return await queueBacklog(sqs, name);
  } finally {
    sqs.destroy();
  }
}

export interface Agg {
  count: number;
  sum: number;
  min: number;
  max: number;
}

/** Expected per-(entity|type|minute) aggregates, each event id counted once (first occurrence wins). */
export function groundTruth(events: Iterable<Event>): Map<string, Agg> {
  const seen = new Set<string>();
  const out = new Map<string, Agg>();
  for (const e of events) {
    if (seen.has(e.eventId)) continue;
    seen.add(e.eventId);
    const k = `${e.entityId}|${e.eventType}|${Math.floor(e.timestamp / 60_000) * 60_000}`;
    const a = out.get(k);
    if (!a) out.set(k, { count: 1, sum: e.value, min: e.value, max: e.value });
    else {
      a.count++;
      a.sum += e.value;
      a.min = Math.min(a.min, e.value);
      a.max = Math.max(a.max, e.value);
    }
  }
  return out;
}

/**
 * What a reader sees, queried the way the query API does: every batch writes its own point inside the minute,
 * so a minute's value is sum(count), sum(sum), min(min), max(max) GROUP BY time(1m).
 */
export async function influxAggregates(cfg: Config, fromMs: number, toMs: number): Promise<Map<string, Agg>> {
  const rows = await createInflux(cfg).query<{ time: Date; entity_id: string; event_type: string; c: number; s: number; mn: number; mx: number }>(
    `SELECT sum("count") AS c, sum("sum") AS s, min("min") AS mn, max("max") AS mx FROM ${MEASUREMENT_1M}
     WHERE time >= ${fromMs}ms AND time < ${toMs}ms GROUP BY time(1m), entity_id, event_type fill(none)`,
  );
  const out = new Map<string, Agg>();
  for (const r of rows) out.set(`${r.entity_id}|${r.event_type}|${r.time.getTime()}`, { count: r.c, sum: r.s, min: r.mn, max: r.mx });
  return out;
}

export function totalCount(m: Map<string, Agg>): number {
  let n = 0;
  for (const a of m.values()) n += a.count;
  return n;
}

/** Polls `check` until it returns true or `timeoutMs` passes (then throws with `what`). */
export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Sum-compare of two aggregate maps with float tolerance; returns the differing keys (empty = equal). */
export function diffAggregates(actual: Map<string, Agg>, expected: Map<string, Agg>): string[] {
  const bad: string[] = [];
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
  for (const k of new Set([...actual.keys(), ...expected.keys()])) {
    const a = actual.get(k);
    const e = expected.get(k);
    if (!a || !e || a.count !== e.count || !close(a.sum, e.sum) || !close(a.min, e.min) || !close(a.max, e.max))
      bad.push(`${k}: got ${JSON.stringify(a)} want ${JSON.stringify(e)}`);
  }
  return bad;
}

/** Samples of one metric in Prometheus text: exactly `name` (or `name{…}`), with `label` among its labels. */
function metricSamples(text: string, name: string, label: string): number[] {
  const out: number[] = [];
  for (const l of text.split('\n')) {
    if (!l.startsWith(name)) continue;
    const rest = l.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    if (label && !(rest[0] === '{' && rest.slice(0, rest.lastIndexOf('}') + 1).includes(label))) continue;
    out.push(Number(l.split(' ').pop()));
  }
  return out;
}

/**
 * Value of one sample of a service's /metrics (`name`, with `label` among its labels, e.g. 'outcome="delivered"').
 * Throws when no such sample is exposed, so a renamed metric or label fails the test instead of reading as 0.
 */
export async function metricValue(url: string, name: string, label = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const [v] = metricSamples(text, name, label);
  if (v === undefined) throw new Error(`${url}/metrics has no sample ${name}${label ? `{${label}}` : ''}`);
  return v;
}

/**
 * Like metricValue, but 0 when the labelled sample has not been created yet (a counter with labels shows a label
 * set only once it is first incremented). The metric itself must be declared (# TYPE), so a rename still fails.
 * Use only where a sample legitimately may not exist yet.
 */
export async function metricValueOrZero(url: string, name: string, label = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  if (!text.includes(`# TYPE ${name} `)) throw new Error(`${url}/metrics does not declare ${name}`);
  return metricSamples(text, name, label)[0] ?? 0;
}

/** Settings that make a test worker react in about a second instead of production's tens of seconds. */
export const FAST_WORKER_ENV: Record<string, string> = {
  SLUICE_WORKER_POLL_WAIT: '1s',
  SLUICE_VISIBILITY_TIMEOUT: '6s',
  SLUICE_RELEASE_BACKOFF: '1s',
  SLUICE_WORKER_SHUTDOWN_GRACE: '2s',
};
