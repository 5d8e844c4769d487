// Writes a batch's per-minute partial aggregates to InfluxDB as points stamped minuteStart + offset(batch),
// in requests of SLUICE_INFLUX_BATCH_POINTS with retries. Rewriting a batch replaces its own points exactly.
import type { InfluxDB, IPoint } from 'influx';
import type { MinuteAggregate } from '../shared/parquet.js';
import { MEASUREMENT_1M, TAG_ENTITY, TAG_TYPE } from '../shared/clients/influx.js';
import { PermanentError, TransientError, classify, errorMessage, type SluiceError } from '../shared/errors.js';
import { withRetry } from '../shared/retry.js';
import { pointTimestampNs } from './point-offset.js';

export function toPoints(aggs: readonly MinuteAggregate[], offsetNs: bigint): IPoint[] {
  return aggs.map((a) => ({
    measurement: MEASUREMENT_1M,
    tags: { [TAG_ENTITY]: a.entityId, [TAG_TYPE]: a.eventType },
    fields: { count: a.count, sum: a.sum, min: a.min, max: a.max },
    timestamp: pointTimestampNs(a.minuteMs, offsetNs),
  }));
}

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
  influx: InfluxDB;
  database: string;
  pointsPerRequest: number;
  /** Observes each request's latency in seconds. */
  observeLatency?: (seconds: number) => void;
}

export class InfluxSink {
  constructor(private readonly o: InfluxSinkOptions) {}

  /** Writes all points (in order, chunked); transient failures are retried a few times before surfacing. */
  async write(points: readonly IPoint[], signal?: AbortSignal): Promise<void> {
    for (let i = 0; i < points.length; i += this.o.pointsPerRequest) {
      signal?.throwIfAborted();
      const chunk = points.slice(i, i + this.o.pointsPerRequest) as IPoint[];
      await withRetry(async () => {
        const t0 = performance.now();
        try {
          await this.o.influx.writePoints(chunk, { database: this.o.database, precision: 'n' });
        } catch (err) {
          throw classifyInfluxError(err);
        } finally {
          this.o.observeLatency?.((performance.now() - t0) / 1000);
        }
      }, { maxAttempts: 3, initialDelayMs: 200, maxDelayMs: 2_000 });
    }
  }
}
