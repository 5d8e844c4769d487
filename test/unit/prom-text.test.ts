// Reading Prometheus text: what the fleet totals from its workers and the dashboard reads from ingest and the fleet.
import { describe, expect, it } from 'vitest';
import { maxOf, parsePromText, sumOf } from '../../shared/prom-text.js';

const TEXT = `# HELP sluice_worker_batches_total Batches finished, by outcome.
# TYPE sluice_worker_batches_total counter
sluice_worker_batches_total{outcome="delivered",service="worker"} 12
sluice_worker_batches_total{outcome="retry",service="worker"} 3
sluice_worker_events_total{service="worker"} 4.5e3
sluice_ingest_events_total{outcome="accepted",producer="a \\"quoted\\" one"} 7
sluice_worker_oldest_message_age_seconds 1.25
sluice_worker_oldest_message_age_seconds{x="y"} 9 1700000000000
not a sample line
weird{unterminated 3
`;

describe('parsePromText', () => {
  const samples = parsePromText(TEXT);
  it('reads names, labels (unescaped) and values, skipping comments and malformed lines', () => {
    expect(samples).toHaveLength(6);
    expect(samples[0]).toEqual({ name: 'sluice_worker_batches_total', labels: { outcome: 'delivered', service: 'worker' }, value: 12 });
    expect(samples[3]!.labels.producer).toBe('a "quoted" one');
  });
  it('sums matching samples and finds maxima', () => {
    expect(sumOf(samples, 'sluice_worker_batches_total')).toBe(15);
    expect(sumOf(samples, 'sluice_worker_batches_total', { outcome: 'retry' })).toBe(3);
    expect(sumOf(samples, 'sluice_worker_events_total')).toBe(4_500);
    expect(sumOf(samples, 'missing')).toBeUndefined();
    expect(maxOf(samples, 'sluice_worker_oldest_message_age_seconds')).toBe(9);
  });
});
