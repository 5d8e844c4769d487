// Keeps the rows of a batch that can never be counted (they break the event contract, or InfluxDB refused their
// point) in the quarantine object of the batch (contracts/quarantine.ts), one record per row with its reason.
// The object is the decision of record: a redelivered batch reads it back and excludes the same points everywhere.
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  QUARANTINE_META,
  QUARANTINE_REASONS,
  QUARANTINE_RECORD_VERSION,
  batchQuarantineKey,
  decodeQuarantineRecord,
  encodeQuarantineRecord,
  type QuarantineRecord,
} from '../shared/contracts/quarantine.js';
import { parseRawEventsKey } from '../shared/contracts/parquet-schema.js';
import { classify } from '../shared/errors.js';
import type { QuarantineRow, RejectedPoint } from './batch-scan-types.js';
import type { InfluxRejection } from './influx-sink.js';

/** Quarantine reasons that mean "InfluxDB refused the point" (the rest are contract reasons, re-derived from the file). */
const INFLUX_REASONS: ReadonlySet<string> = new Set<InfluxRejection>(['series_limit', 'unparseable', 'field_type_conflict', 'influx_rejected']);

/** A JSON number, or the text of a non-finite value (NaN, Infinity) as a string: JSON has no literal for them. */
const jsonNumber = (v: number | null) => (v === null ? 'null' : Number.isFinite(v) ? String(v) : JSON.stringify(String(v)));

/** A row as the event line ingest stages (contracts/event.ts EventLine), so a release can stage it again. */
export function eventLineOf(r: QuarantineRow): string {
  return (
    `{"i":${JSON.stringify(r.eventId)},"n":${JSON.stringify(r.entityId)},"t":${JSON.stringify(r.eventType)},"ts":${jsonNumber(r.timestampMs)},` +
    `"v":${jsonNumber(r.value)},"d":${r.dimsJson ?? 'null'},"it":${jsonNumber(r.ingestTimeMs)},"p":${JSON.stringify(r.producer)}}`
  );
}

function detailOf(r: QuarantineRow): string {
  if (r.detail !== undefined) return r.detail;
  const text = (QUARANTINE_REASONS as Record<string, string>)[r.reason] ?? r.reason;
  return r.field ? `${r.field}: ${text}` : text;
}

export class QuarantineSink {
  constructor(
    private readonly s3: S3Client,
    /** The raw bucket (SLUICE_RAW_BUCKET), which holds the quarantine prefix. */
    private readonly bucket: string,
  ) {}

  /**
   * The points InfluxDB refused when this batch was delivered before (from its quarantine object), or [] when the
   * batch has no quarantine object. S3 faults are TransientErrors.
   */
  async rejectedPoints(rawKey: string, signal?: AbortSignal): Promise<RejectedPoint[]> {
    const key = batchQuarantineKey(rawKey);
    let text: string;
    try {
      const res = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
      text = (await res.Body?.transformToString('utf8')) ?? '';
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return [];
      throw classify(err, `reading the quarantine of s3://${this.bucket}/${key}`);
    }
    const points = new Map<string, RejectedPoint>();
    let n = 0;
    for (const line of text.split('\n')) {
      n++;
      if (!line) continue;
      const r = decodeQuarantineRecord(line, `s3://${this.bucket}/${key} line ${n}`);
      if (!INFLUX_REASONS.has(r.reason)) continue;
      const e = JSON.parse(r.line) as { n: string; t: string; ts: number };
      const minuteMs = Math.floor(e.ts / 60_000) * 60_000;
      points.set(`${e.n}\u001f${e.t}\u001f${minuteMs}`, { entityId: e.n, eventType: e.t, minuteMs, reason: r.reason, detail: r.detail });
    }
    return [...points.values()];
  }

  /** Writes (or rewrites, identically but for the time) the quarantine object of the batch at `rawKey`. */
  async write(rawKey: string, rows: readonly QuarantineRow[], signal?: AbortSignal): Promise<string> {
    const key = batchQuarantineKey(rawKey);
    const node = parseRawEventsKey(rawKey)?.node ?? 'unknown';
    const at = new Date().toISOString();
    let body = '';
    for (const r of rows) {
      const record: QuarantineRecord = {
        v: QUARANTINE_RECORD_VERSION,
        kind: 'batch',
        line: eventLineOf(r),
        reason: r.reason,
        detail: detailOf(r),
        node,
        batch: rawKey,
        lineNo: r.rowNo + 1,
        quarantinedAt: at,
      };
      body += encodeQuarantineRecord(record);
    }
    try {
      await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentType: 'application/x-ndjson',
          Metadata: { [QUARANTINE_META.events]: String(rows.length), [QUARANTINE_META.firstReason]: rows[0]?.reason ?? '', [QUARANTINE_META.kind]: 'batch' },
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      throw classify(err, `writing the quarantine s3://${this.bucket}/${key}`);
    }
    return key;
  }
}
