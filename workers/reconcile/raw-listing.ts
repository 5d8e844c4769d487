// Lists the raw archive's batch objects whose event-time hour lies in [fromMs, toMs), with their size and when
// they were written: one paged ListObjectsV2 per event-time day (events/dt=…/), the hours filtered here.
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { parseRawEventsKey, RAW_EVENTS_PREFIX } from '../../shared/contracts/parquet-schema.js';
import { classify } from '../../shared/errors.js';
import { withRetry } from '../../shared/retry.js';

export interface ListedBatch {
  key: string;
  bytes: number;
  /** When the object was written (S3 LastModified), epoch ms. */
  writtenMs: number;
  /** Start of its event-time hour, epoch ms. */
  hourMs: number;
}

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** Event-time days (YYYY-MM-DD) touching [fromMs, toMs). */
export function daysOf(fromMs: number, toMs: number): string[] {
  const days: string[] = [];
  for (let t = Math.floor(fromMs / DAY_MS) * DAY_MS; t < toMs; t += DAY_MS) days.push(new Date(t).toISOString().slice(0, 10));
  return days;
}

/** Yields one page of batch objects at a time (so a long listing is processed, and reported, as it goes). */
export async function* listBatches(s3: S3Client, bucket: string, fromMs: number, toMs: number): AsyncGenerator<ListedBatch[]> {
  const firstHour = Math.floor(fromMs / HOUR_MS) * HOUR_MS;
  for (const dt of daysOf(fromMs, toMs)) {
    const prefix = `${RAW_EVENTS_PREFIX}dt=${dt}/`;
    let token: string | undefined;
    do {
      const r = await withRetry(() =>
        s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token })).catch((err: unknown) => {
          throw classify(err, `listing s3://${bucket}/${prefix}`);
        }),
      );
      const page: ListedBatch[] = [];
      for (const o of r.Contents ?? []) {
        const k = o.Key ? parseRawEventsKey(o.Key) : undefined;
        if (!k) continue;
        const hourMs = Date.parse(`${k.dt}T${k.hour}:00:00.000Z`);
        if (hourMs < firstHour || hourMs >= toMs) continue;
        page.push({ key: o.Key!, bytes: o.Size ?? 0, writtenMs: o.LastModified?.getTime() ?? 0, hourMs });
      }
      if (page.length) yield page;
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }
}
