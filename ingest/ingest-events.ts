// An ingest node's typed pipeline events (requests, WAL commits, segment delivery, WAL adoption) and their log/metric table.
// Every ingest event has exactly one handler (the compiler checks it), and its metrics exist from start (a scrape sees them at 0).
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/logger.js';
import { prom } from '../shared/metrics.js';
import { type EventHandlers, PipelineEvents } from '../shared/pipeline-events.js';

/** A POST /v1/events answered 202: some events may be duplicates or rejected (counts, not one event each). */
export interface RequestAccepted {
  type: 'RequestAccepted';
  producer: string;
  accepted: number;
  duplicates: number;
  rejected: number;
  seconds: number;
}

/** A POST /v1/events answered with an error status; `error` is the answer's text. */
export interface RequestRefused {
  type: 'RequestRefused';
  status: number;
  /** Undefined when the request was refused before it was authenticated. */
  producer: string | undefined;
  error: string;
  /** Undefined when refused before authentication (not timed, so a flood of bad keys does not move the latency). */
  seconds: number | undefined;
  /** The failure behind a 5xx refusal, logged as an error. */
  err?: unknown;
}

/** One WAL group commit: the bytes of `requests` requests made durable by one fsync. */
export interface WalCommitted {
  type: 'WalCommitted';
  bytes: number;
  requests: number;
  fsyncSeconds: number;
}

export interface SegmentSealed {
  type: 'SegmentSealed';
  segment: string;
  events: number;
  bytes: number;
}

/** A WAL segment (or its good lines) converted to Parquet batches, on one delivery attempt. */
export interface SegmentConverted {
  type: 'SegmentConverted';
  segment: string;
  batches: number;
  seconds: number;
}

/** One Parquet object in S3; `seconds` is undefined when the object was already there (kept, not uploaded again). */
export interface BatchUploaded {
  type: 'BatchUploaded';
  key: string;
  events: number;
  bytes: number;
  seconds: number | undefined;
}

/** The manifests of one segment (or quarantine release, `unique`) are in SQS. */
export interface ManifestsSent {
  type: 'ManifestsSent';
  unique: string;
  manifests: number;
  seconds: number;
}

/** Every manifest of the segment is in SQS and the WAL released its file. */
export interface SegmentDelivered {
  type: 'SegmentDelivered';
  segment: string;
  objects: number;
  events: number;
  ms: number;
}

/** The unreadable lines of a segment are in the quarantine object; its other lines go on to delivery. */
export interface SegmentQuarantined {
  type: 'SegmentQuarantined';
  segment: string;
  quarantined: number;
  delivered: number;
  reasons: Record<string, number>;
  firstReason: string;
  object: string;
  /** True when an earlier delivery attempt already reported this segment's quarantine (counted once). */
  repeated: boolean;
}

/** A delivery attempt failed; the segment stays in the WAL and is tried again after `retryInMs`. */
export interface SegmentDeliveryRetried {
  type: 'SegmentDeliveryRetried';
  segment: string;
  attempt: number;
  retryInMs: number;
  err: string;
}

/**
 * A segment that needed it (recovered, adopted, or holding a request whose confirm failed) was checked against the
 * reservations before delivery: `dropped` lines were cut because their ids were taken by a later request (never acknowledged).
 */
export interface SegmentResolved {
  type: 'SegmentResolved';
  segment: string;
  tokens: number;
  dropped: number;
}

/** A node found another node's WAL folder orphaned (its lock free) and is delivering its segments under that node's id. */
export interface WalAdoptionStarted {
  type: 'WalAdoptionStarted';
  /** The node whose folder is adopted (its id stays in every batch key). */
  node: string;
  /** The adopting node. */
  by: string;
  segments: number;
  events: number;
  bytes: number;
  folder: string;
}

/** Every segment of an adopted WAL folder is delivered and removed; the folder's lock is released next. */
export interface WalAdopted {
  type: 'WalAdopted';
  node: string;
  by: string;
  segments: number;
  events: number;
  seconds: number;
}

/** The node's own WAL folder is locked by a node adopting it; this node waits for the adoption to finish. */
export interface WalLockWaiting {
  type: 'WalLockWaiting';
  node: string;
  holder: string;
}

