// Runs the query API's InfluxDB statements, each bounded by SLUICE_QUERY_TIMEOUT and behind a circuit
// breaker so an outage answers at once instead of queueing requests. Every failure leaves as a SluiceError:
// retryable when InfluxDB is unavailable or slow (the API answers 503), permanent otherwise.
import type { InfluxDB } from 'influx';
import type { InfluxRawResponse as RawResponse } from '../shared/clients/influx.js';
// The influx package does not re-export its transport errors from the index.
import { RequestError, ServiceNotAvailableError } from 'influx/lib/src/pool.js';
import { BrokenCircuitError } from 'cockatiel';
import { PermanentError, SluiceError, TransientError, classify, errorMessage } from '../shared/errors.js';
import { dependencyBreaker } from '../shared/retry.js';
import { influxIdent } from '../shared/contracts/influx-series.js';
import type { Bucket } from './buckets.js';
import { statsQuery, totalQuery } from './influxql.js';
import type { InfluxQueryKind, QueryMetrics } from './metrics.js';
import type { StatsRequest, TotalRequest } from './params.js';

/** Consecutive unavailability failures that open the breaker, and how long it stays open. */
export const BREAKER_FAILURES = 5;
export const BREAKER_OPEN_MS = 5_000;

const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
const numOrNull = (v: unknown): number | null => (typeof v === 'number' ? v : null);

/** Rows of statement `index`'s single series as objects keyed by column (none when no data). */
function rowsOf(raw: RawResponse, database: string, index = 0): Record<string, unknown>[] {
  const result = raw.results?.[index];
  const error = raw.error ?? result?.error;
  if (error) {
    if (/database not found/i.test(error)) {
      throw new TransientError(`InfluxDB database "${database}" does not exist yet (workers create it on start): ${error}`, 'influx_database_missing');
    }
    // Rollup retention policies appear with the first rollup run; until then they simply hold nothing.
    if (/retention policy not found/i.test(error)) return [];
    throw new PermanentError(`InfluxDB rejected the query: ${error}`, 'influx_query_rejected');
  }
  const series = result?.series?.[0];
  if (!series) return [];
  return series.values.map((row) => Object.fromEntries(series.columns.map((c, i) => [c, row[i]])));
}

/** Influx client errors, classified once: unavailable, timed out, or a rejected request. */
function classifyInflux(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  if (err instanceof ServiceNotAvailableError) return new TransientError(`InfluxDB unavailable: ${err.message}`, 'influx_unavailable', { cause: err });
  if (err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError')) {
    return new TransientError('InfluxDB did not answer in time (SLUICE_QUERY_TIMEOUT)', 'influx_timeout', { cause: err });
  }
  if (err instanceof RequestError) {
    const status = err.res.statusCode ?? 0;
    return status >= 500 || status === 429
      ? new TransientError(`InfluxDB unavailable: ${err.message}`, 'influx_unavailable', { cause: err })
      : new PermanentError(`InfluxDB rejected the query: ${err.message}`, 'influx_query_rejected', { cause: err });
  }
  return classify(err, 'InfluxDB query');
}

export class InfluxReader {
  private readonly breaker = dependencyBreaker(BREAKER_FAILURES, BREAKER_OPEN_MS);

  constructor(
    private readonly influx: InfluxDB,
    private readonly database: string,
    private readonly metrics: QueryMetrics,
    private readonly timeoutMs: number,
  ) {}

  /** Per-bucket aggregates of one series over the request's range, oldest first. */
  async stats(req: StatsRequest): Promise<Bucket[]> {
    const rows = await this.run('stats', statsQuery(req));
    return rows.map((r) => [num(r.time), num(r.count), num(r.sum), numOrNull(r.min), numOrNull(r.max)]);
  }

  /** All-time count and sum of one series (zeros when it has no data). */
  async total(req: TotalRequest): Promise<{ count: number; sum: number }> {
    const [row] = await this.run('total', totalQuery(req));
    return { count: num(row?.count), sum: num(row?.sum) };
  }

  /**
   * Several statements in one request (one round trip, one timeout), e.g. the resolutions a federated
   * answer is stitched from; returns the rows of each statement in order.
   */
  async runMany(kind: InfluxQueryKind, statements: readonly string[]): Promise<Record<string, unknown>[][]> {
    return this.runRaw(kind, statements.join('; '), (raw) => statements.map((_, i) => rowsOf(raw, this.database, i)));
  }

  /** Names of the database's retention policies (rollup policies appear with the first rollup run). */
  async retentionPolicies(): Promise<Set<string>> {
    const rows = await this.run('stats', `SHOW RETENTION POLICIES ON ${influxIdent(this.database)}`);
    return new Set(rows.map((r) => String(r.name)));
  }

  /** Undefined when InfluxDB answers a ping, otherwise why not. */
  async unready(): Promise<string | undefined> {
    try {
      const hosts = await this.influx.ping(Math.min(this.timeoutMs, 2_000));
      return hosts.some((h) => h.online) ? undefined : 'InfluxDB does not answer ping';
    } catch (err) {
      return `InfluxDB ping failed: ${errorMessage(err)}`;
    }
  }

  private async run(kind: InfluxQueryKind, q: string): Promise<Record<string, unknown>[]> {
    return this.runRaw(kind, q, (raw) => rowsOf(raw, this.database));
  }

  private async runRaw<T>(kind: InfluxQueryKind, q: string, parse: (raw: RawResponse) => T): Promise<T> {
    const end = this.metrics.influxDuration.startTimer({ query: kind });
    try {
      const rows = await this.breaker.execute(async () => {
        try {
          const raw = (await this.influx.queryRaw(q, { precision: 'ms', signal: AbortSignal.timeout(this.timeoutMs) })) as RawResponse;
          return parse(raw);
        } catch (err) {
          throw classifyInflux(err);
        }
      });
      end({ outcome: 'ok' });
      return rows;
    } catch (err) {
      end({ outcome: 'error' });
      if (err instanceof BrokenCircuitError) {
        throw new TransientError(
          `InfluxDB unavailable: ${BREAKER_FAILURES} consecutive queries failed; retrying it in at most ${BREAKER_OPEN_MS / 1000}s`,
          'influx_unavailable',
          { cause: err },
        );
      }
      throw err;
    }
  }
}
