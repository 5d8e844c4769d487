import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { EventCounter, parseEventsBody, readEventsBody, type BodyError } from '../../ingest/parse-body.js';

const opts = { gzip: false, maxBytes: 1 << 20, ndjson: false };
const err = (fn: () => unknown): BodyError => {
  try {
    fn();
  } catch (e) {
    return e as BodyError;
  }
  throw new Error('did not throw');
};

describe('request body parsing', () => {
  it('parses a JSON array', () => {
    expect(parseEventsBody(Buffer.from(' [{"a":1},{"a":2}]'), opts).values).toEqual([{ a: 1 }, { a: 2 }]);
  });
  it('parses NDJSON, keeping bad lines as per-event errors at their index', () => {
    const r = parseEventsBody(Buffer.from('{"a":1}\n\n{"a":\n{"a":3}'), opts);
    expect(r.values).toEqual([{ a: 1 }, undefined, { a: 3 }]);
    expect(r.lineErrors.get(1)).toMatch(/^line 3 is not valid JSON/);
  });
  it('reports the line and column of a syntax error in a JSON array', () => {
    const e = err(() => parseEventsBody(Buffer.from('[\n{"a":1},\n{"a" 2}]'), opts));
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/line 3, column 6/);
  });
  it('reports truncated JSON at its end', () => {
    expect(err(() => parseEventsBody(Buffer.from('[{"a":1}'), opts)).message).toMatch(/character 8/);
  });
  it('rejects invalid UTF-8 with the byte offset', () => {
    expect(err(() => parseEventsBody(Buffer.from([0x5b, 0x7b, 0x7d, 0xc3, 0x28, 0x5d]), opts)).message).toMatch(/offset 3/);
  });
  it('decompresses gzip within the limit and refuses bombs with 413', () => {
    expect(parseEventsBody(gzipSync('[{"a":1}]'), { ...opts, gzip: true }).values).toHaveLength(1);
    expect(err(() => parseEventsBody(gzipSync(Buffer.alloc(2 << 20, 32)), { ...opts, gzip: true })).status).toBe(413);
    expect(err(() => parseEventsBody(Buffer.from('not gzip'), { ...opts, gzip: true })).message).toMatch(/not valid gzip/);
  });
  it('refuses empty bodies and non-array JSON', () => {
    expect(err(() => parseEventsBody(Buffer.from('   '), opts)).message).toMatch(/empty/);
    expect(err(() => parseEventsBody(Buffer.from('[]'), opts)).message).toMatch(/no events/);
  });
});

describe('event counting before parsing', () => {
  const count = (chunks: string[], ndjson = false) => {
    const c = new EventCounter(ndjson);
    for (const ch of chunks) c.feed(Buffer.from(ch));
    return c.count;
  };
  it('counts top-level array elements, ignoring nesting and punctuation inside strings, across chunk boundaries', () => {
    expect(count(['[1,2,3]'])).toBe(3);
    expect(count(['  [ ]'])).toBe(0);
    expect(count([String.raw`[{"a":[1,2,{"b":","}]},"x,\\",`, String.raw`"\"",`, '[3,4]]'])).toBe(4);
    expect(JSON.parse(String.raw`[{"a":[1,2,{"b":","}]},"x,\\",` + String.raw`"\"",` + '[3,4]]')).toHaveLength(4);
    expect(count(['[{"a":"\\', '",,,"}, 2]'])).toBe(2); // an escape split across chunks
    expect(count(['\ufeff[1,2]'])).toBe(2); // a byte-order mark first
  });
  it('counts exactly the elements JSON.parse finds, however the bytes are split into chunks', () => {
    fc.assert(
      fc.property(fc.array(fc.jsonValue()), fc.array(fc.nat(), { maxLength: 8 }), fc.boolean(), (values, cuts, spaced) => {
        const bytes = Buffer.from(JSON.stringify(values, null, spaced ? 1 : undefined));
        const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const c = new EventCounter(false);
        let from = 0;
        for (const to of [...at, bytes.length]) {
          c.feed(bytes.subarray(from, to));
          from = to;
        }
        expect(c.count).toBe(values.length);
      }),
      { numRuns: 500 },
    );
  });
  it('counts non-blank NDJSON lines, and an array body as lines when the content type says NDJSON', () => {
    expect(count(['{"a":1}\n', '\n  \n{"a":', '2}\n{"a":3}'], true)).toBe(3);
    expect(count(['1\r\n2\r\n'])).toBe(2);
    expect(count(['[1,2]\n[3]'], true)).toBe(2);
  });
  it('refuses more than maxEvents with 413 before parsing (sync path too)', () => {
    expect(err(() => parseEventsBody(Buffer.from('[1,2,3]'), { ...opts, maxEvents: 2 })).status).toBe(413);
    expect(err(() => parseEventsBody(Buffer.from('[1,2,3]'), { ...opts, maxEvents: 2 })).message).toMatch(/more than 2 events.*split it/);
    expect(parseEventsBody(Buffer.from('[1,2]'), { ...opts, maxEvents: 2 }).values).toEqual([1, 2]);
  });
});

describe('reading a body stream', () => {
  const read = (chunks: Buffer[], o: Partial<Parameters<typeof readEventsBody>[1]> = {}) => {
    let reserved = 0;
    const stream = Readable.from(chunks);
    const p = readEventsBody(stream, {
      gzip: false,
      ndjson: false,
      maxBytes: 1 << 20,
      maxEvents: 1_000,
      reserve: (n) => {
        reserved += n;
        return undefined;
      },
      ...o,
    });
    return { p, reserved: () => reserved, stream };
  };
  it('returns the decompressed body and charges each chunk to the budget', async () => {
    const r = read([gzipSync('[{"a":1},'), gzipSync('{"a":2}]')], { gzip: true });
    expect((await r.p).toString()).toBe('[{"a":1},{"a":2}]');
    expect(r.reserved()).toBe(17);
  });
  it('stops inflating a gzip bomb at the event limit, charging only what it inflated', async () => {
    const bomb = gzipSync('1\n'.repeat(8_300_000));
    const r = read([bomb], { gzip: true, ndjson: true, maxEvents: 10_000, maxBytes: 16 << 20 });
    await expect(r.p).rejects.toMatchObject({ status: 413, message: expect.stringMatching(/more than 10000 events/) });
    expect(r.reserved()).toBeLessThan(200_000);
  });
  it('refuses past maxBytes after decompression with 413, and with 503 when the budget refuses', async () => {
    await expect(read([gzipSync(Buffer.alloc(2 << 20, 32))], { gzip: true }).p).rejects.toMatchObject({ status: 413 });
    await expect(read([Buffer.from('[1]')], { reserve: () => 'busy' }).p).rejects.toMatchObject({ status: 503, message: 'busy' });
    await expect(read([Buffer.from('not gzip')], { gzip: true }).p).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/not valid gzip/) });
  });
});
