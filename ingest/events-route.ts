// POST /v1/events, stage by stage: admission (ingest/admission.ts) → read the body within its budget → parse → rate
// limit → validate → reserve event ids + new-series budget (sent together) → WAL append (fsync) → confirm the reservation → 202.
// A request is acknowledged only after its events are durable; every answer is reported as one pipeline event
// (RequestAccepted / RequestRefused), never one per event of the request.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import type { Config } from '../shared/config.js';
import type { IngestEvents } from './ingest-events.js';
import { validateEvent, type RejectionKind, type Event } from '../shared/contracts/event.js';
import { encodeEventLines } from '../shared/contracts/event-line.js';
import { BodyError, parseEventsBody, readEventsBody } from './parse-body.js';
import { RejectionList, type Rejected } from './rejections.js';
import { dedupIdentity, type EventReservations, type Reservation } from './event-reservations.js';
import type { SegmentConfirmations } from './segment-resolution.js';
import { type SeriesBudget, seriesKey } from './series-budget.js';
import { WAL_FULL, type WriteAheadLog } from './wal.js';
import { WAL_PRESSURE_RETRY_AFTER, type Admission, type Refusal } from './admission.js';
import { SluiceError, errorMessage } from '../shared/errors.js';

export interface EventsResponse {
  accepted: number;
  duplicates: number;
  /** The first REJECTIONS_LISTED rejections. */
  rejected: Rejected[];
  /** All rejections of the request. */
  rejectedCount: number;
  /** Rejections per "field:rule" (e.g. "entityId:length", "event:json"). */
  rejectedByReason: Record<string, number>;
}

/** Rejections listed one by one in an answer; the rest are only counted (rejectedCount, rejectedByReason). */
export const REJECTIONS_LISTED = 100;

export interface EventsRouteDeps {
  cfg: Pick<Config, 'SLUICE_MAX_BODY_BYTES' | 'SLUICE_MAX_EVENTS_PER_REQUEST' | 'SLUICE_MAX_EVENT_AGE'>;
  admission: Admission;
  reservations: EventReservations;
  confirmations: SegmentConfirmations;
  seriesBudget: SeriesBudget;
  wal: WriteAheadLog;
  events: IngestEvents;
}

type Parsed = ReturnType<typeof parseEventsBody>;

/** The events of a request that passed validation, unique within it, with their index in the request. */
interface Screened {
  valid: Event[];
  validAt: number[];
  ids: string[];
  duplicates: number;
}

export function addEventsRoute(app: FastifyInstance, d: EventsRouteDeps): void {
  app.post('/v1/events', (req, reply) => handleEvents(d, req, reply));
}

