// The canary's Prometheus metrics, defined once: when an event was last counted, the end-to-end lag (last and
// distribution), events sent, and failures by reason (ingest refused it, or not counted within SLUICE_CANARY_MAX_DELAY).
import type { Registry } from 'prom-client';
import { prom } from '../../shared/metrics.js';

export function canaryMetrics(registry: Registry) {
  const registers = [registry];
  return {
    lastSuccess: new prom.Gauge({
      name: 'sluice_canary_last_success_timestamp_seconds',
      help: 'When the query API last counted a canary event (Unix seconds).',
      registers,
    }),
    failures: new prom.Counter({
      name: 'sluice_canary_failures_total',
      help: 'Canary events not counted within SLUICE_CANARY_MAX_DELAY, or that ingest refused.',
      labelNames: ['reason'],
      registers,
    }),
    lag: new prom.Gauge({
      name: 'sluice_canary_lag_seconds',
      help: 'Time from sending the last counted canary event to seeing it in the query API; while events are pending, the age of the oldest.',
      registers,
    }),
    lagHist: new prom.Histogram({
      name: 'sluice_canary_lag_distribution_seconds',
      help: 'End-to-end lag of counted canary events.',
      buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
      registers,
    }),
    sent: new prom.Counter({ name: 'sluice_canary_sent_total', help: 'Canary events accepted by ingest.', registers }),
  };
}

export type CanaryMetrics = ReturnType<typeof canaryMetrics>;
