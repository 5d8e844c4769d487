// The worker's Prometheus metrics, defined once: batches by outcome, events and duplicates, latencies,
// in-flight batches, the age of the oldest message being processed, dead letters by reason, and events quarantined
// and InfluxDB points refused by reason. Outcome counters are updated only through worker-events.ts.
import { prom } from '../shared/metrics.js';

export class WorkerMetrics {
  readonly batches: prom.Counter<'outcome'>;
  readonly points: prom.Counter;
  readonly events: prom.Counter;
  readonly duplicates: prom.Counter;
  readonly batchSeconds: prom.Histogram<'outcome'>;
  readonly influxWriteSeconds: prom.Histogram;
  readonly deadLetters: prom.Counter<'reason'>;
  readonly quarantinedEvents: prom.Counter<'reason'>;
  readonly influxRejectedPoints: prom.Counter<'reason'>;
  readonly inFlight: prom.Gauge;
  /** SentTimestamp (epoch ms) of each message in flight, by receipt handle. */
  private readonly sentAt = new Map<string, number>();

  constructor(registry: prom.Registry) {
    const registers = [registry];
    this.batches = new prom.Counter({
      name: 'sluice_worker_batches_total',
      help: 'Batches finished, by outcome (delivered, retry, rejected).',
      labelNames: ['outcome'],
      registers,
    });
    this.events = new prom.Counter({ name: 'sluice_worker_events_total', help: 'Events added to the InfluxDB aggregates.', registers });
    this.points = new prom.Counter({
      name: 'sluice_worker_influx_points_total',
      help: 'Per-minute points written to InfluxDB (one per entity, event type and minute of a batch).',
      registers,
    });
    this.duplicates = new prom.Counter({
      name: 'sluice_worker_duplicates_dropped_total',
      help: 'Rows not counted because their event id was repeated in the file or counted by another batch.',
      registers,
    });
    this.batchSeconds = new prom.Histogram({
      name: 'sluice_worker_batch_duration_seconds',
      help: 'Time from receiving a batch to its outcome.',
      labelNames: ['outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600],
      registers,
    });
    this.influxWriteSeconds = new prom.Histogram({
      name: 'sluice_worker_influx_write_seconds',
      help: 'Latency of one InfluxDB write request.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.deadLetters = new prom.Counter({
      name: 'sluice_worker_dead_letters_total',
      help: 'Batches sent to the dead-letter queue, by reason code.',
      labelNames: ['reason'],
      registers,
    });
    this.quarantinedEvents = new prom.Counter({
      name: 'sluice_worker_quarantined_events_total',
      help: 'Events of delivered batches set aside in the quarantine instead of counted, by reason (contracts/quarantine.ts).',
      labelNames: ['reason'],
      registers,
    });
    this.influxRejectedPoints = new prom.Counter({
      name: 'sluice_worker_influx_rejected_points_total',
      help: 'Per-minute points InfluxDB refused (their events are quarantined), by reason: series_limit, unparseable, field_type_conflict, influx_rejected.',
      labelNames: ['reason'],
      registers,
    });
    this.inFlight = new prom.Gauge({ name: 'sluice_worker_batches_in_flight', help: 'Batches being processed by this process.', registers });
    const sentAt = this.sentAt;
    new prom.Gauge({
      name: 'sluice_worker_oldest_message_age_seconds',
      help: 'Age (since it was sent to SQS) of the oldest message this process is processing; 0 when idle.',
      registers,
      collect() {
        let oldest = Infinity;
        for (const t of sentAt.values()) oldest = Math.min(oldest, t);
        this.set(oldest === Infinity ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
      },
    });
  }

  started(handle: string, sentTimestampMs: number | undefined): void {
    this.inFlight.inc();
    this.sentAt.set(handle, sentTimestampMs ?? Date.now());
  }

  /** The batch's message is settled (its outcome is counted by its pipeline event, worker-events.ts). */
  finished(handle: string): void {
    this.inFlight.dec();
    this.sentAt.delete(handle);
  }
}
