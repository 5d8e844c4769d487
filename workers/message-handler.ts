// Owns one received SQS message from receipt to outcome: heartbeats its visibility, runs the batch with
// in-process retries through transient faults (up to SLUICE_MAX_TRANSIENT_RETRY), then acknowledges exactly
// one outcome — delivered (the processor said every effect is durable; deleted here), retry (released after a
// backoff delay) or rejected (dead-lettered with its reason, then deleted). It alone acknowledges messages. On
// shutdown an unfinished batch is released at once, never deleted.
import { ChangeMessageVisibilityCommand, DeleteMessageCommand, SendMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import type { Logger } from '../shared/logger.js';
import { TransientError, classify, errorMessage } from '../shared/errors.js';
import { backoffDelay } from '../shared/retry.js';
import type { BatchProcessor } from './batch-processor.js';
import { deadLetterAttributes } from './dead-letters.js';
import { Heartbeat } from './heartbeat.js';
import { type DurableBatch, failedOutcome, type FailedOutcome, type Outcome } from './outcome.js';
import { outcomeEvent, type WorkerEvents, workerEvents } from './worker-events.js';
import type { WorkerMetrics } from './worker-metrics.js';
import type { BatchLedger } from './reconcile/ledger.js';

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
  /** Told each batch whose effects are durable, before its message is deleted (reconcile/ledger.ts). */
  ledger?: Pick<BatchLedger, 'record'>;
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

/** One received message as the handler sees it. */
interface Received {
  message: Message;
  handle: string;
  messageId: string;
  receiveCount: number;
  log: Logger;
  hb: Heartbeat;
}

export class MessageHandler {
  /** Attempts still running after their message was released at shutdown (awaited, bounded, by close()). */
  readonly background = new Set<Promise<unknown>>();

  /** Each message's outcome, once: its log line and metrics (worker-events.ts). */
  private readonly events: WorkerEvents;

  constructor(private readonly o: MessageHandlerOptions) {
    this.events = workerEvents(o.log, o.metrics);
  }

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
    let outcome: Outcome | undefined;
    try {
      const r: Received = { message, handle, messageId, receiveCount, log, hb };
      const attempted = await this.attempts(r);
      await hb.stop();
      outcome = await this.settle(attempted, r);
      return outcome;
    } catch (err) {
      // Not expected (every SQS call above is guarded): the message comes back when its visibility timeout ends.
      const delaySeconds = Math.ceil(o.visibilityTimeoutMs / 1000);
      outcome = { kind: 'retry', error: classify(err, `handling message ${messageId}`), delaySeconds };
      throw err;
    } finally {
      await hb.stop();
      o.metrics.finished(handle);
      if (outcome) this.events.emit(outcomeEvent(outcome, { messageId, receiveCount }, (performance.now() - t0) / 1000));
    }
  }

  /**
   * Runs the batch until it is delivered (processed and deleted), fails permanently, runs out of in-process retry time
   * (SLUICE_MAX_TRANSIENT_RETRY) or the worker stops; the heartbeat keeps the message ours meanwhile.
   */
  private async attempts(r: Received): Promise<Outcome> {
    const o = this.o;
    const deadline = Date.now() + o.maxTransientRetryMs;
    const aborted = whenAborted(o.stopSignal);
    try {
      for (let attempt = 0; ; attempt++) {
        if (o.stopSignal.aborted || (attempt === 0 && o.draining())) return { kind: 'retry', error: stopping(), delaySeconds: 0 };
        r.hb.start();
        const run = this.deliver(r);
        try {
          return { kind: 'delivered', ...(await Promise.race([run, aborted.promise])) };
        } catch (err) {
          if (o.stopSignal.aborted) {
            this.track(run);
            return { kind: 'retry', error: stopping(), delaySeconds: 0 };
          }
          const failed = failedOutcome(err, r.receiveCount, o.releaseBackoffMs);
          if (failed.kind === 'rejected') return failed;
          const wait = backoffDelay(attempt, RETRY_BASE_MS, RETRY_MAX_MS);
          if (Date.now() + wait > deadline) return failed;
          r.log.warn(
            { err: errorMessage(err), code: failed.error.code, attempt: attempt + 1, retryInMs: Math.round(wait) },
            'batch attempt failed; retrying in-process',
          );
          await pause(wait, o.stopSignal);
        }
      }
    } finally {
      aborted.dispose();
    }
  }

  /** One attempt: the processor makes every effect durable, then the message is deleted (a retryable failure throws). */
  private async deliver(r: Received): Promise<DurableBatch> {
    const o = this.o;
    const durable = await o.processor.process({ messageId: r.messageId, body: r.message.Body, signal: o.stopSignal });
    // Not recorded = re-announced by a later reconcile, which changes nothing: a ledger fault never fails the batch.
    await o.ledger
      ?.record(durable.stats.batchKey)
      .catch((err: unknown) => r.log.warn({ err: errorMessage(err) }, 'batch delivered but not recorded in the ledger'));
    await r.hb.stop(); // no heartbeat may race the delete with the same receipt handle
    if (o.stopSignal.aborted) throw stopping(); // released meanwhile: another worker may own it now
    try {
      await o.sqs.send(new DeleteMessageCommand({ QueueUrl: o.queueUrl, ReceiptHandle: r.handle }));
    } catch (err) {
      const e = classify(err, `deleting message ${r.messageId}`);
      if (e.retryable) throw e;
      // The receipt handle expired (visibility lost, e.g. a long pause): another worker may hold the message.
      // The effects are durable and idempotent, so its delivery is a no-op; never dead-letter for this.
      r.log.warn({ err: e.message }, 'batch delivered but its message could not be deleted; a redelivery will change nothing');
    }
    return durable;
  }

  /** Carries out the rest of the outcome: a rejected batch is dead-lettered (or, failing that, released), a retry released. */
  private async settle(outcome: Outcome, r: Received): Promise<Outcome> {
    if (outcome.kind === 'delivered') return outcome; // deleted by the attempt that made it durable
    if (outcome.kind === 'rejected') {
      outcome = await this.deadLetter(outcome, r);
      if (outcome.kind === 'rejected') return outcome;
    }
    return this.release(outcome, r);
  }

  /** Sends the original body to the DLQ with its reason, then deletes it; if that fails, the batch is released instead. */
  private async deadLetter(outcome: Extract<Outcome, { kind: 'rejected' }>, r: Received): Promise<FailedOutcome> {
    const o = this.o;
    try {
      await o.sqs.send(
        new SendMessageCommand({
          QueueUrl: o.deadLetterQueueUrl,
          MessageBody: r.message.Body ?? '',
          MessageAttributes: deadLetterAttributes(outcome.error, r.message.MessageId ?? '', o.workerId),
        }),
      );
      await o.sqs.send(new DeleteMessageCommand({ QueueUrl: o.queueUrl, ReceiptHandle: r.handle }));
      return outcome;
    } catch (err) {
      r.log.warn({ err: errorMessage(err) }, 'could not dead-letter the batch; releasing it to try again');
      return failedOutcome(
        new TransientError(`dead-lettering failed: ${errorMessage(err)}`, 'dead_letter_failed', { cause: err }),
        r.receiveCount,
        o.releaseBackoffMs,
      );
    }
  }

  /** Sends the message back to the queue after its release delay. */
  private async release(outcome: Extract<Outcome, { kind: 'retry' }>, r: Received): Promise<Outcome> {
    const o = this.o;
    try {
      await o.sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: o.queueUrl, ReceiptHandle: r.handle, VisibilityTimeout: outcome.delaySeconds }));
    } catch (err) {
      // The message comes back anyway when its visibility timeout ends.
      r.log.warn({ err: errorMessage(err) }, 'could not release the message early');
    }
    return outcome;
  }

  private track(p: Promise<unknown>): void {
    const settled = p.catch(() => undefined).finally(() => this.background.delete(settled));
    this.background.add(settled);
  }
}
