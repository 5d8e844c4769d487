// `sluice load`: a configurable producer for load, soak and fault runs. Sends events at a target rate with
// Zipf-skewed entities (heavy hitters), an event-type mix, re-sent duplicates, late events and bursts, through
// the producer client, and records the ground truth (unique acknowledged events per entity, type and minute).
import { createWriteStream } from 'node:fs';
import { SluiceClient, QueueFullError } from '../ingest/client/index.js';
import { rng, zipf } from './random-samplers.js';

export interface LoadOptions {
  url: string;
  apiKey?: string;
  /** Target events/s (steady). */
  rate: number;
  durationMs: number;
  entities: number;
  skew: number;
  /** e.g. {view: 0.85, like: 0.12, share: 0.03} */
  types: Record<string, number>;
  /** Fraction of sends that re-send an earlier eventId (must be counted once). */
  duplicateRatio: number;
  /** Fraction of events stamped 5–60 minutes in the past. */
  lateRatio: number;
  /** Every burstEveryMs, for burstForMs, the rate is multiplied by burstFactor (0 = no bursts). */
  burstEveryMs: number;
  burstForMs: number;
  burstFactor: number;
  seed: number;
  idPrefix: string;
  batchEvents?: number;
  concurrency?: number;
  /** Where to write the ground truth as NDJSON lines {entityId, eventType, minute, count, sum}. */
  truthFile?: string;
  onProgress?: (p: LoadProgress) => void;
}

export interface LoadProgress {
  sent: number;
  unique: number;
  duplicatesSent: number;
  elapsedMs: number;
  queued: number;
}

export interface Truth {
  /** key `${entityId}\u0000${eventType}\u0000${minuteMs}` → {count, sum} of unique events. */
  perMinute: Map<string, { count: number; sum: number }>;
  uniqueEvents: number;
  failedEvents: number;
}

export interface LoadResult extends Truth {
  sent: number;
  duplicatesSent: number;
  elapsedMs: number;
  clientStats: SluiceClient['stats'];
}

export const truthKey = (entityId: string, eventType: string, minuteMs: number) => `${entityId}\u0000${eventType}\u0000${minuteMs}`;

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const r = rng(o.seed);
  const pick = zipf(o.entities, o.skew, r);
  const typeNames = Object.keys(o.types);
  const weights = Object.values(o.types);
  const total = weights.reduce((a, b) => a + b, 0);
  const pickType = () => {
    let u = r() * total;
    for (let i = 0; i < weights.length; i++) {
      u -= weights[i]!;
      if (u <= 0) return typeNames[i]!;
    }
    return typeNames[typeNames.length - 1]!;
  };

  const perMinute = new Map<string, { count: number; sum: number }>();
  const originals = new WeakSet<object>();
  let unique = 0;
  let failedEvents = 0;
  const count = (e: { entityId: string; eventType: string; timestamp: number; value: number }, sign: 1 | -1) => {
    const k = truthKey(e.entityId, e.eventType, Math.floor(e.timestamp / 60_000) * 60_000);
    const x = perMinute.get(k) ?? { count: 0, sum: 0 };
    x.count += sign;
    x.sum += sign * e.value;
    perMinute.set(k, x);
    unique += sign;
  };
  const client = new SluiceClient({
    url: o.url,
    apiKey: o.apiKey,
    maxBatchEvents: o.batchEvents ?? 1_000,
    concurrency: o.concurrency ?? 4,
    maxQueuedEvents: 200_000,
    maxAttempts: 1_000,
    backoffMaxMs: 2_000,
    // Events the system refused or never acknowledged are not part of the truth (a re-sent copy is not an original).
    onError: (e) => {
      for (const ev of e.events)
        if (originals.has(ev)) {
          failedEvents++;
          count(ev as Required<typeof ev> & { timestamp: number }, -1);
        }
    },
  });
  type Sent = { eventId: string; entityId: string; eventType: string; timestamp: number; value: number };
  const recent: Sent[] = [];
  let seq = 0;
  let sent = 0;
  let duplicatesSent = 0;
  const t0 = Date.now();
  let lastProgress = t0;
  let owed = 0;
  let last = t0;
  while (Date.now() - t0 < o.durationMs) {
    await new Promise((res) => setTimeout(res, 5));
    const now = Date.now();
    const inBurst = o.burstFactor > 1 && o.burstEveryMs > 0 && (now - t0) % o.burstEveryMs < o.burstForMs;
    owed += ((now - last) / 1000) * o.rate * (inBurst ? o.burstFactor : 1);
    last = now;
    while (owed >= 1) {
      let ev: Sent;
      let original = false;
      if (recent.length > 0 && r() < o.duplicateRatio) {
        ev = { ...recent[Math.floor(r() * recent.length)]! };
        duplicatesSent++;
      } else {
        const late = r() < o.lateRatio;
        ev = {
          eventId: `${o.idPrefix}-${seq++}`,
          entityId: `video-${pick()}`,
          eventType: pickType(),
          timestamp: now - (late ? 300_000 + Math.floor(r() * 3_300_000) : Math.floor(r() * 2_000)),
          value: 1 + Math.floor(r() * 10),
        };
        original = true;
      }
      try {
        client.add(ev);
      } catch (err) {
        if (err instanceof QueueFullError) {
          owed = 0;
          break;
        } // backpressure: the producer slows down
        throw err;
      }
      if (original) {
        originals.add(ev);
        count(ev, 1);
        recent.push(ev);
        if (recent.length > 10_000) recent.shift();
      }
      sent++;
      owed -= 1;
    }
    if (o.onProgress && now - lastProgress >= 1_000) {
      lastProgress = now;
      o.onProgress({ sent, unique, duplicatesSent, elapsedMs: now - t0, queued: client.queued });
    }
  }
  await client.close();
  for (const [k, v] of perMinute) if (v.count === 0) perMinute.delete(k);

  if (o.truthFile) {
    const out = createWriteStream(o.truthFile);
    for (const [k, v] of perMinute) {
      const [entityId, eventType, minute] = k.split('\u0000');
      out.write(`${JSON.stringify({ entityId, eventType, minute: new Date(Number(minute)).toISOString(), count: v.count, sum: v.sum })}\n`);
    }
    await new Promise<void>((res) => out.end(res));
  }
  return { perMinute, uniqueEvents: unique, failedEvents, sent, duplicatesSent, elapsedMs: Date.now() - t0, clientStats: client.stats };
}
