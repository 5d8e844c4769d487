// Adoption of orphaned WAL folders: at start and every SLUICE_WAL_ADOPT_INTERVAL an ingest node looks at the other
// node folders under `<SLUICE_DATA_DIR>/ingest/`; a folder holding segments whose lock is free (its node died and did
// not come back, e.g. restarted under another id) is locked by this node, its segments (sealed and unsealed, torn
// tails cut) are delivered under the original node id and segment ids — the same batch keys the dead node would have
// used, so a later start of that node overwrites rather than duplicates — then removed, then the lock is released.
// While the adoption runs the original node, if it comes back, waits for the lock (ingest/main.ts), then finds its
// folder empty (or, after an adopter crashed, the same segments, delivered again under the same keys).
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { IngestEvents } from './ingest-events.js';
import { errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { recoverSegments, type Segment } from './wal-segments.js';
import { tryLockWal } from './wal-lock.js';

/** Delivers segments under another node's id and resolves once every one is released. */
export interface AdoptedDelivery {
  enqueue(seg: Segment): void;
  drain(): Promise<void>;
}

export interface AdoptionOptions {
  /** `<SLUICE_DATA_DIR>/ingest`: the parent of every node's folder. */
  ingestDir: string;
  /** This node's id (its own folder is never adopted). */
  self: string;
  /** 0 = only at start. */
  intervalMs: number;
  /** A delivery of `node`'s segments (keys and manifests under `node`), releasing each by removing its file. */
  deliveryFor: (node: string) => AdoptedDelivery;
  events: IngestEvents;
  log: Logger;
}

const SEGMENT_NAME = /^\d{13}_\d{6}\.ndjson$/;

export class WalAdoption {
  private timer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: AdoptionOptions) {}

  /** Scans now (returns when this first scan's adoptions are delivered) and then on the interval. */
  async start(): Promise<void> {
    await this.scan();
    if (this.o.intervalMs > 0 && !this.stopped) {
      this.timer = setInterval(() => void this.scan(), this.o.intervalMs);
      this.timer.unref();
    }
  }

  /** Stops scanning; resolves once an adoption in progress is delivered and its lock released. */
  async close(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.scanning;
  }

  /** One pass over the node folders; overlapping calls share the pass in progress. */
  scan(): Promise<void> {
    this.scanning ??= this.scanOnce().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    if (!existsSync(this.o.ingestDir)) return;
    for (const node of readdirSync(this.o.ingestDir).sort()) {
      if (this.stopped) return;
      if (node === this.o.self || !hasSegments(path.join(this.o.ingestDir, node, 'wal'))) continue;
      try {
        await this.adopt(node);
      } catch (err) {
        this.o.log.error({ node, err: errorMessage(err) }, `could not adopt the WAL folder of ingest node ${node}; it is tried again on the next scan`);
      }
    }
  }

  private async adopt(node: string): Promise<void> {
    const { events, self } = this.o;
    const nodeDir = path.join(this.o.ingestDir, node);
    const attempt = tryLockWal(nodeDir, 'adopting', self);
    if (!attempt.held) return; // its node (or another adopter) is alive
    const t0 = performance.now();
    try {
      const segments = recoverSegments(path.join(nodeDir, 'wal'));
      if (segments.length === 0) return;
      const count = segments.reduce((n, s) => n + s.events, 0);
      const bytes = segments.reduce((n, s) => n + s.bytes, 0);
      events.emit({ type: 'WalAdoptionStarted', node, by: self, segments: segments.length, events: count, bytes, folder: nodeDir });
      const delivery = this.o.deliveryFor(node);
      for (const seg of segments) delivery.enqueue(seg);
      await delivery.drain();
      events.emit({ type: 'WalAdopted', node, by: self, segments: segments.length, events: count, seconds: (performance.now() - t0) / 1000 });
    } finally {
      attempt.lock.release();
    }
  }
}

function hasSegments(walDir: string): boolean {
  try {
    return readdirSync(walDir).some((n) => SEGMENT_NAME.test(n));
  } catch {
    return false;
  }
}
