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

/** Node (node:net, dns) and undici (fetch) error codes of a failed or dropped connection. */
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
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ESOCKETTIMEDOUT',
  'ECONNABORTED',
]);

/**
 * Error classes (`name`) and S3/SQS error codes that mean "later may work": timeouts and aborts (DOMException,
 * undici), AWS throttling and transient service codes (as the SDK's own retry strategy lists them), and the
 * clients' connection errors (ioredis MaxRetriesPerRequestError / ClusterAllFailedError, influx ServiceNotAvailableError).
 */
const TRANSIENT_ERROR_NAMES = new Set([
  'TimeoutError',
  'AbortError',
  'ConnectTimeoutError',
  'HeadersTimeoutError',
  'BodyTimeoutError',
  'SocketError',
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'SlowDown',
  'RequestTimeout',
  'RequestTimeoutException',
  'ServiceUnavailable',
  'InternalError',
  'MaxRetriesPerRequestError',
  'ClusterAllFailedError',
  'ServiceNotAvailableError',
]);

/** Redis reply errors (their first word is the server's error code) that a retry can outlast: loading, failover, cluster resharding. */
const TRANSIENT_REDIS_REPLIES = new Set(['LOADING', 'BUSY', 'TRYAGAIN', 'CLUSTERDOWN', 'MASTERDOWN', 'READONLY']);

/**
 * Last resort, for clients that give a plain Error with no code or class: ioredis rejects commands of a closed
 * connection or an unready cluster this way ("Connection is closed.", "None of startup nodes is available",
 * "Command timed out"). Everything that has a status, code or class is classified above without reading text.
 */
const TRANSIENT_PLAIN_MESSAGES =
  /^(Connection is closed|None of startup nodes is available|Cluster is disconnect|Cluster isn't ready|Node is disconnected|Command timed out|connect ETIMEDOUT|Socket timeout|Stream isn't writeable)/;

interface ClientError {
  name?: string;
  code?: string;
  errno?: string;
  /** AWS SDK (smithy). */
  $fault?: 'client' | 'server';
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: number };
  /** MinIO and others. */
  statusCode?: number;
  /** influx's RequestError carries the HTTP response. */
  res?: { statusCode?: number };
  cause?: unknown;
}

const statusRetryable = (status: number) => status >= 500 || status === 429 || status === 408;
/** The error's class: its `name`, or its constructor's when a client leaves `name` at "Error" (influx). */
function className(err: object): string | undefined {
  const name = (err as ClientError).name;
  return name && name !== 'Error' ? name : err.constructor?.name;
}

/**
 * Whether an error from any client (AWS SDK, MinIO, influx, ioredis, node:net, fetch) is worth retrying, decided
 * by what the client gives as data: SluiceErrors answer for themselves; then network error codes; the HTTP status
 * (throttling, timeouts and 5xx retry, other 4xx do not); the AWS SDK's own $retryable and $fault; the error class
 * or service error code; Redis reply codes; and only then the documented plain-message last resort.
 */
export function isRetryable(err: unknown): boolean {
  if (err instanceof SluiceError) return err.retryable;
  if (typeof err !== 'object' || err === null) return false;
  const e = err as ClientError;
  if ((e.code && TRANSIENT_NET_CODES.has(e.code)) || (e.errno && TRANSIENT_NET_CODES.has(e.errno))) return true;
  if (e.$retryable) return true;
  const status = e.$metadata?.httpStatusCode ?? e.statusCode ?? e.res?.statusCode;
  if (status !== undefined) return statusRetryable(status);
  if (e.$fault === 'server') return true;
  const name = className(err);
  if ((name && TRANSIENT_ERROR_NAMES.has(name)) || (e.code && TRANSIENT_ERROR_NAMES.has(e.code))) return true;
  const message = String((err as Error).message ?? '');
  if (name === 'ReplyError') return TRANSIENT_REDIS_REPLIES.has(message.split(' ', 1)[0] ?? '');
  if (TRANSIENT_PLAIN_MESSAGES.test(message)) return true;
  if (e.cause && e.cause !== err) return isRetryable(e.cause);
  return false;
}

/** Wraps any error into a SluiceError, keeping its classification and the resource it concerns. */
export function classify(err: unknown, where: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const msg = `${where}: ${err instanceof Error ? err.message : String(err)}`;
  return isRetryable(err) ? new TransientError(msg, 'dependency_unavailable', { cause: err }) : new PermanentError(msg, 'dependency_rejected', { cause: err });
}

/**
 * Classifies a failure of the Parquet engine (DuckDB) converting input files. The engine's Node API offers no
 * error class or code, only its error type as the message prefix: "Invalid Input Error" (malformed JSON, a value that
 * does not fit its column) and "Conversion Error" are about the input's own content and can never succeed on retry,
 * so they become a PermanentError with `code`; any other engine failure (out of memory, I/O) stays transient.
 */
export function classifyEngineError(err: unknown, where: string, code: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const msg = `${where}: ${errorMessage(err)}`;
  return /^(Invalid Input|Conversion) Error\b/.test(errorMessage(err))
    ? new PermanentError(msg, code, { cause: err })
    : new TransientError(msg, 'engine_failed', { cause: err });
}

/**
 * Classifies a failure of an InfluxDB write. node-influx reports "all hosts down" as ServiceNotAvailableError and
 * HTTP errors as RequestError with the response attached (so do the line-protocol writes of shared/clients/influx.ts):
 * throttling, timeouts and 5xx are `influx_unavailable` (retryable); any other status, such as 401 or 404, is
 * `influx_rejected` (permanent: fix the credentials or the database). Anything else goes through classify().
 */
export function classifyInfluxError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  const e = err as ClientError | null;
  if (e && typeof e === 'object' && className(e) === 'ServiceNotAvailableError')
    return new TransientError(`InfluxDB unavailable: ${errorMessage(err)}`, 'influx_unavailable', { cause: err });
  const status = e?.res?.statusCode;
  if (status !== undefined) {
    return statusRetryable(status)
      ? new TransientError(`InfluxDB write failed: ${errorMessage(err)}`, 'influx_unavailable', { cause: err })
      : new PermanentError(`InfluxDB rejected the write: ${errorMessage(err)}`, 'influx_rejected', { cause: err });
  }
  return classify(err, 'InfluxDB write');
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
