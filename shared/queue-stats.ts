// Reads how many batch manifests wait in an SQS queue (visible), are being processed (in flight) or are delayed.
// One read used by the fleet supervisor (scaling) and the query API's ops summary (dashboard), so both count alike.
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { classify } from './errors.js';
import { queueUrl } from './clients/aws.js';

export interface QueueStats {
  visible: number;
  inFlight: number;
  delayed: number;
  /**
   * Age of the oldest message in seconds when the endpoint reports it. SQS itself publishes
   * ApproximateAgeOfOldestMessage only to CloudWatch, and the emulators not at all, so this is usually
   * undefined and callers fall back to the workers' sluice_worker_oldest_message_age_seconds.
   */
  oldestAgeSeconds?: number;
}

export async function readQueueStats(sqs: SQSClient, queueName: string): Promise<QueueStats> {
  try {
    const r = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: await queueUrl(sqs, queueName), AttributeNames: ['All'] }));
    const a = r.Attributes ?? {};
    const n = (v: string | undefined) => (v === undefined || Number.isNaN(Number(v)) ? 0 : Number(v));
    const age = (a as Record<string, string | undefined>).ApproximateAgeOfOldestMessage;
    return {
      visible: n(a.ApproximateNumberOfMessages),
      inFlight: n(a.ApproximateNumberOfMessagesNotVisible),
      delayed: n(a.ApproximateNumberOfMessagesDelayed),
      ...(age !== undefined && !Number.isNaN(Number(age)) ? { oldestAgeSeconds: Number(age) } : {}),
    };
  } catch (err) {
    throw classify(err, `SQS queue ${queueName}`);
  }
}

/** Messages not yet done: visible + in flight + delayed. */
export async function queueBacklog(sqs: SQSClient, queueName: string): Promise<number> {
  const q = await readQueueStats(sqs, queueName);
  return q.visible + q.inFlight + q.delayed;
}
