// The fleet supervisor's Prometheus metrics, defined once: its scaling decisions, its workers by state, the queue
// it scales on, the oldest message age and freshness, and its workers' counters summed (they survive the workers).
import { prom } from '../../shared/metrics.js';

export class FleetMetrics {
  readonly desired: prom.Gauge;
  readonly workers: prom.Gauge<'state'>;
  readonly scaleEvents: prom.Counter<'direction' | 'signal'>;
  readonly restarts: prom.Counter;
  readonly forcedKills: prom.Counter;
  readonly pollErrors: prom.Counter;
  readonly queueMessages: prom.Gauge<'queue' | 'state'>;
  readonly oldestAge: prom.Gauge;
  readonly freshness: prom.Gauge;
  readonly workerEvents: prom.Counter;
  readonly workerBatches: prom.Counter<'outcome'>;
  readonly workerDeadLetters: prom.Counter;

  constructor(registry: prom.Registry) {
    const registers = [registry];
    this.desired = new prom.Gauge({
      name: 'sluice_fleet_desired_workers',
      help: 'Workers the queue asks for: clamp(max(ceil((visible + in flight) / SLUICE_FLEET_TARGET_PER_WORKER), ceil(running × oldest age / SLUICE_FLEET_MAX_AGE)), min, max).',
      registers,
    });
    this.workers = new prom.Gauge({
      name: 'sluice_fleet_workers',
      help: 'Worker processes by state (starting, running, draining).',
      labelNames: ['state'],
      registers,
    });
    this.scaleEvents = new prom.Counter({
      name: 'sluice_fleet_scale_events_total',
      help: 'Scaling decisions carried out, by direction (up, down) and the signal that drove them (depth, age, bounds).',
      labelNames: ['direction', 'signal'],
      registers,
    });
    this.restarts = new prom.Counter({
      name: 'sluice_fleet_worker_restarts_total',
      help: 'Workers that exited without being asked to and were replaced.',
      registers,
    });
    this.forcedKills = new prom.Counter({
      name: 'sluice_fleet_worker_kills_total',
      help: 'Draining workers killed with SIGKILL after SLUICE_FLEET_DRAIN_GRACE.',
      registers,
    });
    this.pollErrors = new prom.Counter({
      name: 'sluice_fleet_queue_poll_errors_total',
      help: 'Failed reads of the queue depth (the fleet keeps its size until the next good read).',
      registers,
    });
    this.queueMessages = new prom.Gauge({
      name: 'sluice_queue_messages',
      help: 'Messages in a queue (batches, dead_letter) by state (visible, in_flight, delayed), as last read.',
      labelNames: ['queue', 'state'],
      registers,
    });
    this.oldestAge = new prom.Gauge({
      name: 'sluice_queue_oldest_message_age_seconds',
      help: 'Age of the oldest batch manifest not yet processed (from SQS when reported, else the oldest one in flight in a worker).',
      registers,
    });
    this.freshness = new prom.Gauge({
      name: 'sluice_pipeline_freshness_seconds',
      help: 'Upper estimate of how far query answers lag accepted events: SLUICE_FLUSH_MAX_AGE (ingest buffering) + the oldest unprocessed message age.',
      registers,
    });
    this.workerEvents = new prom.Counter({
      name: 'sluice_fleet_worker_events_total',
      help: "Events counted into InfluxDB by this fleet's workers (sum of their sluice_worker_events_total).",
      registers,
    });
    this.workerBatches = new prom.Counter({
      name: 'sluice_fleet_worker_batches_total',
      help: "Batches finished by this fleet's workers, by outcome (sum of their sluice_worker_batches_total).",
      labelNames: ['outcome'],
      registers,
    });
    this.workerDeadLetters = new prom.Counter({
      name: 'sluice_fleet_worker_dead_letters_total',
      help: "Batches this fleet's workers sent to the dead-letter queue.",
      registers,
    });
  }
}
