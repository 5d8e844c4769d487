// What a benchmark reads back from SQS after a run: every manifest left on a queue (read and deleted).
import { DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { queueUrl } from '../../shared/clients/aws.js';

/** Receives (and deletes) every message of a queue until it stays empty for `idleMs`; returns the bodies. */
export async function drainQueue(sqs: SQSClient, queueName: string, idleMs = 3_000): Promise<string[]> {
  const url = await queueUrl(sqs, queueName);
  const bodies: string[] = [];
  let idleSince = Date.now();
  while (Date.now() - idleSince < idleMs) {
    const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 30 }));
    if (r.Messages?.length) idleSince = Date.now();
    for (const m of r.Messages ?? []) {
      bodies.push(m.Body ?? '');
      await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.ReceiptHandle }));
    }
  }
  return bodies;
}
