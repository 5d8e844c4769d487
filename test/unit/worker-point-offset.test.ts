import { describe, expect, it } from 'vitest';
import { NS_PER_MINUTE, batchKeyOf, batchOffsetNs } from '../../workers/point-offset.js';

describe('batch point offset', () => {
  it('is deterministic for a batch key and differs between batch keys', () => {
    const k = batchKeyOf({ bucket: 'sluice-raw', key: 'events/dt=2026-01-31/hour=12/node-a-0001.parquet' });
    expect(k).toBe('sluice-raw/events/dt=2026-01-31/hour=12/node-a-0001.parquet');
    expect(batchOffsetNs(k)).toBe(batchOffsetNs(`${k}`));
    expect(batchOffsetNs(k)).not.toBe(batchOffsetNs(k.replace('0001', '0002')));
  });

  it('stays inside the minute and spreads over it', () => {
    const offsets = Array.from({ length: 20_000 }, (_, i) => batchOffsetNs(`bucket/events/key-${i}.parquet`));
    for (const o of offsets) {
      expect(o >= 0n && o < NS_PER_MINUTE).toBe(true);
    }
    expect(new Set(offsets).size).toBe(offsets.length);
    // roughly uniform: each tenth of the minute holds 10% ± 2% of the offsets
    const tenths = new Array<number>(10).fill(0);
    for (const o of offsets) tenths[Number((o * 10n) / NS_PER_MINUTE)]!++;
    for (const t of tenths) expect(Math.abs(t / offsets.length - 0.1)).toBeLessThan(0.02);
  });
});