export type IngestEvent =
  | WalAdoptionStarted
  | WalAdopted
  | WalLockWaiting
  | RequestAccepted
  | RequestRefused
  | WalCommitted
  | SegmentSealed
  | SegmentConverted
  | BatchUploaded
  | ManifestsSent
  | SegmentDelivered
  | SegmentQuarantined
  | SegmentResolved
  | SegmentDeliveryRetried;

/** The metrics ingest events update. */
export function ingestEventMetrics(registry: Registry) {
  const registers = [registry];
  const histogram = (name: string, help: string, buckets: number[]) => new prom.Histogram({ name, help, buckets, registers });
  const counter = (name: string, help: string) => new prom.Counter({ name, help, registers });
  return {
    requests: new prom.Counter({ name: 'sluice_ingest_requests_total', help: 'HTTP requests to POST /v1/events by status', labelNames: ['status'], registers }),
    requestSeconds: histogram('sluice_ingest_ack_seconds', 'Time from request to acknowledgement', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5]),
    events: new prom.Counter({
      name: 'sluice_ingest_events_total',
      help: 'Events by outcome (accepted, rejected, duplicate) and producer',
      labelNames: ['outcome', 'producer'],
      registers,
    }),
    walBytes: counter('sluice_ingest_wal_bytes_total', 'Bytes appended to the WAL'),
    fsyncSeconds: histogram(
      'sluice_ingest_wal_fsync_seconds',
      'WAL fsync latency per group commit',
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    ),
    groupRequests: histogram('sluice_ingest_wal_group_requests', 'Requests sharing one fsync', [1, 2, 4, 8, 16, 32, 64, 128]),
    flushEvents: histogram('sluice_ingest_flush_events', 'Events per Parquet object', [100, 1e3, 1e4, 1e5, 5e5, 1e6, 5e6]),
    flushBytes: histogram('sluice_ingest_flush_bytes', 'Bytes per Parquet object', [1e4, 1e5, 1e6, 8e6, 32e6, 64e6, 128e6, 256e6]),
    encodeSeconds: histogram('sluice_ingest_parquet_encode_seconds', 'WAL segment → Parquet conversion time', [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10]),
    uploadSeconds: histogram('sluice_ingest_s3_upload_seconds', 'S3 upload latency per object', [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30]),
    sqsSeconds: histogram('sluice_ingest_sqs_send_seconds', 'SQS manifest send latency per segment', [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5]),
    segmentsDelivered: counter('sluice_ingest_segments_delivered_total', 'WAL segments delivered and deleted'),
    quarantinedEvents: new prom.Counter({
      name: 'sluice_ingest_quarantined_events_total',
      help: 'WAL lines the Parquet engine could not read, moved to the quarantine (sluice quarantine list) by reason',
      labelNames: ['reason'],
      registers,
    }),
    resolvedSegments: counter('sluice_ingest_resolved_segments_total', 'WAL segments checked against the event-id reservations before delivery'),
    droppedUnconfirmedEvents: counter(
      'sluice_ingest_dropped_unconfirmed_events_total',
      'WAL lines never acknowledged whose ids a later request stored instead (cut at delivery, so each id is archived once)',
    ),
    deliveryFailures: counter('sluice_ingest_delivery_failures_total', 'Failed segment delivery attempts (retried)'),
    adoptedSegments: counter('sluice_ingest_adopted_segments_total', "WAL segments of other nodes' orphaned folders delivered by this node"),
    adoptedEvents: counter('sluice_ingest_adopted_events_total', "Events of other nodes' orphaned WAL folders delivered by this node"),
  };
}

export type IngestEventMetrics = ReturnType<typeof ingestEventMetrics>;

