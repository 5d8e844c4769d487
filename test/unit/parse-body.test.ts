import { describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { parseEventsBody, type BodyError } from '../../ingest/parse-body.js';

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
