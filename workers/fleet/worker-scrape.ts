// Sums the fleet's workers' counters into the fleet's own (they survive the workers): each scrape of a worker's
// /metrics adds only the increase since its last scrape (a restarted counter counts from 0), and reports the
// oldest message age any worker holds. A worker that does not answer within 1 s is skipped this round.
import { maxOf, scrapeMetrics, sumOf, type Sample } from '../../shared/prom-text.js';
import type { FleetMetrics } from './fleet-metrics.js';
import type { WorkerProc } from './worker-pool.js';

const SCRAPE_TIMEOUT_MS = 1_000;

/** Adds the increase of one counter since the worker's last scrape. */
function addIncrease(w: WorkerProc, key: string, value: number | undefined, add: (n: number) => void): void {
  if (value === undefined) return;
  const before = w.lastSeen.get(key) ?? 0;
  const inc = value >= before ? value - before : value;
  if (inc > 0) add(inc);
  w.lastSeen.set(key, value);
}

function addWorkerCounters(w: WorkerProc, samples: Sample[], metrics: FleetMetrics): void {
  addIncrease(w, 'events', sumOf(samples, 'sluice_worker_events_total'), (n) => metrics.workerEvents.inc(n));
  addIncrease(w, 'dead', sumOf(samples, 'sluice_worker_dead_letters_total'), (n) => metrics.workerDeadLetters.inc(n));
  for (const outcome of new Set(samples.filter((s) => s.name === 'sluice_worker_batches_total').map((s) => s.labels.outcome ?? ''))) {
    addIncrease(w, `batches:${outcome}`, sumOf(samples, 'sluice_worker_batches_total', { outcome }), (n) => metrics.workerBatches.inc({ outcome }, n));
  }
}

/** Scrapes every worker that serves; resolves with the oldest message age (seconds) a worker reports, if any. */
export async function scrapeWorkers(workers: readonly WorkerProc[], metrics: FleetMetrics): Promise<number | undefined> {
  let oldest: number | undefined;
  await Promise.all(
    workers
      .filter((w) => w.url)
      .map(async (w) => {
        let samples: Sample[];
        try {
          samples = await scrapeMetrics(w.url!, SCRAPE_TIMEOUT_MS);
        } catch {
          return;
        }
        addWorkerCounters(w, samples, metrics);
        const age = maxOf(samples, 'sluice_worker_oldest_message_age_seconds');
        if (age !== undefined) oldest = Math.max(oldest ?? 0, age);
      }),
  );
  return oldest;
}