const INGEST_HANDLERS: EventHandlers<IngestEvent, IngestEventMetrics> = {
  WalAdoptionStarted: {
    level: 'warn',
    message: (e) =>
      `adopting the orphaned WAL folder of ingest node ${e.node} (${e.folder}): delivering its ${e.segments} segment(s), ${e.events} event(s), under its node id`,
  },
  WalAdopted: {
    level: 'info',
    message: (e) => `adopted the WAL folder of ingest node ${e.node}: ${e.segments} segment(s), ${e.events} event(s) delivered and removed`,
    record: (e, m) => {
      m.adoptedSegments.inc(e.segments);
      m.adoptedEvents.inc(e.events);
    },
  },
  WalLockWaiting: {
    level: 'warn',
    message: (e) => `the WAL folder of ingest node ${e.node} is being adopted by ${e.holder}; waiting for the adoption to finish before starting`,
  },
  RequestAccepted: {
    level: 'debug',
    message: 'request accepted',
    record: (e, m) => {
      m.requests.inc({ status: '202' });
      m.requestSeconds.observe(e.seconds);
      m.events.inc({ outcome: 'accepted', producer: e.producer }, e.accepted);
      if (e.rejected) m.events.inc({ outcome: 'rejected', producer: e.producer }, e.rejected);
      if (e.duplicates) m.events.inc({ outcome: 'duplicate', producer: e.producer }, e.duplicates);
    },
  },
  RequestRefused: {
    level: (e) => (e.err === undefined ? 'debug' : 'error'),
    message: (e) => (e.err === undefined ? 'request refused' : 'request failed; nothing from it was acknowledged'),
    record: (e, m) => {
      m.requests.inc({ status: String(e.status) });
      if (e.seconds !== undefined) m.requestSeconds.observe(e.seconds);
    },
  },
  WalCommitted: {
    level: 'debug',
    message: 'WAL group commit',
    record: (e, m) => {
      m.walBytes.inc(e.bytes);
      m.fsyncSeconds.observe(e.fsyncSeconds);
      m.groupRequests.observe(e.requests);
    },
  },
  SegmentSealed: { level: 'debug', message: 'WAL segment sealed' },
  SegmentConverted: { level: 'debug', message: 'WAL segment converted to Parquet', record: (e, m) => m.encodeSeconds.observe(e.seconds) },
  BatchUploaded: {
    level: 'debug',
    message: (e) => (e.seconds === undefined ? 'Parquet object already in S3; kept' : 'Parquet object uploaded'),
    record: (e, m) => {
      if (e.seconds !== undefined) m.uploadSeconds.observe(e.seconds);
      m.flushEvents.observe(e.events);
      m.flushBytes.observe(e.bytes);
    },
  },
  ManifestsSent: { level: 'debug', message: 'manifests sent to SQS', record: (e, m) => m.sqsSeconds.observe(e.seconds) },
  SegmentDelivered: { level: 'info', message: 'segment delivered', record: (_e, m) => m.segmentsDelivered.inc() },
  SegmentQuarantined: {
    level: 'warn',
    message: (e) =>
      `quarantined ${e.quarantined} line(s) of WAL segment ${e.segment} (first reason: ${e.firstReason}); its other ${e.delivered} event(s) are delivered`,
    record: (e, m) => {
      if (!e.repeated) for (const reason in e.reasons) m.quarantinedEvents.inc({ reason }, e.reasons[reason]);
    },
  },
  SegmentResolved: {
    level: (e) => (e.dropped ? 'warn' : 'info'),
    message: (e) =>
      e.dropped
        ? `WAL segment ${e.segment}: cut ${e.dropped} never-acknowledged line(s) whose ids a later request stored; the rest is delivered`
        : `WAL segment ${e.segment}: every reservation of its ${e.tokens} request(s) is confirmed`,
    record: (e, m) => {
      m.resolvedSegments.inc();
      m.droppedUnconfirmedEvents.inc(e.dropped);
    },
  },
  SegmentDeliveryRetried: {
    level: 'warn',
    message: 'segment delivery failed; it stays in the WAL and will be retried',
    record: (_e, m) => m.deliveryFailures.inc(),
  },
};

export type IngestEvents = PipelineEvents<IngestEvent, IngestEventMetrics>;

/** The emitter of an ingest node's events, with their metrics in `registry`. */
export function ingestEvents(log: Logger, registry: Registry): IngestEvents {
  return new PipelineEvents(log, ingestEventMetrics(registry), INGEST_HANDLERS);
}
