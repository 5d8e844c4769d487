// One place that owns retry policy: exponential backoff with decorrelated jitter, bounded by attempts,
// retrying only errors classified as retryable (shared/errors.ts), plus circuit breakers for dependencies.
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

/** Full-jitter exponential delay for attempt n (0-based): random in [0, min(max, base·2ⁿ)]. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number): number {
  return Math.random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
