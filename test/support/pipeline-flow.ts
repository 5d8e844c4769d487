// The end-to-end flow the e2e tests share: a known set of events (exact counts, sums and top-K per entity and event
// type), the whole stack as real processes (ingest, two workers, query API), sending over HTTP, waiting until the
// pipeline has counted everything, and the checks a user sees: the query API's stats, all-time totals and top-K, and
// DuckDB over the archived Parquet objects.
import { expect } from 'vitest';
import type { Config } from '../../shared/config.js';
import { parquetFiles, queryParquet } from '../../shared/parquet.js';
import { downloadArchive } from './archive.js';
import { type ChildService, startProcess } from './processes.js';

export const PIPELINE_TYPES = ['view', 'like', 'share'] as const;

export interface PipelineEvent {
  eventId: string;
  entityId: string;
  eventType: string;
  timestamp: number;
  value: number;
}

export interface PipelineRun {
  events: PipelineEvent[];
  /** Exact count and sum per `<entity>|<event type>`. */
  expected: Map<string, { count: number; sum: number }>;
  /** A query range that holds every event (whole minutes). */
  from: number;
  to: number;
}

/** `n` events over 100 entities, 3 event types and 3 minutes ending well in the past (every minute complete). */
export function pipelineEvents(n = 10_000, idPrefix = 'e2e'): PipelineRun {
  const base = Math.floor((Date.now() - 10 * 60_000) / 60_000) * 60_000;
  const expected = new Map<string, { count: number; sum: number }>();
  const events = Array.from({ length: n }, (_, i) => {
    const e = {
      eventId: `${idPrefix}-${i}`,
      entityId: `video-${i % 100}`,
      eventType: PIPELINE_TYPES[Math.floor(i / 100) % 3]!,
      timestamp: base + (i % 180) * 1_000,
      value: (i % 5) + 1,
    };
    const k = `${e.entityId}|${e.eventType}`;
    const x = expected.get(k) ?? { count: 0, sum: 0 };
    x.count++;
    x.sum += e.value;
    expected.set(k, x);
    return e;
  });
  return { events, expected, from: base - 60_000, to: base + 5 * 60_000 };
}

export interface PipelineStack {
  ingestUrl: string;
  queryUrl: string;
  procs: ChildService[];
  stop(): Promise<void>;
}

/** Ingest, two workers and the query API as child processes of the `sluice` CLI. */
export async function startPipeline(env: Record<string, string>): Promise<PipelineStack> {
  const started = await Promise.allSettled([
    startProcess('ingest', env),
    startProcess('worker', env, 'worker-1'),
    startProcess('worker', env, 'worker-2'),
    startProcess('query', env),
  ]);
  const procs = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stop = async () => {
    await Promise.all(procs.map((p) => p.kill('SIGTERM')));
  };
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  const [ingest, , , query] = procs;
  return { ingestUrl: ingest!.url, queryUrl: query!.url, procs, stop };
}

/** POSTs `events` in requests of `perRequest`; each must be answered 202 with every event accepted (or, with `duplicates`, none). */
export async function postEvents(ingestUrl: string, events: readonly PipelineEvent[], opts: { perRequest?: number; duplicates?: boolean } = {}): Promise<void> {
  const per = opts.perRequest ?? 1_000;
  for (let i = 0; i < events.length; i += per) {
    const chunk = events.slice(i, i + per);
    const r = await fetch(`${ingestUrl}/v1/events`, { method: 'POST', body: JSON.stringify(chunk), headers: { 'content-type': 'application/json' } });
    const body = (await r.json()) as { accepted?: number; duplicates?: number; error?: string };
    expect({ status: r.status, error: body.error }).toEqual({ status: 202, error: undefined });
    if (opts.duplicates) expect({ accepted: body.accepted, duplicates: body.duplicates }).toEqual({ accepted: 0, duplicates: chunk.length });
    else expect(body.accepted).toBe(chunk.length);
  }
}

interface Stat {
  total: number;
  points: { t: string; value: number }[];
}

async function stat(queryUrl: string, run: PipelineRun, entity: string, type: string, fn: 'count' | 'sum'): Promise<Stat> {
  const r = await fetch(`${queryUrl}/v1/stats?entityId=${entity}&eventType=${type}&fn=${fn}&from=${run.from}&to=${run.to}&step=1m`);
  expect(r.status).toBe(200);
  return (await r.json()) as Stat;
}

/** Waits until the query API counts every event (the pipeline is asynchronous); fails after `timeoutMs`. */
export async function waitUntilCounted(queryUrl: string, run: PipelineRun, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let counted = 0;
  while (Date.now() < deadline) {
    const totals = await Promise.all([...run.expected.keys()].map((k) => stat(queryUrl, run, k.split('|')[0]!, k.split('|')[1]!, 'count')));
    counted = totals.reduce((n, t) => n + (t.total ?? 0), 0);
    if (counted >= run.events.length) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  expect({ counted, within: `${timeoutMs / 1000}s` }).toEqual({ counted: run.events.length, within: `${timeoutMs / 1000}s` });
}

/** Every series' count and sum, its per-minute points, and its all-time total (answered from the totals in Redis). */
export async function expectExactStats(queryUrl: string, run: PipelineRun): Promise<void> {
  for (const [k, want] of run.expected) {
    const [entity, type] = k.split('|') as [string, string];
    const [count, sum] = await Promise.all([stat(queryUrl, run, entity, type, 'count'), stat(queryUrl, run, entity, type, 'sum')]);
    expect({ k, count: count.total, sum: sum.total }).toEqual({ k, count: want.count, sum: want.sum });
    expect(count.points.reduce((n, p) => n + p.value, 0)).toBe(want.count);
    // The all-time total, the most frequent read, comes from the totals the workers keep in Redis.
    const total = await fetch(`${queryUrl}/v1/entities/${entity}/total?eventType=${type}`);
    expect(total.headers.get('x-sluice-cache')).toBe('totals');
    expect(await total.json()).toEqual({ entityId: entity, eventType: type, count: want.count, sum: want.sum });
  }
}

/** /v1/topk of the last hour for every event type: every entity with its exact count, most first. */
export async function expectExactTopK(queryUrl: string, run: PipelineRun): Promise<void> {
  for (const type of PIPELINE_TYPES) {
    const want = new Map<string, number>();
    for (const [k, v] of run.expected) if (k.endsWith(`|${type}`)) want.set(k.split('|')[0]!, v.count);
    const r = await fetch(`${queryUrl}/v1/topk?eventType=${type}&window=1h&k=${want.size}`);
    expect(r.status).toBe(200);
    const items = ((await r.json()) as { items: { entityId: string; count: number }[] }).items;
    expect({ type, counts: new Map(items.map((i) => [i.entityId, i.count])) }).toEqual({ type, counts: want });
    const counts = items.map((i) => i.count);
    expect(counts).toEqual([...counts].sort((a, b) => b - a));
  }
}

/** DuckDB over every archived Parquet object holds the same counts and sums. */
export async function expectArchiveAgrees(cfg: Config, run: PipelineRun): Promise<void> {
  const { files } = await downloadArchive(cfg);
  const rows = await queryParquet(`SELECT entity_id, event_type, count(*)::INT AS n, sum(value) AS s FROM read_parquet(${parquetFiles(files)}) GROUP BY ALL`);
  expect(rows).toHaveLength(run.expected.size);
  for (const r of rows) {
    const want = run.expected.get(`${r.entity_id}|${r.event_type}`)!;
    expect({ n: r.n, s: r.s }).toEqual({ n: want.count, s: want.sum });
  }
}
