// Test helpers that read the real emulator: drain manifests from a queue, download objects, count queue depth.
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { writeFileSync } from 'node:fs';
import { queueUrl } from '../../shared/clients/aws.js';

export async function receiveAll(
  sqs: SQSClient,
  queueName: string,
  opts: { deleteThem?: boolean; waitMs?: number } = {},
): Promise<{ body: string; id: string }[]> {
  const url = await queueUrl(sqs, queueName);
  const out: { body: string; id: string }[] = [];
  const deadline = Date.now() + (opts.waitMs ?? 2_000);
  while (Date.now() < deadline) {
    const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0, VisibilityTimeout: 30 }));
    for (const m of r.Messages ?? []) {
      out.push({ body: m.Body ?? '', id: m.MessageId ?? '' });
      if (opts.deleteThem) await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.ReceiptHandle }));
    }
    if (!r.Messages?.length) await new Promise((res) => setTimeout(res, 100));
  }
  return out;
}

export async function listKeys(s3: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of r.Contents ?? []) if (o.Key) keys.push(o.Key);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

export async function downloadTo(s3: S3Client, bucket: string, key: string, file: string): Promise<void> {
  const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  writeFileSync(file, await r.Body!.transformToByteArray());
}