async function handleEvents(d: EventsRouteDeps, req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const t0 = performance.now();
  const producer = d.admission.authenticate(req);
  if (typeof producer !== 'string') return refuse(d, reply, producer, undefined, undefined);
  const refused = (r: Refusal, err?: unknown) => refuse(d, reply, r, producer, t0, err);
  const notAdmitted = d.admission.admit(req, producer);
  if (notAdmitted) return refused(notAdmitted);
  const rejected = new RejectionList(REJECTIONS_LISTED);
  const admitted = await readAndAdmit(d, req, producer, rejected);
  if ('status' in admitted) return refused(admitted);
  const { lines, fresh, duplicates, reservation } = admitted;
  if (fresh) {
    let segment: string | undefined;
    try {
      await d.wal.append(lines, fresh, {
        durable: (id) => {
          segment = id;
          if (reservation) d.confirmations.begin(id);
        },
        failed: (id) => {
          if (id !== undefined && reservation) d.confirmations.markUnsure(id);
        },
      });
    } catch (err) {
      // Nothing was acknowledged: the ids are given back at once (lines a failed write could not cut are left out at delivery).
      if (reservation) await d.reservations.abort(reservation);
      // Cap reached between admission and the append: a refusal like admission's, not a failure.
      if (err instanceof SluiceError && err.code === WAL_FULL) return refused({ status: 503, retryAfter: WAL_PRESSURE_RETRY_AFTER, error: err.message });
      const error = `could not make the events durable (WAL write failed: ${walFailureCode(err)}); nothing from this request was acknowledged, retry`;
      return refused({ status: 503, retryAfter: WAL_PRESSURE_RETRY_AFTER, error }, err);
    }
    if (reservation && segment !== undefined) {
      // Confirmed after the fsync (never before: a crash must not hide an unstored event) and before the ack, so a
      // retry of an acknowledged request is answered "duplicate" and a retry of this one still in flight waits.
      const confirmed = await d.reservations.confirm(reservation);
      d.confirmations.end(segment, confirmed === 'confirmed');
      if (confirmed !== 'confirmed') return refused(unconfirmed(confirmed));
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  d.events.emit({ type: 'RequestAccepted', producer, accepted: fresh, duplicates, rejected: rejected.length, seconds });
  const body: EventsResponse = {
    accepted: fresh,
    duplicates,
    rejected: rejected.listed,
    rejectedCount: rejected.length,
    rejectedByReason: rejected.byReason,
  };
  return reply.code(202).send(body);
}

/**
 * Read the body → parse → rate limit → validate → reserve ids + series budget, down to the WAL bytes. Its own call, so the
 * parsed and validated events are garbage once it returns: an async function keeps its locals while it awaits, and
 * only the bytes need to live through the fsync and the confirm.
 */
async function readAndAdmit(d: EventsRouteDeps, req: FastifyRequest, producer: string, rejected: RejectionList): Promise<Admitted | Refusal> {
  const parsed = await readBody(d, req);
  if ('status' in parsed) return parsed;
  const limited = await d.admission.rateLimit(producer, parsed.values.length);
  if (limited) return limited;
  const screened = screen(parsed, { nowMs: Date.now(), maxAgeMs: d.cfg.SLUICE_MAX_EVENT_AGE }, rejected);
  return admitFresh(d, producer, screened, rejected);
}

/** Answers a refusal; `t0` is undefined before authentication (the answer is then not timed). */
function refuse(d: EventsRouteDeps, reply: FastifyReply, r: Refusal, producer: string | undefined, t0: number | undefined, err?: unknown) {
  if (r.retryAfter !== undefined) reply.header('retry-after', String(r.retryAfter));
  if (r.challenge) reply.header('www-authenticate', 'Bearer');
  const seconds = t0 === undefined ? undefined : (performance.now() - t0) / 1000;
  d.events.emit({ type: 'RequestRefused', status: r.status, producer, error: r.error, seconds, err });
  return reply.code(r.status).send({ error: r.error });
}

/** Reads the body (decompressed bytes charged to the request as they arrive) and parses it; a refusal on bad bodies. */
async function readBody(d: EventsRouteDeps, req: FastifyRequest): Promise<Parsed | Refusal> {
  const max = d.cfg.SLUICE_MAX_BODY_BYTES;
  try {
    const stream = req.body as Readable | undefined;
    if (!stream || typeof stream.on !== 'function') return { status: 400, error: 'body is empty: send a JSON array of events or NDJSON' };
    const ctype = String(req.headers['content-type'] ?? '');
    const gzip = /gzip/i.test(String(req.headers['content-encoding'] ?? ''));
    const ndjson = /ndjson|jsonl|json-seq/i.test(ctype);
    if (!gzip && Number(req.headers['content-length']) > max) {
      throw new BodyError(413, `request body exceeds the limit of ${max} bytes (SLUICE_MAX_BODY_BYTES); split it into smaller requests`);
    }
    const body = await readEventsBody(stream, {
      gzip,
      ndjson,
      maxBytes: max,
      maxEvents: d.cfg.SLUICE_MAX_EVENTS_PER_REQUEST,
      reserve: (n) => d.admission.reserve(req, n),
    });
    return parseEventsBody(body, { gzip: false, maxBytes: max, ndjson });
  } catch (err) {
    if (err instanceof BodyError) return { status: err.status, error: err.message, ...(err.status === 503 ? { retryAfter: 1 } : {}) };
    throw err;
  }
}

/** Validates each parsed value; invalid ones are rejected with their reason, repeats within the request counted. */
function screen({ values, lineErrors }: Parsed, bounds: { nowMs: number; maxAgeMs: number }, rejected: RejectionList): Screened {
  const why: RejectionKind = { field: 'event', rule: 'type' };
  const out: Screened = { valid: [], validAt: [], ids: [], duplicates: 0 };
  const inRequest = new Set<string>();
  const lineErrs = lineErrors.size > 0;
  for (let i = 0; i < values.length; i++) {
    const lineErr = lineErrs ? lineErrors.get(i) : undefined;
    if (lineErr) {
      rejected.push({ index: i, reason: lineErr }, 'event:json');
      continue;
    }
    const e = validateEvent(values[i], bounds, why);
    if (typeof e === 'string') {
      rejected.push({ index: i, reason: e }, `${why.field}:${why.rule}`);
      continue;
    }
    // One hash lookup per event: a repeat leaves the set's size unchanged.
    const seen = inRequest.size;
    if (inRequest.add(e.eventId).size === seen) {
      out.duplicates++;
      continue;
    }
    out.valid.push(e);
    out.validAt.push(i);
    out.ids.push(e.eventId);
  }
  return out;
}

/**
 * Reserves the events' ids (ingest/event-reservations.ts) and asks the new-series budget, at once (one Redis round trip
 * of latency each request). Drops ids already stored, rejects events past the budget (their ids given back, so a later
 * request may store them), and returns the rest as WAL lines carrying the reservation token — or the refusal when an id
 * is still in flight in another request or Redis cannot be asked (nothing reserved then).
 */
async function admitFresh(d: EventsRouteDeps, producer: string, s: Screened, rejected: RejectionList): Promise<Admitted | Refusal> {
  const token = d.reservations.enabled ? d.reservations.newToken() : undefined;
  const [reserved, series] = await Promise.all([
    token === undefined
      ? undefined
      : d.reservations.reserve(
          token,
          s.ids.map((id) => dedupIdentity(producer, id)),
        ),
    // No budget (SLUICE_MAX_NEW_SERIES_PER_MIN=0): every event is admitted, no series key is built.
    d.seriesBudget.enabled
      ? d.seriesBudget.admit(
          producer,
          s.valid.map((e) => seriesKey(e.entityId, e.eventType)),
        )
      : undefined,
  ]);
  if (reserved?.kind === 'in_flight') return { status: 503, retryAfter: IN_FLIGHT_RETRY_AFTER, error: IN_FLIGHT_ERROR };
  if (reserved?.kind === 'unavailable') {
    return {
      status: 503,
      retryAfter: DEDUP_DOWN_RETRY_AFTER,
      error: `cannot check event ids for duplicates (Redis: ${reserved.error}); nothing from this request was stored, retry`,
    };
  }
  const reservation = reserved?.reservation;
  let duplicates = s.duplicates;
  const toWrite: Event[] = [];
  const unreserve: string[] = [];
  for (let i = 0; i < s.valid.length; i++) {
    if (reserved?.duplicate[i]) {
      duplicates++;
      continue;
    }
    if (series && !series.admitted[i]) {
      rejected.push({ index: s.validAt[i]!, reason: series.reason }, 'series:budget');
      if (reservation) unreserve.push(dedupIdentity(producer, s.ids[i]!));
      continue;
    }
    toWrite.push(s.valid[i]!);
  }
  const fresh = toWrite.length;
  // The WAL lines as bytes, written as they are (no string per line, no re-encoding in the WAL).
  const lines = encodeEventLines(toWrite, Date.now(), producer, token);
  if (reservation && unreserve.length) {
    try {
      await d.reservations.unreserve(reservation, unreserve);
    } catch (err) {
      await d.reservations.abort(reservation);
      return {
        status: 503,
        retryAfter: DEDUP_DOWN_RETRY_AFTER,
        error: `cannot give back refused event ids (Redis: ${errorMessage(err)}); nothing stored, retry`,
      };
    }
  }
  return { lines, fresh, duplicates, reservation: fresh ? reservation : undefined };
}

interface Admitted {
  lines: Uint8Array;
  fresh: number;
  duplicates: number;
  reservation: Reservation | undefined;
}

/** Seconds a retry of ids still in flight in another request should wait (that request ends within milliseconds, or its lease runs out). */
export const IN_FLIGHT_RETRY_AFTER = 1;
const DEDUP_DOWN_RETRY_AFTER = 2;
export const IN_FLIGHT_ERROR =
  'some event ids of this request are being stored by another request still in flight (a concurrent retry); nothing from this request was stored, retry';

/** The refusal after a durable append whose confirm did not succeed: never acknowledged, so the producer retries. */
function unconfirmed(r: 'aborted' | 'unknown'): Refusal {
  return {
    status: 503,
    retryAfter: IN_FLIGHT_RETRY_AFTER,
    error:
      r === 'aborted'
        ? 'this request took longer than its reservation lease (SLUICE_DEDUP_LEASE) and another request now stores some of its ids; not acknowledged, retry'
        : 'could not confirm the event-id reservations (Redis did not answer); not acknowledged, retry (a retry never stores an id twice)',
  };
}

/** The disk's error code behind a failed append (ENOSPC, EIO, …), without paths: the answer goes to the producer. */
function walFailureCode(err: unknown): string {
  const cause = err instanceof Error ? err.cause : undefined;
  return (cause as NodeJS.ErrnoException | undefined)?.code ?? (err as NodeJS.ErrnoException).code ?? 'unknown error';
}
