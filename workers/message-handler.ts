// Owns one received SQS message from receipt to outcome: heartbeats its visibility, runs the batch with
// in-process retries through transient faults (up to SLUICE_MAX_TRANSIENT_RETRY), then acknowledges exactly
// one outcome — delivered (deleted by the processor), retry (released after a backoff delay) or rejected
// (dead-lettered with its reason, then deleted). On shutdown an unfinished batch is released at once.
import { ChangeMessageVisibilityCommand, DeleteMessageCommand, SendMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import type { Logger } from '../shared/logger.js';
import { TransientError, classify, errorMessage } from '../shared/errors.js';
import { backoffDelay } from '../shared/retry.js';
import type { BatchProcessor } from './batch-processor.js';
import { deadLetterAttributes } from './dead-letters.js';
import { Heartbeat } from './heartbeat.js';
import { failedOutcome, type Outcome } from './outcome.js';
import type { WorkerMetrics } from './worker-metrics.js';

export interface MessageHandlerOptions {
  sqs: SQSClient;
  queueUrl: string;
  deadLetterQueueUrl: string;
  processor: BatchProcessor;
  metrics: WorkerMetrics;
  log: Logger;
  /** Name of this worker, recorded on dead letters. */
  workerId: string;
  visibilityTimeoutMs: number;
  maxTransientRetryMs: number;
  releaseBackoffMs: number;
  /** True once the worker stops receiving: a message that still arrives is released at once, unprocessed. */
  draining(): boolean;
  /** Aborted when the shutdown grace has passed: unfinished batches are released immediately. */
  stopSignal: AbortSignal;
}

/** First and largest pause between in-process attempts (full jitter, shared/retry backoffDelay). */
const RETRY_BASE_MS = 250;
const RETRY_MAX_MS = 15_000;

const stopping = () => new TransientError('worker is stopping; batch released to other workers', 'worker_stopping');

/** Resolves after `ms`, or early when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A promise that rejects when `signal` aborts (handled, so it never surfaces unobserved), and its clean-up. */
function whenAborted(signal: AbortSignal): { promise: Promise<never>; dispose(): void } {
  let onAbort = (): void => {};
  const promise = new Promise<never>((_r, reject) => {
    onAbort = () => {
      reject(stopping());
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => undefined);
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}

export class MessageHandler {
  /** Attempts still running after their message was released at shutdown (awaited, bounded, by close()). */
  readonly background = new Set<Promise<unknown>>();

  constructor(private readonly o: MessageHandlerOptions) {}

  async handle(message: Message): Promise<Outcome> {
    const o = this.o;
    const handle = message.ReceiptHandle!;
    const messageId = message.MessageId ?? '?';
    const receiveCount = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
    const sent = Number(message.Attributes?.SentTimestamp);
    const log = o.log.child({ messageId, receiveCount });
    const t0 = performance.now();
    o.metrics.started(handle, Number.isFinite(sent) ? sent : undefined);
    const hb = new Heartbeat({ sqs: o.sqs, queueUrl: o.queueUrl, receiptHandle: handle, visibilityTimeoutMs: o.visibilityTimeoutMs, log });
    const deadline = Date.now() + o.maxTransientRetryMs;
    const aborted = whenAborted(o.stopSignal);
    let outcome: Outcome | undefined;
    try {
      for (let attempt = 0; !outcome; attempt++) {
        if (o.stopSignal.aborted || (attempt === 0 && o.draining())) {
          outcome = { kind: 'retry', error: stopping(), delaySeconds: 0 };
          break;
        }
        hb.start();
        const ack = async () => {
          await hb.stop(); // no heartbeat may race the delete with the same receipt handle
          if (o.stopSignal.aborted) throw stopping(); // released meanwhile: another worker may own it now
          try {
            await o.sqs.send(new DeleteMessageCommand({ QueueUrl: o.queueUrl, ReceiptHandle: handle }));
          } catch (err) {
            const e = classify(err, `deleting message ${messageId}`);
            if (e.retryable) throw e;
            // The receipt handle expired (visibility lost, e.g. a long pause): another worker may hold the message.
            // The effects are durable and idempotent, so its delivery is a no-op; never dead-letter for this.
            log.warn({ err: e.message }, 'batch delivered but its message could not be deleted; a redelivery will change nothing');
          }
        };
        const run = o.processor.process({ messageId, body: message.Body, ack, signal: o.stopSignal });
        try {
          outcome = { kind: 'delivered', stats: await Promise.race([run, aborted.promise]) };
        } catch (err) {
          if (o.stopSignal.aborted) {
            this.track(run);
            outcome = { kind: 'retry', error: stopping(), delaySeconds: 0 };
            break;
          }
          const failed = failedOutcome(err, receiveCount, o.releaseBackoffMs);
          if (failed.kind === 'rejected') {
            outcome = failed;
            break;
          }
          const wait = backoffDelay(attempt, RETRY_BASE_MS, RETRY_MAX_MS);
          if (Date.now() + wait > deadline) {
            outcome = failed;
            break;
          }
          log.warn(
            { err: errorMessage(err), code: failed.error.code, attempt: attempt + 1, retryInMs: Math.round(wait) },
            'batch attempt failed; retrying in-process',
          );
          await pause(wait, o.stopSignal); // the heartbeat keeps the message ours meanwhile
        }
      }
      await hb.stop();
      outcome = await this.settle(outcome, message, log);
      return outcome;
    } finally {
      aborted.dispose();
      await hb.stop();
      o.metrics.finished(handle, outcome?.kind ?? 'retry', (performance.now() - t0) / 1000);
    }
  }

  /** Carries out a retry or rejected outcome on SQS; a rejection that cannot be recorded becomes a retry. */
  private async settle(outcome: Outcome, message: Message, log: Logger): Promise<Outcome> {
    const o = this.o;
    const handle = message.ReceiptHandle!;
    if (outcome.kind === 'delivered') {
      o.metrics.events.inc(outcome.stats.counted);
      o.metrics.points.inc(outcome.stats.points);
      o.metrics.duplicates.inc(outcome.stats.duplicates);
      log.info({ ...outcome.stats }, 'batch delivered');
      return outcome;
    }
    if (outcome.kind === 'rejected') {
      try {
        await o.sqs.send(
          new SendMessageCommand({
            QueueUrl: o.deadLetterQueueUrl,
            MessageBody: message.Body ?? '',
            MessageAttributes: deadLetterAttributes(outcome.error, message.MessageId ?? '', o.workerId),
          }),
        );
        await o.sqs.send(new DeleteMessageCommand({ QueueUrl: o.queueUrl, ReceiptHandle: handle }));
        o.metrics.deadLetters.inc({ reason: outcome.error.code });
        log.error({ code: outcome.error.code, err: outcome.error.message }, 'batch rejected and dead-lettered');
        return outcome;
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'could not dead-letter the batch; releasing it to try again');
        outcome = failedOutcome(
          new TransientError(`dead-lettering failed: ${errorMessage(err)}`, 'dead_letter_failed', { cause: err }),
          Number(message.Attributes?.ApproximateReceiveCount ?? 1),
          o.releaseBackoffMs,
        );
      }
    }
    if (outcome.kind === 'retry') {
      try {
        await o.sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: o.queueUrl, ReceiptHandle: handle, VisibilityTimeout: outcome.delaySeconds }));
      } catch (err) {
        // The message comes back anyway when its visibility timeout ends.
        log.warn({ err: errorMessage(err) }, 'could not release the message early');
      }
      log.warn({ code: outcome.error.code, err: outcome.error.message, delaySeconds: outcome.delaySeconds }, 'batch released for a later retry');
    }
    return outcome;
  }

  private track(p: Promise<unknown>): void {
    const settled = p.catch(() => undefined).finally(() => this.background.delete(settled));
    this.background.add(settled);
  }
}
