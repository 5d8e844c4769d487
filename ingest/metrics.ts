// Prometheus metrics of an ingest node that are state, not steps: series budget checks, delivery backlog, breakers.
// The metrics of each step (requests, WAL commits, flushes, uploads, deliveries) are derived from its pipeline event
// (ingest/ingest-events.ts, ingestEventMetrics), in the same registry. Under `sluice ingest --processes N` /metrics
// sums the processes' registries (shared/metrics.ts): each gauge here says how its values combine (`aggregator`).
import { prom } from '../shared/metrics.js';
import type { Registry } from 'prom-client';

export function createIngestMetrics(registry: Registry) {
  const r = [registry];
  return {
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
    // Every process has its own WAL: the node's backlog is the sum.
    backlogBytes: new prom.Gauge({ name: 'sluice_ingest_backlog_bytes', help: 'Sealed WAL bytes not yet delivered', aggregator: 'sum', registers: r }),
    breakerOpen: new prom.Gauge({
      name: 'sluice_ingest_breaker_open',
      help: '1 while the circuit breaker of a dependency is open (in any process of the node)',
      labelNames: ['dependency'],
      // Each process has its own breakers: open when any process's is (a sum would read 2 for one open dependency).
      aggregator: 'max',
      registers: r,
    }),
  };
}

export type IngestMetrics = ReturnType<typeof createIngestMetrics>;
