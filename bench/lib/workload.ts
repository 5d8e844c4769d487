// A realistic producer workload: Zipf-distributed entities (a few heavy hitters), an event-type mix, and
// pre-encoded request bodies so the generator costs little next to the system under test.
import { rng, zipf } from '../../cli/random-samplers.js';

export const EVENT_TYPES = ['view', 'like', 'share'] as const;
const TYPE_WEIGHTS = [0.85, 0.12, 0.03];

export interface WorkloadOptions {
  entities: number;
  skew: number;
  seed: number;
  spreadMs: number;
  baseMs: number;
}

export function eventFactory(o: WorkloadOptions) {
  const r = rng(o.seed);
  const pick = zipf(o.entities, o.skew, r);
  let seq = 0;
  return (idPrefix: string) => {
    const u = r();
    const type = u < TYPE_WEIGHTS[0]! ? 'view' : u < TYPE_WEIGHTS[0]! + TYPE_WEIGHTS[1]! ? 'like' : 'share';
    return {
      eventId: `${idPrefix}-${seq++}`,
      entityId: `video-${pick()}`,
      eventType: type,
      timestamp: o.baseMs + Math.floor(r() * o.spreadMs),
      value: 1 + Math.floor(r() * 100),
    };
  };
}
