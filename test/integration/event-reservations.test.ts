// Event-id reservations on a real Redis: reserve → confirm makes ids duplicates for everyone; an id held by a request
// still in flight refuses the whole of another request (nothing of it is held afterwards); an expired lease is taken
// over and its owner's confirm fails; resolution confirms pending tokens and reports aborted ones per shard; ids given
// back are free; every key of a call shares one hash tag; Redis unreachable means "unavailable", never "fresh".
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisClient, createRedis } from '../../shared/clients/redis.js';
import { encodeEventLine } from '../../shared/contracts/event-line.js';
import { EventReservations, dedupIdentity, reservationShard } from '../../ingest/event-reservations.js';
import { resolveSegment, segmentTokens } from '../../ingest/segment-resolution.js';
import { testConfig } from '../support/config.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => dedupIdentity('web', `${prefix}-${i}`));

describe('event-id reservations', () => {
  let redis: RedisClient;
  let prefix: string;
  const make = (leaseMs = 15_000, shards = 16) => new EventReservations(redis, prefix, { windowMs: 600_000, leaseMs, shards });

  beforeAll(async () => {
    const cfg = await testConfig();
    prefix = cfg.SLUICE_REDIS_PREFIX;
    redis = createRedis(cfg);
    await new Promise<void>((r) => (redis as { once(e: string, f: () => void): void }).once('ready', () => r()));
  });
  afterAll(() => redis.disconnect());

  it('answers duplicates once confirmed, for every node, and counts large requests in slices', async () => {
    const a = make();
    const b = make(); // another node: another token prefix
    const batch = ids('dup', 5_000);
    const r1 = await a.reserve(a.newToken(), batch);
    expect(r1.kind).toBe('reserved');
    if (r1.kind !== 'reserved') return;
    expect(r1.duplicate.some(Boolean)).toBe(false);
    expect(await a.confirm(r1.reservation)).toBe('confirmed');
    const r2 = await b.reserve(b.newToken(), [...batch.slice(0, 10), dedupIdentity('web', 'dup-new')]);
    expect(r2.kind).toBe('reserved');
    if (r2.kind !== 'reserved') return;
    expect(r2.duplicate).toEqual([...Array(10).fill(true), false]);
    // Another producer's id of the same text is its own.
    const r3 = await b.reserve(b.newToken(), [dedupIdentity('app', 'dup-0')]);
    expect(r3.kind === 'reserved' && r3.duplicate).toEqual([false]);
  });

  it('refuses a request meeting an id still in flight, and holds nothing of it afterwards', async () => {
    const a = make();
    const first = ids('fly', 50);
    const r1 = await a.reserve(a.newToken(), first);
    expect(r1.kind).toBe('reserved');
    // A retry carrying one in-flight id and fresh ones: refused as a whole.
    const fresh = ids('fly-fresh', 200);
    expect((await a.reserve(a.newToken(), [first[7]!, ...fresh])).kind).toBe('in_flight');
    // Its fresh ids were given back at once: another request takes them without waiting for a lease.
    const r3 = await a.reserve(a.newToken(), fresh);
    expect(r3.kind === 'reserved' && r3.duplicate.every((d) => !d)).toBe(true);
    // The first request confirms: its ids are duplicates from now on, nothing is in flight.
    if (r1.kind === 'reserved') expect(await a.confirm(r1.reservation)).toBe('confirmed');
    const r4 = await a.reserve(a.newToken(), first);
    expect(r4.kind === 'reserved' && r4.duplicate.every(Boolean)).toBe(true);
  });

  it('takes over the ids of an expired lease; the late owner cannot confirm, and resolution reports its shards', async () => {
    const a = make(1_000);
    const batch = ids('lease', 40);
    const t1 = a.newToken();
    const r1 = await a.reserve(t1, batch);
    expect(r1.kind).toBe('reserved');
    expect((await a.reserve(a.newToken(), batch.slice(0, 1))).kind).toBe('in_flight'); // within the lease
    await sleep(1_150);
    const takeOver = batch.slice(0, 3);
    const r2 = await a.reserve(a.newToken(), takeOver);
    expect(r2.kind === 'reserved' && r2.duplicate).toEqual([false, false, false]);
    if (r1.kind !== 'reserved' || r2.kind !== 'reserved') return;
    expect(await a.confirm(r1.reservation)).toBe('aborted'); // a stalled node learns it lost them: it answers 503
    const lost = new Set(takeOver.map((id) => reservationShard(id, 16)));
    const aborted = await a.resolve([t1]);
    expect([...(aborted.get(t1) ?? [])].sort()).toEqual([...lost].sort());
    // Shards the takeover did not touch were still pending for t1: resolution confirmed them (its lines are durable).
    const others = batch.filter((id) => !lost.has(reservationShard(id, 16)));
    expect(others.length).toBeGreaterThan(0);
    const r3 = await a.reserve(a.newToken(), others);
    expect(r3.kind === 'reserved' && r3.duplicate.every(Boolean)).toBe(true);
  });

  it('gives back refused ids before the confirm', async () => {
    const a = make();
    const batch = ids('back', 20);
    const r1 = await a.reserve(a.newToken(), batch);
    if (r1.kind !== 'reserved') throw new Error(r1.kind);
    await a.unreserve(r1.reservation, batch.slice(0, 5));
    expect(await a.confirm(r1.reservation)).toBe('confirmed');
    const r2 = await a.reserve(a.newToken(), batch);
    expect(r2.kind === 'reserved' && r2.duplicate).toEqual([...Array(5).fill(false), ...Array(15).fill(true)]);
  });

  it('keeps every key of one call under one hash tag, and the shards over many tags', () => {
    const a = make();
    for (const s of [0, 5, 15]) {
      const tags = new Set(a.windowKeys(s, Date.now()).map((k) => /\{([^}]*)\}/.exec(k)?.[1]));
      expect([...tags]).toEqual([`r:${s}`]);
    }
    const spread = new Set(ids('spread', 1_000).map((id) => reservationShard(id, 16)));
    expect(spread.size).toBe(16);
  });

  it('is unavailable, never "fresh", while Redis cannot be reached', async () => {
    const cfg = await testConfig({ SLUICE_REDIS_URL: 'redis://127.0.0.1:1' });
    const down = createRedis(cfg);
    down.on('error', () => undefined);
    try {
      const a = new EventReservations(down, prefix, { windowMs: 600_000, leaseMs: 15_000, shards: 16 });
      const r = await a.reserve(a.newToken(), ids('down', 3));
      expect(r.kind).toBe('unavailable');
      await expect(a.resolve(['x.1'])).rejects.toThrow();
    } finally {
      down.disconnect();
    }
  });

  it('cuts exactly the lines of a segment whose ids a later request took, atomically, and keeps the rest', async () => {
    const a = make(1_000);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-resolve-'));
    const now = Date.now();
    const ev = (id: string) => ({ eventId: id, entityId: 'video-1', eventType: 'view', timestamp: now, value: 1, dims: null });
    const stalled = a.newToken();
    const kept = a.newToken();
    const stalledIds = Array.from({ length: 30 }, (_, i) => `stall-${i}`);
    await a.reserve(
      stalled,
      stalledIds.map((id) => dedupIdentity('web', id)),
    );
    const okIds = ['ok-1', 'ok-2'];
    const rk = await a.reserve(
      kept,
      okIds.map((id) => dedupIdentity('web', id)),
    );
    if (rk.kind === 'reserved') await a.confirm(rk.reservation);
    const file = path.join(dir, '0000000000001_000001.ndjson');
    const text =
      stalledIds.map((id) => encodeEventLine(ev(id), now, 'web', stalled)).join('') +
      okIds.map((id) => encodeEventLine(ev(id), now, 'web', kept)).join('') +
      encodeEventLine(ev('legacy-line'), now, 'web'); // written before reservations existed: always delivered
    writeFileSync(file, text);
    expect((await segmentTokens(file)).sort()).toEqual([kept, stalled].sort());
    await sleep(1_150);
    const taken = stalledIds.slice(0, 4).map((id) => dedupIdentity('web', id));
    expect((await a.reserve(a.newToken(), taken)).kind).toBe('reserved');
    const takenShards = new Set(taken.map((id) => reservationShard(id, 16)));
    const expectedDropped = stalledIds.filter((id) => takenShards.has(reservationShard(dedupIdentity('web', id), 16)));
    const seg = { id: '0000000000001_000001', path: file, events: 33, bytes: text.length };
    const r = await resolveSegment(seg, a);
    expect(r.dropped).toBe(expectedDropped.length);
    const left = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { i: string }).i);
    expect(left.sort()).toEqual([...stalledIds.filter((id) => !expectedDropped.includes(id)), ...okIds, 'legacy-line'].sort());
    expect(seg.events).toBe(33 - expectedDropped.length);
    // Resolving again (a redelivery after a crash) cuts nothing more.
    expect((await resolveSegment(seg, a)).dropped).toBe(0);
  });
});
