// Admission of POST /v1/events, the stage before a body is read: API key → per-producer concurrency → shutting down →
// delivery backlog → WAL pressure (size cap reached, or a write just failed on the disk); then, while the body is read, the in-flight byte budget; after parsing, the rate limit. Nothing is
// reserved for a request before it is authenticated, and what it holds (a concurrency slot, body bytes) is given back
// when its answer is sent or the client goes away. A refusal is data (status, text, Retry-After), answered by the route.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../shared/config.js';
import { ApiKeys } from './api-keys.js';
import { ConcurrencyLimit, InflightBudget, type RateLimiter } from './rate-limit.js';

/** Why a request is turned away: its status, the answer's `error` text, and the headers that go with it. */
export interface Refusal {
  status: number;
  error: string;
  /** Seconds for Retry-After. */
  retryAfter?: number;
  /** Set on 401. */
  challenge?: boolean;
}

export const ANONYMOUS = 'anonymous';
/** Retry-After (seconds) of a request refused because the WAL is full or its disk failing. */
export const WAL_PRESSURE_RETRY_AFTER = 2;

type AdmissionConfig = Pick<
  Config,
  | 'SLUICE_API_KEYS'
  | 'SLUICE_MAX_INFLIGHT_BYTES'
  | 'SLUICE_MAX_CONCURRENT_REQUESTS_PER_PRODUCER'
  | 'SLUICE_BACKLOG_MAX_BYTES'
  | 'SLUICE_FLUSH_MAX_AGE'
  | 'SLUICE_RATE_LIMIT_EVENTS'
>;

export interface AdmissionOptions {
  limiter: RateLimiter;
  /** False once the node is shutting down. */
  accepting: () => boolean;
  /** Bytes accepted but not yet delivered (sealed backlog + open WAL segment). */
  backlogBytes: () => number;
  /** Why the WAL cannot take an append now (WriteAheadLog.pressure), or undefined. */
  walPressure?: () => string | undefined;
}

interface Held {
  bytes: number;
  slot: string;
}

export class Admission {
  private readonly apiKeys: ApiKeys;
  // Memory bound: decompressed body bytes are charged as they are read, only after authentication, and held
  // until the answer is sent; past SLUICE_MAX_INFLIGHT_BYTES a request is turned away with 503 (see InflightBudget).
  private readonly budget: InflightBudget;
  private readonly concurrency: ConcurrencyLimit;
  private readonly held = new WeakMap<FastifyRequest, Held>();

  constructor(
    private readonly cfg: AdmissionConfig,
    private readonly o: AdmissionOptions,
  ) {
    this.apiKeys = new ApiKeys(cfg.SLUICE_API_KEYS);
    this.budget = new InflightBudget(cfg.SLUICE_MAX_INFLIGHT_BYTES);
    this.concurrency = new ConcurrencyLimit(cfg.SLUICE_MAX_CONCURRENT_REQUESTS_PER_PRODUCER);
  }

  /** Gives back what a request holds once it is answered or aborted. */
  install(app: FastifyInstance): void {
    app.addHook('onResponse', async (req) => this.release(req));
    app.addHook('onRequestAbort', async (req) => this.release(req));
  }

  /** The producer the request's API key belongs to (ANONYMOUS when no keys are configured), or the refusal. */
  authenticate(req: FastifyRequest): string | Refusal {
    if (this.apiKeys.empty) return ANONYMOUS;
    const h = req.headers.authorization;
    if (!h) return { status: 401, error: 'missing Authorization header: send Authorization: Bearer <api key>', challenge: true };
    const m = /^Bearer\s+(.+)$/i.exec(h);
    const producer = m ? this.apiKeys.producerOf(m[1]!.trim()) : undefined;
    return producer ?? { status: 403, error: 'API key not recognised' };
  }

  /** Takes a concurrency slot for the producer and checks the node can take more; undefined when admitted. */
  admit(req: FastifyRequest, producer: string): Refusal | undefined {
    const { cfg } = this;
    // Anonymous requests are limited per client address, authenticated ones per producer.
    const slot = producer === ANONYMOUS ? `ip:${req.ip}` : producer;
    if (!this.concurrency.acquire(slot)) {
      return {
        status: 429,
        retryAfter: 1,
        error: `${producer === ANONYMOUS ? `client ${req.ip}` : `producer ${producer}`} already has ${cfg.SLUICE_MAX_CONCURRENT_REQUESTS_PER_PRODUCER} requests in progress (SLUICE_MAX_CONCURRENT_REQUESTS_PER_PRODUCER); wait for an answer before sending more, retry after 1s`,
      };
    }
    this.held.set(req, { bytes: 0, slot });
    if (!this.o.accepting()) return { status: 503, error: 'ingest node is shutting down; retry on another node' };
    if (this.o.backlogBytes() > cfg.SLUICE_BACKLOG_MAX_BYTES) {
      return {
        status: 503,
        retryAfter: Math.max(1, Math.ceil(cfg.SLUICE_FLUSH_MAX_AGE / 1000)),
        error: `delivery backlog is over ${cfg.SLUICE_BACKLOG_MAX_BYTES} bytes (S3/SQS slow or unavailable); retry later`,
      };
    }
    const pressure = this.o.walPressure?.();
    if (pressure !== undefined) return { status: 503, retryAfter: WAL_PRESSURE_RETRY_AFTER, error: pressure };
    return undefined;
  }

  /** Charges `n` more decompressed body bytes to an admitted request; the refusal text when the node is too busy. */
  reserve(req: FastifyRequest, n: number): string | undefined {
    const h = this.held.get(req);
    if (h && this.budget.charge(h.bytes, n)) {
      h.bytes += n;
      return undefined;
    }
    return `ingest node is busy (${this.budget.bytes} bytes of requests in progress, limit SLUICE_MAX_INFLIGHT_BYTES=${this.cfg.SLUICE_MAX_INFLIGHT_BYTES}); retry after 1s`;
  }

  /** Takes `events` tokens of the producer's rate limit (shared by all nodes through Redis); undefined when allowed. */
  async rateLimit(producer: string, events: number): Promise<Refusal | undefined> {
    const wait = await this.o.limiter.take(producer, events);
    if (wait <= 0) return undefined;
    return {
      status: 429,
      retryAfter: Math.max(1, Math.ceil(wait / 1000)),
      error: `rate limit of ${this.cfg.SLUICE_RATE_LIMIT_EVENTS} events/s for producer ${producer} exceeded; retry after ${Math.ceil(wait / 1000)}s`,
    };
  }

  private release(req: FastifyRequest): void {
    const h = this.held.get(req);
    if (h === undefined) return;
    this.held.delete(req);
    this.budget.release(h.bytes);
    this.concurrency.release(h.slot);
  }
}
