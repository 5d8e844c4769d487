// The one backoff formula (shared/retry.ts) and the classification of client errors (shared/errors.ts).
import { describe, expect, it } from 'vitest';
import { ReplyError } from 'ioredis';
import { isRetryable, PermanentError, TransientError } from '../../shared/errors.js';
import { BACKOFF, backoffMs } from '../../shared/retry.js';

describe('backoffMs', () => {
  it('doubles from the base up to the cap, jittered as asked', () => {
    const b = { baseMs: 100, maxMs: 1_000, jitter: 'none' } as const;
    expect([0, 1, 2, 3, 4, 50].map((n) => backoffMs(n, b))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(backoffMs(2, { ...b, jitter: 'full' }, 0.5)).toBe(200);
    expect(backoffMs(2, { ...b, jitter: 'equal' }, 0)).toBe(200);
    expect(backoffMs(2, { ...b, jitter: 'equal' }, 0.999)).toBeCloseTo(399.8);
  });
  it('keeps the reconnect and restart schedules of each dependency', () => {
    expect([1, 2, 5, 6].map((t) => backoffMs(t, BACKOFF.redisReconnect))).toEqual([100, 200, 1_600, 2_000]);
    expect([0, 1, 5, 9].map((c) => backoffMs(c, BACKOFF.workerRestart))).toEqual([1_000, 2_000, 30_000, 30_000]);
  });
});

describe('isRetryable', () => {
  const aws = (name: string, status: number, fault: 'client' | 'server') =>
    Object.assign(new Error(name), { name, $fault: fault, $metadata: { httpStatusCode: status } });
  it('classifies by status, code and class, not by message text', () => {
    expect(isRetryable(aws('ServiceUnavailable', 503, 'server'))).toBe(true);
    expect(isRetryable(aws('ThrottlingException', 400, 'client'))).toBe(false); // the status answers first…
    expect(isRetryable(Object.assign(new Error('x'), { name: 'ThrottlingException' }))).toBe(true); // …the class when there is none
    expect(isRetryable(aws('AccessDenied', 403, 'client'))).toBe(false);
    expect(isRetryable(aws('NoSuchBucket', 404, 'client'))).toBe(false);
    expect(isRetryable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isRetryable(new DOMException('The operation was aborted due to timeout', 'TimeoutError'))).toBe(true);
    expect(isRetryable(new Error('service unavailable, timed out, throttled'))).toBe(false);
  });
  it('classifies Redis reply errors by their reply code', () => {
    expect(isRetryable(new ReplyError('LOADING Redis is loading the dataset in memory'))).toBe(true);
    expect(isRetryable(new ReplyError('WRONGTYPE Operation against a key holding the wrong kind of value'))).toBe(false);
    expect(isRetryable(new Error('Connection is closed.'))).toBe(true);
  });
  it('lets Sluice errors and causes answer for themselves', () => {
    expect(isRetryable(new TransientError('x', 'y'))).toBe(true);
    expect(isRetryable(new PermanentError('x', 'y'))).toBe(false);
    expect(isRetryable(new Error('wrapped', { cause: Object.assign(new Error('reset'), { code: 'ECONNRESET' }) }))).toBe(true);
  });
});
