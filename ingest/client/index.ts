// The Sluice producer client: buffers events in memory and sends them to an ingest node in gzip batches,
// flushed by size or time; retries 429/503/network errors with exponential backoff and jitter, honouring
// Retry-After; a circuit breaker stops hammering a node that keeps failing; the queue is bounded and says so.
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import type { EventInput } from '../../shared/contracts/event.js';
import { BACKOFF, backoffMs, sleep } from '../../shared/retry.js';

const gzipAsync = promisify(gzip);

export interface SluiceClientOptions {
  /** Base URL of an ingest node, e.g. http://127.0.0.1:8080 */
  url: string;
  /** API key sent as Authorization: Bearer … */
  apiKey?: string;
  /** Events per request (default 1,000). */
  maxBatchEvents?: number;
  /** A partial batch is sent after this long (default 200 ms). */
  flushIntervalMs?: number;
  /** Events buffered or in flight at most; add() throws QueueFullError beyond (default 100,000). */
  maxQueuedEvents?: number;
  /** Attempts per batch before its events are reported as failed (default 8). */
  maxAttempts?: number;
  /** Backoff base and cap (defaults 100 ms, 10 s). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Consecutive failed requests that open the breaker, and how long it stays open (defaults 5, 5 s). */
  breakerFailures?: number;
  breakerOpenMs?: number;
  /** Requests in flight at once (default 2). */
  concurrency?: number;
  /** Compress bodies (default true). */
  gzip?: boolean;
  /** Told about events the node rejected (bad input: fix and do not resend) or that could not be delivered. */
  onError?: (e: DeliveryError) => void;
  fetch?: typeof fetch;
}

export interface SendResult {
  accepted: number;
  duplicates: number;
  rejected: { index: number; reason: string; eventId?: string }[];
}

export class QueueFullError extends Error {
  constructor(readonly limit: number) {
    super(
      `Sluice client queue is full (${limit} events buffered): the ingest node is slower than this producer or unreachable; slow down, or raise maxQueuedEvents`,
    );
  }
}

export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly events: EventInput[],
    readonly status?: number,
    readonly rejected: SendResult['rejected'] = [],
  ) {
    super(message);
  }
}

export class SluiceClient {
  private queue: EventInput[] = [];
  private inFlight = 0;
  private inFlightEvents = 0;
  private timer: NodeJS.Timeout | undefined;
  private consecutiveFailures = 0;
  private openUntil = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly o: Required<Omit<SluiceClientOptions, 'apiKey' | 'onError'>> & Pick<SluiceClientOptions, 'apiKey' | 'onError'>;
  /** Totals since creation. */
  readonly stats = { accepted: 0, duplicates: 0, rejected: 0, failed: 0, retries: 0 };

  constructor(opts: SluiceClientOptions) {
    this.o = {
      maxBatchEvents: 1_000,
      flushIntervalMs: 200,
      maxQueuedEvents: 100_000,
      maxAttempts: 8,
      backoffBaseMs: BACKOFF.ingestHttp.baseMs,
      backoffMaxMs: BACKOFF.ingestHttp.maxMs,
      breakerFailures: 5,
      breakerOpenMs: 5_000,
      concurrency: 2,
      gzip: true,
      fetch: globalThis.fetch.bind(globalThis),
      ...opts,
    };
  }

  /** Whether the breaker currently holds requests back. */
  get breakerOpen(): boolean {
    return Date.now() < this.openUntil;
  }
  /** Events buffered or in flight (not yet acknowledged). */
  get queued(): number {
    return this.queue.length + this.inFlightEvents;
  }

