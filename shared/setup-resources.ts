// Creates Sluice's buckets and queues (`sluice setup`) on any S3/SQS endpoint, as the config schema defines them
// (shared/config.ts resourcesOf). Idempotent: existing resources are kept; the batch queue gets its redrive policy to the DLQ.
import { CreateBucketCommand, HeadBucketCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, SetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { resourcesOf, type Config } from './config.js';
import { createS3, createSqs } from './clients/aws.js';
import { RETRY, withRetry } from './retry.js';

export interface ResourceNames {
  rawBucket: string;
  coldBucket: string;
  queue: string;
  deadLetterQueue: string;
}

export function resourceNames(cfg: Config): ResourceNames {
  return { rawBucket: cfg.SLUICE_RAW_BUCKET, coldBucket: cfg.SLUICE_COLD_BUCKET, queue: cfg.SLUICE_QUEUE_NAME, deadLetterQueue: cfg.SLUICE_DLQ_NAME };
}

export async function setupResources(cfg: Config, names: ResourceNames = resourceNames(cfg)): Promise<void> {
  const s3 = createS3(cfg);
  const sqs = createSqs(cfg);
  try {
    for (const bucket of [names.rawBucket, names.coldBucket]) {
      const exists = await s3.send(new HeadBucketCommand({ Bucket: bucket })).then(
        () => true,
        () => false,
      );
      if (!exists) await withRetry(() => s3.send(new CreateBucketCommand({ Bucket: bucket })), RETRY.resourceSetup);
    }
    const q = resourcesOf(cfg).queues;
    const dlq = await withRetry(
      () =>
        sqs.send(
          new CreateQueueCommand({
            QueueName: names.deadLetterQueue,
            Attributes: { MessageRetentionPeriod: String(q.deadLetter.messageRetentionSeconds) },
          }),
        ),
      RETRY.resourceSetup,
    );
    const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
    const main = await withRetry(() => sqs.send(new CreateQueueCommand({ QueueName: names.queue })), RETRY.resourceSetup);
    await sqs.send(
      new SetQueueAttributesCommand({
        QueueUrl: main.QueueUrl,
        Attributes: {
          VisibilityTimeout: String(q.batches.visibilityTimeoutSeconds),
          MessageRetentionPeriod: String(q.batches.messageRetentionSeconds),
          RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: q.batches.maxReceiveCount }),
        },
      }),
    );
  } finally {
    s3.destroy();
    sqs.destroy();
  }
}
