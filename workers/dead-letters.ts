// The dead-letter queue: how a rejected batch is recorded (the original manifest plus its reason code, detail,
// original message id and worker as message attributes) and the operations behind `sluice dlq list|show|redrive`.
// Listing never consumes: messages looked at are made visible again before returning.
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type Message,
  type MessageAttributeValue,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { Config } from '../shared/config.js';
import { createSqs, queueUrl } from '../shared/clients/aws.js';
import type { SluiceError } from '../shared/errors.js';

/** Message attribute names of a dead letter (SQS allows letters, digits, '-', '_' and '.'). */
export const DEAD_LETTER_ATTRIBUTES = {
  reason: 'sluice-reason',
  detail: 'sluice-detail',
  originalMessageId: 'sluice-original-message-id',
  worker: 'sluice-worker',
  failedAt: 'sluice-failed-at',
} as const;

/** Reason shown for messages SQS moved itself after too many receives (they carry no attributes of ours). */
export const REASON_MAX_RECEIVES = 'max_receives_exceeded';
const DETAIL_MAX = 1_000;

const text = (v: string): MessageAttributeValue => ({ DataType: 'String', StringValue: v });

/** Attributes a worker attaches when it dead-letters a batch. */
export function deadLetterAttributes(err: SluiceError, originalMessageId: string, worker: string, now = new Date()): Record<string, MessageAttributeValue> {
  const A = DEAD_LETTER_ATTRIBUTES;
  return {
    [A.reason]: text(err.code),
    [A.detail]: text(err.message.slice(0, DETAIL_MAX) || '(no message)'),
    [A.originalMessageId]: text(originalMessageId),
    [A.worker]: text(worker),
    [A.failedAt]: text(now.toISOString()),
  };
}

export interface DeadLetter {
  /** Id of the message in the dead-letter queue. */
  messageId: string;
  reason: string;
  detail?: string;
  originalMessageId?: string;
  worker?: string;
  failedAt?: string;
  /** Batch object named by the manifest, when the body is readable JSON. */
  bucket?: string;
  key?: string;
  /** When the dead letter was sent to the DLQ. */
  sentAt?: string;
  receiveCount?: number;
  body: string;
}

export function toDeadLetter(m: Message): DeadLetter {
  const attr = (name: string) => m.MessageAttributes?.[name]?.StringValue;
  const A = DEAD_LETTER_ATTRIBUTES;
  let bucket: string | undefined;
  let key: string | undefined;
  try {
    const o = JSON.parse(m.Body ?? '') as { bucket?: unknown; key?: unknown };
    if (typeof o.bucket === 'string') bucket = o.bucket;
    if (typeof o.key === 'string') key = o.key;
  } catch {
    /* an unreadable body is one of the reasons a batch is dead-lettered */
  }
  const sent = Number(m.Attributes?.SentTimestamp);
  const count = Number(m.Attributes?.ApproximateReceiveCount);
  return {
    messageId: m.MessageId ?? '',
    reason: attr(A.reason) ?? REASON_MAX_RECEIVES,
    detail: attr(A.detail),
    originalMessageId: attr(A.originalMessageId),
    worker: attr(A.worker),
    failedAt: attr(A.failedAt),
    bucket,
    key,
    sentAt: Number.isFinite(sent) ? new Date(sent).toISOString() : undefined,
    receiveCount: Number.isFinite(count) ? count : undefined,
    body: m.Body ?? '',
  };
}

async function withSqs<T>(cfg: Config, fn: (sqs: SQSClient) => Promise<T>): Promise<T> {
  const sqs = createSqs(cfg);
  try {
    return await fn(sqs);
  } finally {
    sqs.destroy();
  }
}

/** Seconds a looked-at message stays hidden, so one pass sees each message once. */
const PEEK_VISIBILITY_S = 60;

async function receiveSome(sqs: SQSClient, url: string, max: number): Promise<Message[]> {
  const r = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: url,
      MaxNumberOfMessages: Math.max(1, Math.min(10, max)),
      WaitTimeSeconds: 0,
      VisibilityTimeout: PEEK_VISIBILITY_S,
      MessageAttributeNames: ['All'],
      MessageSystemAttributeNames: ['SentTimestamp', 'ApproximateReceiveCount'],
    }),
  );
  return r.Messages ?? [];
}

