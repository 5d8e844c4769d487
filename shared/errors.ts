// The one error hierarchy of Sluice. Every error that steers control flow says whether a retry can help
// (`retryable`) and carries a stable `code`; AWS, InfluxDB and Redis errors are classified once, here.

export class SluiceError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A setting has a wrong value. Never retryable: fix the environment. */
export class ConfigError extends SluiceError {
  constructor(message: string) {
    super(message, 'config_invalid', false);
  }
}

/** Input that will never become valid by retrying (bad request, corrupt batch, unknown version). */
export class PermanentError extends SluiceError {
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, code, false, options);
  }
}

/** A dependency is unavailable or slow; the same operation may succeed later. */
export class TransientError extends SluiceError {
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, code, true, options);
  }
}

const TRANSIENT_NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'ESOCKETTIMEDOUT',
  'ECONNABORTED',
]);

interface AwsLikeError {
  name?: string;
  code?: string;
  $fault?: 'client' | 'server';
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: number };
  statusCode?: number;
  errno?: string;
}

/**
 * Whether an error from any client (AWS SDK, influx, ioredis, node:net, fetch) is worth retrying.
 * SluiceErrors answer for themselves; network failures, throttling and 5xx are retryable; other 4xx are not.
 */
export function isRetryable(err: unknown): boolean {
  if (err instanceof SluiceError) return err.retryable;
  if (typeof err !== 'object' || err === null) return false;
  const e = err as AwsLikeError & { cause?: unknown };
  if (e.code && TRANSIENT_NET_CODES.has(e.code)) return true;
  if (e.errno && TRANSIENT_NET_CODES.has(e.errno)) return true;
  if (e.$retryable) return true;
  const status = e.$metadata?.httpStatusCode ?? e.statusCode;
  if (status !== undefined) return status >= 500 || status === 429 || status === 408;
  if (e.$fault === 'server') return true;
  if (e.name && /Timeout|Throttl|ServiceUnavailable|RequestTimeout|SlowDown|Connection|Abort/i.test(e.name)) return true;
  if (
    /No host available|Connection is closed|connect ECONNREFUSED|socket hang up|MaxRetriesPerRequest|No available connection|timed out|ETIMEDOUT|ECONNRESET/i.test(
      String((err as Error).message),
    )
  )
    return true;
  if (e.cause && e.cause !== err) return isRetryable(e.cause);
  return false;
}

/** Wraps any error into a SluiceError, keeping its classification and the resource it concerns. */
export function classify(err: unknown, where: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const msg = `${where}: ${err instanceof Error ? err.message : String(err)}`;
  return isRetryable(err) ? new TransientError(msg, 'dependency_unavailable', { cause: err }) : new PermanentError(msg, 'dependency_rejected', { cause: err });
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
