// Keeps a received message invisible while its batch is processed: every visibilityTimeout/3 it extends the
// visibility to a full visibilityTimeout. stop() waits for a call in flight, so a delete or release issued
// afterwards never races a heartbeat with the same receipt handle.
import { ChangeMessageVisibilityCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Logger } from '../shared/logger.js';
import { errorMessage } from '../shared/errors.js';

export interface HeartbeatOptions {
  sqs: SQSClient;
  queueUrl: string;
  receiptHandle: string;
  /** Visibility set by each beat, ms (rounded up to whole seconds, as SQS counts). */
  visibilityTimeoutMs: number;
  log: Logger;
}

export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  /** Beats that failed in a row (a lost receipt handle shows here; the batch stays idempotent either way). */
  failures = 0;

  constructor(private readonly o: HeartbeatOptions) {}

  get running(): boolean {
    return this.timer !== undefined;
  }

  /** Starts beating (no-op when already running). */
  start(): void {
    if (this.timer) return;
    const every = Math.max(250, Math.floor(this.o.visibilityTimeoutMs / 3));
    this.timer = setInterval(() => {
      if (this.inFlight) return; // the previous beat is still waiting for SQS
      this.inFlight = this.beat().finally(() => {
        this.inFlight = undefined;
      });
    }, every);
  }

  /** Stops beating and resolves once no ChangeMessageVisibility of this heartbeat is in flight. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }

  private async beat(): Promise<void> {
    try {
      await this.o.sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: this.o.queueUrl,
          ReceiptHandle: this.o.receiptHandle,
          VisibilityTimeout: Math.ceil(this.o.visibilityTimeoutMs / 1000),
        }),
      );
      this.failures = 0;
    } catch (err) {
      this.failures++;
      this.o.log.warn({ err: errorMessage(err), failures: this.failures }, 'heartbeat failed to extend message visibility');
    }
  }
}
