// The worker's SQS consumers: SLUICE_WORKER_CONCURRENCY independent sqs-consumer Consumers with batchSize 1, so at
// most that many batches are in flight and a slow one never holds back the others. They never delete: each message
// goes to the MessageHandler, which settles it. A failed receive backs off (BACKOFF.sqsReceive) instead of polling at once.
import type { Message, SQSClient } from '@aws-sdk/client-sqs';
import { Consumer } from 'sqs-consumer';
import type { Config } from '../shared/config.js';
import { errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { BACKOFF, backoffMs, sleep } from '../shared/retry.js';
import type { MessageHandler } from './message-handler.js';

export type ConsumerSettings = Pick<Config, 'SLUICE_WORKER_CONCURRENCY' | 'SLUICE_WORKER_POLL_WAIT' | 'SLUICE_VISIBILITY_TIMEOUT'>;

export function createConsumers(cfg: ConsumerSettings, sqs: SQSClient, queueUrl: string, handler: MessageHandler, log: Logger): Consumer[] {
  return Array.from({ length: cfg.SLUICE_WORKER_CONCURRENCY }, () => createConsumer(cfg, sqs, queueUrl, handler, log));
}

function createConsumer(cfg: ConsumerSettings, sqs: SQSClient, queueUrl: string, handler: MessageHandler, log: Logger): Consumer {
  const c = Consumer.create({
    queueUrl,
    sqs,
    batchSize: 1,
    waitTimeSeconds: Math.round(cfg.SLUICE_WORKER_POLL_WAIT / 1000),
    visibilityTimeout: Math.max(1, Math.ceil(cfg.SLUICE_VISIBILITY_TIMEOUT / 1000)),
    shouldDeleteMessages: false,
    messageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
    // The handler settles every message itself (delete, release or dead-letter) and never throws.
    handleMessage: async (m: Message) => {
      await handler.handle(m).catch((err: unknown) => log.error({ err: errorMessage(err), messageId: m.MessageId }, 'unexpected failure handling a batch'));
      return undefined;
    },
  });
  // sqs-consumer polls again at once after a failed receive; back off instead (BACKOFF.sqsReceive).
  let failures = 0;
  c.on('error', (err) => {
    failures++;
    c.updateOption('pollingWaitTimeMs', backoffMs(failures, BACKOFF.sqsReceive));
    if (failures === 1 || failures % 20 === 0) log.warn({ err: errorMessage(err), failures }, 'SQS receive failed');
  });
  const recovered = () => {
    if (failures === 0) return;
    log.info({ failures }, 'SQS receive recovered');
    failures = 0;
    c.updateOption('pollingWaitTimeMs', 0);
  };
  c.on('empty', recovered);
  c.on('message_received', recovered);
  c.on('processing_error', (err) => log.error({ err: errorMessage(err) }, 'batch handler failed'));
  return c;
}

/** Resolves once no consumer is polling any more, or after `maxMs`. */
export async function pollsEnded(consumers: readonly Consumer[], maxMs: number): Promise<void> {
  const until = Date.now() + maxMs;
  while (Date.now() < until && consumers.some((c) => c.status.isPolling)) await sleep(50);
}
