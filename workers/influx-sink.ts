// Writes a batch's per-minute partial aggregates to InfluxDB as points stamped minuteStart + offset(batch)
// (line protocol formatted by the Parquet engine, sent by shared/clients/influx.ts), with retries. Rewriting a batch
// replaces its own points exactly. This file holds the worker's policy: chunks in flight, retries, narrowing.
// Points InfluxDB refuses (HTTP 400: unparseable, series limits, field type conflicts) never fail the batch: the
// refused chunk is split in halves until the refused lines are isolated, and those are returned with InfluxDB's reason.
import type { InfluxLineWriter } from '../shared/clients/influx.js';
import { withRetry } from '../shared/retry.js';

export interface InfluxSinkOptions {
  /** The line-protocol client (shared/clients/influx.ts): the request, its auth and the classification of its errors. */
  writer: InfluxLineWriter;
  /** Told when InfluxDB dropped points older than the hot retention (a redriven or very late batch). */
  onDroppedBeyondRetention?: (detail: string) => void;
}

/** Write requests in flight per batch. */
export const WRITE_CONCURRENCY = 2;

/** Why InfluxDB refused a point: the `reason` label of sluice_worker_influx_rejected_points_total and the quarantine reason. */
export type InfluxRejection = 'series_limit' | 'unparseable' | 'field_type_conflict' | 'influx_rejected';

/** A line InfluxDB refused: line `line` of chunk `chunk` (as passed to writeLines). */
export interface RejectedLine {
  chunk: number;
  line: number;
  reason: InfluxRejection;
  /** InfluxDB's answer (first 500 characters). */
  detail: string;
}

/** Reads InfluxDB's 400 answer: its reason, and how many points it says it dropped (a partial write). */
export function parseInfluxRejection(text: string): { reason: InfluxRejection; dropped?: number } {
  const dropped = /dropped=(\d+)/.exec(text);
  const reason: InfluxRejection = /max-values-per-tag limit exceeded|max-series-per-database limit exceeded/.test(text)
    ? 'series_limit'
    : /unable to parse/.test(text)
      ? 'unparseable'
      : /field type conflict/.test(text)
        ? 'field_type_conflict'
        : 'influx_rejected';
  return dropped ? { reason, dropped: Number(dropped[1]) } : { reason };
}

/** Minutes older than the hot retention: InfluxDB drops those points and writes the rest, the intended outcome. */
const onlyBeyondRetention = (text: string) =>
  /points beyond retention policy dropped/.test(text) && !/field type conflict|unable to parse|limit exceeded/.test(text);

export class InfluxSink {
  constructor(private readonly o: InfluxSinkOptions) {}

  /**
   * Writes chunks of line protocol prepared by the Parquet engine (see BatchScan.minuteLines), WRITE_CONCURRENCY
   * requests at a time; transient failures are retried, other failures than a 400 throw (shared/errors classifyInfluxError).
   * Returns the lines InfluxDB refused (empty when all were written). Points are idempotent, so a chunk narrowed
   * after a partial write rewrites its good points harmlessly. Cost: one request per chunk; a refused chunk of n lines
   * with k refused lines costs at most about 2·k·log2(n) more, and one when InfluxDB says it dropped every line.
   */
  async writeLines(chunks: readonly string[], signal?: AbortSignal): Promise<RejectedLine[]> {
    const rejected: RejectedLine[] = [];
    let next = 0;
    const lane = async () => {
      while (next < chunks.length) {
        signal?.throwIfAborted();
        const chunk = next++;
        const body = chunks[chunk]!;
        const refused = await this.post(body);
        if (refused !== undefined) await this.narrow(chunk, body.split('\n'), 0, refused, rejected, signal);
      }
    };
    await Promise.all(Array.from({ length: WRITE_CONCURRENCY }, lane));
    return rejected.sort((a, b) => a.chunk - b.chunk || a.line - b.line);
  }

  /** `lines` (starting at `offset` of chunk `chunk`) were refused with `text`: finds the refused ones by halving. */
  private async narrow(chunk: number, lines: string[], offset: number, text: string, out: RejectedLine[], signal?: AbortSignal): Promise<void> {
    // `dropped` counts points refused by limits, not unparseable lines (a partial write says dropped=0 for those).
    const { reason, dropped } = parseInfluxRejection(text);
    if (lines.length === 1 || dropped === lines.length) {
      for (let i = 0; i < lines.length; i++) out.push({ chunk, line: offset + i, reason, detail: text });
      return;
    }
    const half = Math.ceil(lines.length / 2);
    for (const [part, at] of [
      [lines.slice(0, half), offset],
      [lines.slice(half), offset + half],
    ] as const) {
      signal?.throwIfAborted();
      const refused = await this.post(part.join('\n'));
      if (refused !== undefined) await this.narrow(chunk, part, at, refused, out, signal);
    }
  }

  /** One write request, with retries of transient failures. Resolves undefined when stored, or InfluxDB's 400 answer. */
  private post(body: string): Promise<string | undefined> {
    return withRetry(
      async () => {
        const refused = await this.o.writer.write(body);
        if (refused !== undefined && onlyBeyondRetention(refused)) {
          this.o.onDroppedBeyondRetention?.(refused);
          return undefined;
        }
        return refused;
      },
      { maxAttempts: 3, initialDelayMs: 200, maxDelayMs: 2_000 },
    );
  }
}
