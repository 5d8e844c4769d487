// Where a batch's points sit inside their minute: a deterministic offset from the batch key, so rewriting
// a batch overwrites its own InfluxDB points and different batches land on different points.
import { createHash } from 'node:crypto';

export const NS_PER_MINUTE = 60_000_000_000n;

/** The identity of a batch: its object's `bucket/key` (deterministic, so a re-sent batch has the same one). */
export function batchKeyOf(m: { bucket: string; key: string }): string {
  return `${m.bucket}/${m.key}`;
}

/** Offset in [0, 60e9) ns: the first 64 bits of sha256(batchKey) modulo one minute (bias < 4e-9, negligible). */
export function batchOffsetNs(batchKey: string): bigint {
  const digest = createHash('sha256').update(batchKey, 'utf8').digest();
  return digest.readBigUInt64BE(0) % NS_PER_MINUTE;
}
