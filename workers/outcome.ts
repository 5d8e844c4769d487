// How a received batch ends, as data: delivered (its effect is durable, the message is deleted), retry
// (a dependency failed; the message goes back to the queue after a delay) or rejected (the batch can never
// be processed; it is dead-lettered with its reason). Every message ends in exactly one of these.
import { classify, type SluiceError } from '../shared/errors.js';
import { backoffMs, releaseBackoff } from '../shared/retry.js';

export interface BatchStats {
  batchKey: string;
  /** Rows in the Parquet file. */
  rows: number;
  /** Events added to the aggregates (each event id once, minus ids counted by other batches). */
  counted: number;
  /** Rows not counted: ids repeated within the file or already counted by another batch. */
  duplicates: number;
  /** InfluxDB points written. */
  points: number;
}

/** What the batch processor resolves with once every effect of the batch is durable (the message may then be deleted). */
export interface DurableBatch {
  stats: BatchStats;
  /** Events set aside in the quarantine and points InfluxDB refused, by reason (empty when the batch was clean). */
  setAside: { events: Map<string, number>; rejectedPoints: Map<string, number> };
}

export type Outcome =
  | ({ kind: 'delivered' } & DurableBatch)
  | { kind: 'retry'; error: SluiceError; delaySeconds: number }
  | { kind: 'rejected'; error: SluiceError };

export type OutcomeKind = Outcome['kind'];
export type FailedOutcome = Exclude<Outcome, { kind: 'delivered' }>;

/** SQS's largest visibility timeout is 12 h; a released batch comes back within 15 min at the latest. */
export const MAX_RELEASE_DELAY_S = 15 * 60;

/** Whether a failure should dead-letter the batch (permanent) or send it back for later (retryable). */
export function failureKind(err: unknown): 'retry' | 'rejected' {
  return classify(err, 'batch').retryable ? 'retry' : 'rejected';
}

/**
 * Visibility delay (whole seconds) for a batch released after transient faults: the base doubles with each
 * receive, capped at 15 minutes, with equal jitter (half fixed, half random) so released batches spread out.
 */
export function releaseDelaySeconds(receiveCount: number, baseMs: number, random: number = Math.random()): number {
  const n = Math.max(1, Math.floor(receiveCount));
  return Math.min(MAX_RELEASE_DELAY_S, Math.ceil(backoffMs(n - 1, releaseBackoff(baseMs, MAX_RELEASE_DELAY_S * 1000), random) / 1000));
}

/** Builds the outcome of a failed attempt that will not be retried in-process any more. */
export function failedOutcome(err: unknown, receiveCount: number, releaseBaseMs: number): FailedOutcome {
  const error = classify(err, 'batch');
  return error.retryable ? { kind: 'retry', error, delaySeconds: releaseDelaySeconds(receiveCount, releaseBaseMs) } : { kind: 'rejected', error };
}
