// Writes a batch's per-minute partial aggregates to InfluxDB as points stamped minuteStart + offset(batch)
// (line protocol formatted by the Parquet engine), with retries. Rewriting a batch replaces its own points exactly.
import { PermanentError, TransientError, classify, errorMessage, type SluiceError } from '../shared/errors.js';
import { withRetry } from '../shared/retry.js';

/**
 * node-influx reports "all hosts down" as ServiceNotAvailableError and HTTP errors as RequestError with
 * the response attached; neither carries a status the shared classifier sees, so they are mapped here.
 */
export function classifyInfluxError(err: unknown): SluiceError {
  const e = err as { name?: string; constructor?: { name?: string }; res?: { statusCode?: number } };
  const kind = e.constructor?.name ?? e.name;
  if (kind === 'ServiceNotAvailableError') return new TransientError(`InfluxDB unavailable: ${errorMessage(err)}`, 'influx_unavailable', { cause: err });
  const status = e.res?.statusCode;
  if (status !== undefined) {
    return status >= 500 || status === 429 || status === 408
      ? new TransientError(`InfluxDB write failed: ${errorMessage(err)}`, 'influx_unavailable', { cause: err })
      : new PermanentError(`InfluxDB rejected the write: ${errorMessage(err)}`, 'influx_rejected', { cause: err });
  }
  return classify(err, 'InfluxDB write');
}

export interface InfluxSinkOptions {
  /** InfluxDB HTTP API base URL (line-protocol writes go straight to /write). */
  url: string;
  database: string;
  /** Observes each request's latency in seconds. */
  observeLatency?: (seconds: number) => void;
  /** Told when InfluxDB dropped points older than the hot retention (a redriven or very late batch). */
  onDroppedBeyondRetention?: (detail: string) => void;
}

/** Write requests in flight per batch. */
export const WRITE_CONCURRENCY = 2;

export class InfluxSink {
  constructor(private readonly o: InfluxSinkOptions) {}

  /**
   * Writes chunks of line protocol prepared by the Parquet engine (see BatchScan.minuteLines), WRITE_CONCURRENCY
   * requests at a time, with the same retry and error classification as write().
   */
  async writeLines(chunks: readonly string[], signal?: AbortSignal): Promise<void> {
    const u = new URL(this.o.url);
    const auth = u.username
      ? { authorization: `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}` }
      : undefined;
    const endpoint = `${u.origin}/write?db=${encodeURIComponent(this.o.database)}&precision=n`;
    let next = 0;
    const lane = async () => {
      while (next < chunks.length) {
        signal?.throwIfAborted();
        const body = chunks[next++]!;
        await withRetry(
          async () => {
            const t0 = performance.now();
            let res: Response;
            try {
              res = await fetch(endpoint, {
                method: 'POST',
                body,
                headers: { 'content-type': 'text/plain; charset=utf-8', ...auth },
                signal: AbortSignal.timeout(60_000),
              });
            } catch (err) {
              throw new TransientError(`InfluxDB unavailable at ${u.origin}: ${errorMessage(err)}`, 'influx_unavailable', { cause: err });
            } finally {
              this.o.observeLatency?.((performance.now() - t0) / 1000);
            }
            if (res.status === 204) return;
            const text = (await res.text()).slice(0, 500);
            // Minutes older than the retention of events_1m are no longer kept hot (rollups and the archive hold
            // them); InfluxDB drops those points and writes the rest, which is the intended outcome.
            if (res.status === 400 && /points beyond retention policy dropped/.test(text) && !/field type conflict|unable to parse/.test(text)) {
              this.o.onDroppedBeyondRetention?.(text);
              return;
            }
            throw classifyInfluxError(Object.assign(new Error(`HTTP ${res.status}: ${text}`), { res: { statusCode: res.status } }));
          },
          { maxAttempts: 3, initialDelayMs: 200, maxDelayMs: 2_000 },
        );
      }
    };
    await Promise.all(Array.from({ length: WRITE_CONCURRENCY }, lane));
  }
}
