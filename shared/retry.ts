// One place that owns retry policy: the one backoff formula, the named policy of each dependency, in-process
// retries (cockatiel, decorrelated jitter, bounded by attempts) of errors classified retryable by shared/errors.ts,
// and circuit breakers. Callers pick a named policy; none writes its own backoff arithmetic.
import { type CircuitBreakerPolicy, CircuitState, ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, retry, type IPolicy } from 'cockatiel';
import { isRetryable } from './errors.js';

export interface RetryOptions {
  /** Attempts including the first call. */
  maxAttempts?: number;
  initialDelayMs?: number;
  maxDelayMs?: number;
}

/** A retry policy for transient errors; permanent errors pass through at once. */
export function retryPolicy(opts: RetryOptions = {}): IPolicy {
  return retry(handleWhen(isRetryable), {
    maxAttempts: Math.max(0, (opts.maxAttempts ?? 5) - 1),
    backoff: new ExponentialBackoff({ initialDelay: opts.initialDelayMs ?? 100, maxDelay: opts.maxDelayMs ?? 10_000 }),
  });
}

/** Runs `fn` under a retry policy built from `opts`. */
export function withRetry<T>(fn: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  return retryPolicy(opts).execute(() => fn());
}

/** Opens after `failures` consecutive retryable failures; lets one call through after `halfOpenAfterMs`. */
export function dependencyBreaker(failures = 5, halfOpenAfterMs = 5_000): CircuitBreakerPolicy {
  return circuitBreaker(handleWhen(isRetryable), { halfOpenAfter: halfOpenAfterMs, breaker: new ConsecutiveBreaker(failures) });
}

export function breakerIsOpen(b: CircuitBreakerPolicy): boolean {
  return b.state === CircuitState.Open || b.state === CircuitState.Isolated;
}

/**
 * How a delay grows between attempts: base·2ⁿ capped at max, then jittered — none (the capped value), full
 * (random in [0, capped]) or equal (half fixed, half random: never less than capped/2).
 */
export interface Backoff {
  baseMs: number;
  maxMs: number;
  jitter: 'none' | 'full' | 'equal';
}

/** The backoff formula: delay in ms before attempt n (0-based) under `b`; `random` in [0, 1) for testing. */
export function backoffMs(attempt: number, b: Backoff, random: number = Math.random()): number {
  const capped = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(Math.max(0, attempt), 30));
  if (b.jitter === 'none') return capped;
  return b.jitter === 'full' ? capped * random : capped / 2 + (capped / 2) * random;
}

/** Full-jitter shorthand: random in [0, min(max, base·2ⁿ)]. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number): number {
  return backoffMs(attempt, { baseMs, maxMs, jitter: 'full' });
}

/** The backoff of each loop that waits between attempts itself (not through cockatiel), by dependency. */
export const BACKOFF = {
  /** Producer client → ingest node after 429/503/network errors (Retry-After wins when longer). */
  ingestHttp: { baseMs: 100, maxMs: 10_000, jitter: 'full' },
  /** Worker → SQS receive after a failed poll (sqs-consumer would poll again at once). */
  sqsReceive: { baseMs: 100, maxMs: 10_000, jitter: 'none' },
  /** ioredis reconnects while Redis is down. */
  redisReconnect: { baseMs: 50, maxMs: 2_000, jitter: 'none' },
  /** Fleet → a worker process that crashed, per consecutive crash. */
  workerRestart: { baseMs: 1_000, maxMs: 30_000, jitter: 'none' },
  /** `sluice start` → its ingest, fleet or query process that crashed, per crash within the crash window. */
  serviceRestart: { baseMs: 500, maxMs: 15_000, jitter: 'none' },
} as const satisfies Record<string, Backoff>;

/** A batch released to SQS after transient faults: its base is SLUICE_RELEASE_BACKOFF, spread by equal jitter. */
export const releaseBackoff = (baseMs: number, maxMs: number): Backoff => ({ baseMs, maxMs, jitter: 'equal' });

/** In-process retry policies (withRetry) by dependency. */
export const RETRY = {
  /** Start-up and checks against InfluxDB. */
  influx: { maxAttempts: 5 },
  /** Background re-checks that may wait for a dependency to come back. */
  slowCheck: { maxAttempts: 10, maxDelayMs: 30_000 },
  /** The cold bucket (MinIO client). */
  coldStorage: { maxAttempts: 4, initialDelayMs: 200, maxDelayMs: 3_000 },
  /** Creating buckets and queues. */
  resourceSetup: { maxAttempts: 5 },
} as const satisfies Record<string, RetryOptions>;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
