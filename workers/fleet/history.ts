// The fleet's recent history and the shapes GET /v1/fleet answers with: the last 500 scaling decisions carried out,
// worker starts and exits, newest last. Bounded, so a fleet that runs for months holds the same memory.
import type { Direction, ScalingSignal } from './scaling-policy.js';

export type WorkerState = 'starting' | 'running' | 'draining';

export interface FleetWorkerInfo {
  id: number;
  pid: number | undefined;
  state: WorkerState;
  url?: string;
  startedAt: string;
}

/** One entry of the fleet's recent history (GET /v1/fleet), newest last. */
export type FleetEvent =
  | { at: string; kind: 'scale'; direction: Exclude<Direction, 'none'>; from: number; to: number; signal: ScalingSignal; reason: string }
  | { at: string; kind: 'started'; worker: number; pid: number | undefined }
  | { at: string; kind: 'exited'; worker: number; pid: number | undefined; drained: boolean; code: number | null; signal: string | null };

const HISTORY = 500;

export class FleetHistory {
  readonly events: FleetEvent[] = [];

  record(e: FleetEvent): void {
    this.events.push(e);
    if (this.events.length > HISTORY) this.events.shift();
  }
}
