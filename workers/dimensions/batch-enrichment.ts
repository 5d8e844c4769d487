// The enrichment stage of a batch (SLUICE_DIMENSIONS set): after the batch's entity points are written and its
// refused points known, its per-minute aggregates by attribute (attribute-lines.ts) are written as their own series,
// stamped like the entity points (minute + the batch's offset), so a redelivery overwrites them. A rewrite of a batch
// with another table version than before (a replay after `sluice dimensions load`) could leave points of values the
// new version no longer gives the batch's entities, counting them twice; so each batch also writes a marker point
// (dimension_batches, at its first minute + offset) naming its version, and when the marker names another version the
// batch's earlier attribute points (at exactly its timestamps) are deleted before the rewrite. Cost per batch: one
// engine query over the batch, one InfluxDB read of the marker, and the writes; the delete only on a version change.
import type { InfluxDB } from 'influx';
import type { InfluxRawResponse } from '../../shared/clients/influx.js';
import { ATTRIBUTE_1M_REGEX, FIELD_DIM_VERSION, MEASUREMENT_DIMENSION_BATCHES, influxIdent } from '../../shared/contracts/influx-series.js';
import type { DimensionStore } from '../../shared/dimension-store.js';
import { PermanentError, SluiceError, TransientError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { withRetry } from '../../shared/retry.js';
import type { BatchScan } from '../batch-scan-types.js';
import type { InfluxSink } from '../influx-sink.js';
import { batchOffsetNs } from '../point-offset.js';
import { attributeLines } from './attribute-lines.js';

export interface BatchEnrichmentOptions {
  store: DimensionStore;
  /** SLUICE_DIMENSIONS: the attributes counted (those the table version lacks are skipped, with a warning). */
  attributes: readonly string[];
  sink: InfluxSink;
  /** For the marker read and the delete (InfluxQL). */
  influx: InfluxDB;
  database: string;
  /** Points per InfluxDB write request. */
  pointsPerRequest: number;
  log: Logger;
}

export interface EnrichmentResult {
  /** Table version the batch was counted with (0: none loaded). */
  version: number;
  points: number;
  /** Attribute points InfluxDB refused (logged; the entity series are the record, so the batch is still delivered). */
  refused: number;
  /** The marker named another version: the batch's earlier attribute points were deleted first. */
  rewritten: boolean;
}

const ns = (minuteMs: number, offsetNs: bigint) => BigInt(minuteMs) * 1_000_000n + offsetNs;

export class BatchEnrichment {
  private warnedMissing = new Set<number>();

  constructor(private readonly o: BatchEnrichmentOptions) {}

  /** Writes the attribute points of `scan` (a batch whose entity points are durable); resolves once they are durable. */
  async apply(scan: BatchScan, batchKey: string, signal: AbortSignal): Promise<EnrichmentResult> {
    const lease = this.o.store.acquire();
    try {
      const attributes = this.o.attributes.filter((a) => lease.attributes.includes(a));
      if (lease.version > 0 && attributes.length < this.o.attributes.length && !this.warnedMissing.has(lease.version)) {
        this.warnedMissing.add(lease.version);
        this.o.log.warn(
          { version: lease.version, missing: this.o.attributes.filter((a) => !attributes.includes(a)), has: lease.attributes },
          'SLUICE_DIMENSIONS names attributes the dimension table version does not have: they get no points',
        );
      }
      const offsetNs = batchOffsetNs(batchKey);
      const lines = await scan.withCountedRows((c, rows) => attributeLines(c, rows, lease, attributes, { offsetNs, linesPerChunk: this.o.pointsPerRequest }));
      const result: EnrichmentResult = { version: lease.version, points: lines.points, refused: 0, rewritten: false };
      if (lines.minutesMs.length === 0) return result;
      const markerAt = ns(lines.minutesMs[0]!, offsetNs);
      const marked = await this.markerVersion(markerAt);
      signal.throwIfAborted();
      if (marked !== undefined && marked !== lease.version) {
        await this.deletePoints(lines.minutesMs.map((m) => ns(m, offsetNs)));
        result.rewritten = true;
        this.o.log.info(
          { batchKey, was: marked, now: lease.version },
          'batch recounted with another dimension table version: its earlier attribute points deleted',
        );
      }
      if (marked !== lease.version && (marked !== undefined || lines.points > 0)) {
        const refused = await this.o.sink.writeLines([`${MEASUREMENT_DIMENSION_BATCHES} ${FIELD_DIM_VERSION}=${lease.version}i ${markerAt}`], signal);
        if (refused.length) throw new PermanentError(`InfluxDB refused the dimension marker of ${batchKey}: ${refused[0]!.detail}`, 'influx_rejected');
      }
      const refused = await this.o.sink.writeLines(lines.chunks, signal);
      result.refused = refused.length;
      if (refused.length)
        this.o.log.warn(
          { batchKey, refused: refused.length, reason: refused[0]!.reason, detail: refused[0]!.detail },
          'InfluxDB refused attribute points; the entity series of the batch are stored',
        );
      return result;
    } finally {
      lease.release();
    }
  }

  /** The dim_version of the batch's marker, or undefined when the batch never wrote attribute points. */
  private async markerVersion(at: bigint): Promise<number | undefined> {
    const raw = await this.query(
      `SELECT ${influxIdent(FIELD_DIM_VERSION)} FROM ${influxIdent(MEASUREMENT_DIMENSION_BATCHES)} WHERE time >= ${at} AND time <= ${at}`,
      'GET',
    );
    const v = raw.results?.[0]?.series?.[0]?.values?.[0]?.[1];
    return typeof v === 'number' ? v : undefined;
  }

  /** Deletes every attribute point at exactly these timestamps (the batch's own: no other batch has its offset). */
  private async deletePoints(stamps: readonly bigint[]): Promise<void> {
    for (let i = 0; i < stamps.length; i += 100) {
      const statements = stamps.slice(i, i + 100).map((t) => `DELETE FROM ${ATTRIBUTE_1M_REGEX} WHERE time >= ${t} AND time <= ${t}`);
      await this.query(statements.join('; '), 'POST');
    }
  }

  private query(q: string, method: 'GET' | 'POST'): Promise<InfluxRawResponse> {
    return withRetry(
      async () => {
        let raw: InfluxRawResponse;
        try {
          raw = (await this.o.influx.queryRaw(q, { database: this.o.database, precision: 'n', method })) as InfluxRawResponse;
        } catch (err) {
          if (err instanceof SluiceError) throw err;
          throw new TransientError(`InfluxDB query of the dimension enrichment failed: ${errorMessage(err)}`, 'influx_unavailable', { cause: err });
        }
        const error = raw.error ?? raw.results?.find((r) => r.error)?.error;
        if (error) throw new PermanentError(`InfluxDB rejected a query of the dimension enrichment: ${error}`, 'influx_rejected');
        return raw;
      },
      { maxAttempts: 3, initialDelayMs: 200, maxDelayMs: 2_000 },
    );
  }
}