/** Makes messages visible again at once (best effort: a message that expired meanwhile is visible anyway). */
async function unhide(sqs: SQSClient, url: string, messages: readonly Message[]): Promise<void> {
  for (let i = 0; i < messages.length; i += 10) {
    const entries = messages.slice(i, i + 10).map((m, j) => ({ Id: String(j), ReceiptHandle: m.ReceiptHandle!, VisibilityTimeout: 0 }));
    await sqs.send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: url, Entries: entries }));
  }
}

/** Reads up to `max` messages of the DLQ without consuming them; stops early when `enough` says so. */
async function peek(sqs: SQSClient, url: string, max: number, enough: (seen: Message[]) => boolean = () => false): Promise<Message[]> {
  const seen: Message[] = [];
  const ids = new Set<string>();
  try {
    while (seen.length < max) {
      const got = await receiveSome(sqs, url, max - seen.length);
      if (!got.length) break;
      for (const m of got) {
        if (m.MessageId && !ids.has(m.MessageId)) {
          ids.add(m.MessageId);
          seen.push(m);
        }
      }
      if (enough(seen)) break;
    }
  } finally {
    await unhide(sqs, url, seen);
  }
  return seen;
}

/** Dead letters with their reasons, oldest first as SQS returns them (at most `max`). */
export async function listDeadLetters(cfg: Config, opts: { max?: number } = {}): Promise<DeadLetter[]> {
  const max = opts.max ?? 100;
  return withSqs(cfg, async (sqs) => (await peek(sqs, await queueUrl(sqs, cfg.SLUICE_DLQ_NAME), max)).map(toDeadLetter));
}

/** One dead letter by its DLQ message id or by the original message id; undefined when not found. */
export async function showDeadLetter(cfg: Config, messageId: string, opts: { scanMax?: number } = {}): Promise<DeadLetter | undefined> {
  return withSqs(cfg, async (sqs) => {
    const matches = (d: DeadLetter) => d.messageId === messageId || d.originalMessageId === messageId;
    const seen = await peek(sqs, await queueUrl(sqs, cfg.SLUICE_DLQ_NAME), opts.scanMax ?? 10_000, (s) => matches(toDeadLetter(s[s.length - 1]!)));
    return seen.map(toDeadLetter).find(matches);
  });
}

/**
 * Moves dead letters back to the batch queue (their manifests unchanged) and deletes them from the DLQ.
 * `ids` match DLQ or original message ids; `all` moves everything. Returns how many were moved.
 */
export async function redriveDeadLetters(cfg: Config, opts: { ids?: string[]; all?: boolean }): Promise<number> {
  const wanted = new Set(opts.ids ?? []);
  if (!opts.all && wanted.size === 0) return 0;
  return withSqs(cfg, async (sqs) => {
    const dlq = await queueUrl(sqs, cfg.SLUICE_DLQ_NAME);
    const main = await queueUrl(sqs, cfg.SLUICE_QUEUE_NAME);
    const skipped: Message[] = [];
    let moved = 0;
    try {
      for (;;) {
        if (!opts.all && wanted.size === 0) break;
        const got = await receiveSome(sqs, dlq, 10);
        if (!got.length) break;
        for (const m of got) {
          const d = toDeadLetter(m);
          const hit = opts.all || wanted.has(d.messageId) || (d.originalMessageId !== undefined && wanted.has(d.originalMessageId));
          if (!hit) {
            skipped.push(m);
            continue;
          }
          // Send first, delete second: a crash in between leaves a copy in both queues, which is harmless
          // because processing a batch twice has the effect of processing it once.
          await sqs.send(new SendMessageCommand({ QueueUrl: main, MessageBody: m.Body ?? '' }));
          await sqs.send(new DeleteMessageCommand({ QueueUrl: dlq, ReceiptHandle: m.ReceiptHandle! }));
          wanted.delete(d.messageId);
          if (d.originalMessageId) wanted.delete(d.originalMessageId);
          moved++;
        }
      }
    } finally {
      await unhide(sqs, dlq, skipped);
    }
    return moved;
  });
}
