// The query cache's keys and TTL policy (the Redis behaviour itself is covered by the integration tests).
import { describe, expect, it } from 'vitest';
import { RECENT_TTL_MS, SETTLED_TTL_MS, cacheKey, statsTtlMs } from '../../query/cache.js';
import { statsQuery, totalQuery } from '../../query/influxql.js';

describe('statsTtlMs', () => {
  const now = Date.UTC(2026, 0, 15, 12);
  it('caches ranges that ended more than an hour ago for an hour, others briefly', () => {
    expect(statsTtlMs(now - 3_600_001, now)).toBe(SETTLED_TTL_MS);
    expect(statsTtlMs(now - 3_600_000, now)).toBe(RECENT_TTL_MS);
    expect(statsTtlMs(now + 60_000, now)).toBe(RECENT_TTL_MS);
  });
});

describe('cacheKey', () => {
  it('is stable under key order, prefixed, and differs when any part differs', () => {
    const a = cacheKey('p:', { kind: 'stats', from: 1, to: 2 });
    expect(a).toMatch(/^p:qcache:[0-9a-f]{32}$/);
    expect(cacheKey('p:', { to: 2, from: 1, kind: 'stats' })).toBe(a);
    expect(cacheKey('p:', { kind: 'stats', from: 1, to: 3 })).not.toBe(a);
    expect(cacheKey('p:', { kind: 'total', from: 1, to: 2 })).not.toBe(a);
    expect(cacheKey('q:', { kind: 'stats', from: 1, to: 2 })).toBe(a.replace(/^p:/, 'q:'));
  });
});

describe('InfluxQL', () => {
  it('quotes tag values so they cannot change the statement', () => {
    const q = statsQuery({ entityId: "a' OR 1=1 --", eventType: 'click', fromMs: 60_000, toMs: 120_000, step: '1m' });
    expect(q).toContain(`"entity_id" = 'a\\' OR 1=1 --'`);
    expect(q).toContain('time >= 60000ms AND time < 120000ms GROUP BY time(1m) fill(none)');
    expect(totalQuery({ entityId: 'back\\slash', eventType: 'x' })).toContain(`'back\\\\slash'`);
  });
});
