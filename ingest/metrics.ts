// Prometheus metrics of an ingest node: traffic and errors per producer, WAL and fsync, flushes, delivery.
import { prom } from '../shared/metrics.js';
import type { Registry } from 'prom-client';

export function createIngestMetrics(registry: Registry) {
  const r = [registry];
  return {
    requests: new prom.Counter({
      name: 'sluice_ingest_requests_total',
      help: 'HTTP requests to POST /v1/events by status',
      labelNames: ['status'],
      registers: r,
    }),
    requestSeconds: new prom.Histogram({
      name: 'sluice_ingest_ack_seconds',
      help: 'Time from request to acknowledgement',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers: r,
    }),
    events: new prom.Counter({
      name: 'sluice_ingest_events_total',
      help: 'Events by outcome (accepted, rejected, duplicate) and producer',
      labelNames: ['outcome', 'producer'],
      registers: r,
    }),
    seriesBudgetRejected: new prom.Counter({
      name: 'sluice_ingest_series_budget_rejected_events_total',
      help: 'Events rejected because their producer exceeded its new-series budget (SLUICE_MAX_NEW_SERIES_PER_MIN)',
      labelNames: ['producer'],
      registers: r,
    }),
    seriesBudgetUnchecked: new prom.Counter({
      name: 'sluice_ingest_series_budget_unchecked_events_total',
      help: 'Events of unconfirmed series admitted without a new-series budget check because Redis was unavailable',
      registers: r,
    }),
    walBytes: new prom.Counter({ name: 'sluice_ingest_wal_bytes_total', help: 'Bytes appended to the WAL', registers: r }),
    fsyncSeconds: new prom.Histogram({
      name: 'sluice_ingest_wal_fsync_seconds',
      help: 'WAL fsync latency per group commit',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers: r,
    }),
    groupRequests: new prom.Histogram({
      name: 'sluice_ingest_wal_group_requests',
      help: 'Requests sharing one fsync',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers: r,
    }),
    flushEvents: new prom.Histogram({
      name: 'sluice_ingest_flush_events',
      help: 'Events per Parquet object',
      buckets: [100, 1e3, 1e4, 1e5, 5e5, 1e6, 5e6],
      registers: r,
    }),
    flushBytes: new prom.Histogram({
      name: 'sluice_ingest_flush_bytes',
      help: 'Bytes per Parquet object',
      buckets: [1e4, 1e5, 1e6, 8e6, 32e6, 64e6, 128e6, 256e6],
      registers: r,
    }),
    encodeSeconds: new prom.Histogram({
      name: 'sluice_ingest_parquet_encode_seconds',
      help: 'WAL segment → Parquet conversion time',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10],
      registers: r,
    }),
    uploadSeconds: new prom.Histogram({
      name: 'sluice_ingest_s3_upload_seconds',
      help: 'S3 upload latency per object',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30],
      registers: r,
    }),
    sqsSeconds: new prom.Histogram({
      name: 'sluice_ingest_sqs_send_seconds',
      help: 'SQS manifest send latency per segment',
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: r,
    }),
    segmentsDelivered: new prom.Counter({ name: 'sluice_ingest_segments_delivered_total', help: 'WAL segments delivered and deleted', registers: r }),
    quarantinedEvents: new prom.Counter({
      name: 'sluice_ingest_quarantined_events_total',
      help: 'WAL lines the Parquet engine could not read, moved to the quarantine (sluice quarantine list) by reason',
      labelNames: ['reason'],
      registers: r,
    }),
    deliveryFailures: new prom.Counter({ name: 'sluice_ingest_delivery_failures_total', help: 'Failed segment delivery attempts (retried)', registers: r }),
    backlogBytes: new prom.Gauge({ name: 'sluice_ingest_backlog_bytes', help: 'Sealed WAL bytes not yet delivered', registers: r }),
    breakerOpen: new prom.Gauge({
      name: 'sluice_ingest_breaker_open',
      help: '1 while the circuit breaker of a dependency is open',
      labelNames: ['dependency'],
      registers: r,
    }),
  };
}

export type IngestMetrics = ReturnType<typeof createIngestMetrics>;