  /** Buffers an event; throws QueueFullError when the bounded queue is full (the event is not taken). */
  add(event: EventInput): void {
    if (this.queued >= this.o.maxQueuedEvents) throw new QueueFullError(this.o.maxQueuedEvents);
    this.queue.push(event);
    if (this.queue.length >= this.o.maxBatchEvents) this.pump();
    else if (!this.timer)
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump(true);
      }, this.o.flushIntervalMs);
  }

  /** Sends everything buffered and resolves when no request is in flight. */
  async flush(): Promise<void> {
    this.pump(true);
    while (this.queue.length > 0 || this.inFlight > 0) {
      await new Promise<void>((r) => this.idleWaiters.push(r));
      this.pump(true);
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.flush();
  }

  private pump(partial = false): void {
    while (this.inFlight < this.o.concurrency && (this.queue.length >= this.o.maxBatchEvents || (partial && this.queue.length > 0))) {
      const batch = this.queue.splice(0, this.o.maxBatchEvents);
      this.inFlight++;
      this.inFlightEvents += batch.length;
      void this.sendWithRetry(batch).finally(() => {
        this.inFlight--;
        this.inFlightEvents -= batch.length;
        for (const w of this.idleWaiters.splice(0)) w();
        this.pump(this.queue.length > 0 && !this.timer);
      });
    }
  }

  private backoff(attempt: number): number {
    return backoffMs(attempt, { ...BACKOFF.ingestHttp, baseMs: this.o.backoffBaseMs, maxMs: this.o.backoffMaxMs });
  }

  private async sendWithRetry(batch: EventInput[]): Promise<void> {
    const body = JSON.stringify(batch);
    const payload = this.o.gzip ? await gzipAsync(body) : Buffer.from(body);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.o.gzip) headers['content-encoding'] = 'gzip';
    if (this.o.apiKey) headers.authorization = `Bearer ${this.o.apiKey}`;
    let lastError = 'not sent';
    for (let attempt = 0; attempt < this.o.maxAttempts; attempt++) {
      const wait = this.openUntil - Date.now();
      if (wait > 0) await sleep(wait);
      let retryAfterMs: number | undefined;
      try {
        const res = await this.o.fetch(`${this.o.url}/v1/events`, {
          method: 'POST',
          body: new Uint8Array(payload),
          headers,
          signal: AbortSignal.timeout(30_000),
        });
        const json = (await res.json().catch(() => ({}))) as Partial<SendResult> & { error?: string };
        if (res.status === 202) {
          this.consecutiveFailures = 0;
          this.stats.accepted += json.accepted ?? 0;
          this.stats.duplicates += json.duplicates ?? 0;
          const rejected = (json.rejected ?? []).map((r) => ({ ...r, eventId: batch[r.index]?.eventId }));
          this.stats.rejected += rejected.length;
          if (rejected.length)
            this.o.onError?.(
              new DeliveryError(
                `${rejected.length} event(s) rejected by Sluice: ${rejected[0]!.reason}`,
                rejected.map((r) => batch[r.index]!),
                202,
                rejected,
              ),
            );
          return;
        }
        lastError = `HTTP ${res.status}: ${json.error ?? ''}`;
        if (res.status !== 429 && res.status !== 503 && res.status < 500) {
          // 400/401/403/413: retrying the same body cannot succeed.
          this.stats.failed += batch.length;
          this.o.onError?.(new DeliveryError(`Sluice refused ${batch.length} event(s): ${lastError}`, batch, res.status));
          return;
        }
        const ra = Number(res.headers.get('retry-after'));
        if (Number.isFinite(ra) && ra > 0) retryAfterMs = ra * 1000;
        if (res.status !== 429) this.recordFailure();
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
        this.recordFailure();
      }
      this.stats.retries++;
      await sleep(Math.max(retryAfterMs ?? 0, this.backoff(attempt)));
    }
    this.stats.failed += batch.length;
    this.o.onError?.(new DeliveryError(`could not deliver ${batch.length} event(s) after ${this.o.maxAttempts} attempts: ${lastError}`, batch));
  }

  private recordFailure(): void {
    this.consecutiveFailures++;
    if (this.consecutiveFailures >= this.o.breakerFailures) {
      this.openUntil = Date.now() + this.o.breakerOpenMs;
      this.consecutiveFailures = 0;
    }
  }
}
