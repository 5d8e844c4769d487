// Rebuilds the batch manifest of a raw archive object from the object alone (key, size, the metadata ingest set on
// it) and sends manifests to the batch queue. What a worker then does with it is idempotent per batch key, so
// announcing a batch that was already announced (or delivered) changes no count.
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { encodeManifest, MANIFEST_VERSION, type BatchManifest } from '../../shared/contracts/manifest.js';
import { parseRawEventsKey, RAW_OBJECT_METADATA } from '../../shared/contracts/parquet-schema.js';
import { classify, PermanentError, TransientError } from '../../shared/errors.js';
import { queueUrl } from '../../shared/clients/aws.js';
import { withRetry } from '../../shared/retry.js';

const HOUR_MS = 3_600_000;

/**
 * The manifest of s3://bucket/key from its size and metadata. The event-time bounds are the bounds of the key's
 * hour partition (every event of the object lies in it; the exact min/max are not kept on the object).
 * Throws PermanentError raw_object_unannounceable when the key or metadata do not come from ingest.
 */
export function manifestOfObject(bucket: string, key: string, bytes: number, metadata: Record<string, string>, nowMs = Date.now()): BatchManifest {
  const where = `s3://${bucket}/${key}`;
  const parsed = parseRawEventsKey(key);
  const sha256 = metadata[RAW_OBJECT_METADATA.sha256];
  const eventCount = Number(metadata[RAW_OBJECT_METADATA.eventCount]);
  const schemaVersion = Number(metadata[RAW_OBJECT_METADATA.schemaVersion]);
  if (!parsed || !sha256 || !/^[0-9a-f]{64}$/.test(sha256) || !Number.isInteger(eventCount) || eventCount < 1 || !Number.isInteger(schemaVersion))
    throw new PermanentError(
      `${where} cannot be announced: it lacks the metadata ingest sets (${Object.values(RAW_OBJECT_METADATA).join(', ')}) or is not a raw batch key; leave it or delete it`,
      'raw_object_unannounceable',
    );
  const hourStart = Date.parse(`${parsed.dt}T${parsed.hour}:00:00.000Z`);
  return {
    manifestVersion: MANIFEST_VERSION,
    bucket,
    key,
    eventCount,
    minEventTime: new Date(hourStart).toISOString(),
    maxEventTime: new Date(hourStart + HOUR_MS - 1).toISOString(),
    byteSize: bytes,
    checksum: { algorithm: 'sha256', value: sha256 },
    schemaVersion,
    producer: parsed.node,
    createdAt: new Date(nowMs).toISOString(),
  };
}

/** Sends manifests to `queueName`, ten per request, retrying transient faults and entries SQS refused. */
export async function sendManifests(sqs: SQSClient, queueName: string, manifests: readonly BatchManifest[]): Promise<void> {
  if (!manifests.length) return;
  const url = await queueUrl(sqs, queueName);
  for (let i = 0; i < manifests.length; i += 10) {
    let entries = manifests.slice(i, i + 10).map((m, j) => ({ Id: String(j), MessageBody: encodeManifest(m) }));
    await withRetry(async () => {
      const r = await sqs.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries })).catch((err: unknown) => {
        throw classify(err, `send to SQS queue ${queueName}`);
      });
      const failed = new Set((r.Failed ?? []).map((f) => f.Id));
      if (failed.size) {
        entries = entries.filter((e) => failed.has(e.Id));
        throw new TransientError(`SQS queue ${queueName} refused ${failed.size} manifest(s): ${r.Failed?.map((f) => f.Message).join('; ')}`, 'sqs_send_failed');
      }
    });
  }
}
