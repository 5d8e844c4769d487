// The local stack's S3 (localstack/s3-server.ts, s3rver on disk) answers a PUT only once the object is whole on
// disk: a GET right after reads every byte, a GET during overwrites of the same key reads one whole version (never
// a cut or mixed one), a multipart upload reads back whole, and no temporary file is left or listed.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3Server, type RunningS3Server } from '../../localstack/s3-server.js';

let dir: string;
let server: RunningS3Server;
let s3: S3Client;
const Bucket = 'puts';

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sluice-s3-puts-'));
  server = await startS3Server({ directory: dir });
  s3 = new S3Client({
    endpoint: `http://127.0.0.1:${server.port}`,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  await s3.send(new CreateBucketCommand({ Bucket }));
});
afterAll(async () => {
  s3?.destroy();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
async function get(Key: string): Promise<Uint8Array> {
  const r = await s3.send(new GetObjectCommand({ Bucket, Key }));
  return r.Body!.transformToByteArray();
}
/** `n` bytes that differ per `seed` at every position, so a cut or a mix of two versions cannot pass as either. */
function content(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 97) & 0xff;
  return b;
}
/** Every file under the bucket's folder, relative. */
const files = () => readdirSync(path.join(dir, Bucket), { recursive: true, encoding: 'utf8' });

describe('the local S3 emulator', () => {
  it('reads every byte of an object right after its PUT answered, for objects of many sizes', async () => {
    for (const [i, n] of [0, 1, 4096, 1 << 20, 24 << 20].entries()) {
      const body = content(n, i);
      await s3.send(new PutObjectCommand({ Bucket, Key: `sizes/${n}.bin`, Body: body }));
      const back = await get(`sizes/${n}.bin`);
      expect(back.length, `${n} bytes`).toBe(n);
      expect(sha(back), `${n} bytes`).toBe(sha(body));
    }
  });

  it('answers a GET during overwrites of one key with one whole version, never a cut or mixed one', async () => {
    const versions = [0, 1, 2, 3].map((seed) => content((4 + seed) << 20, seed + 10));
    const known = new Map(versions.map((v, i) => [sha(v), i]));
    const Key = 'overwritten/pointer.bin';
    await s3.send(new PutObjectCommand({ Bucket, Key, Body: versions[0] }));
    let writing = true;
    const writer = (async () => {
      for (let round = 0; round < 24; round++) await s3.send(new PutObjectCommand({ Bucket, Key, Body: versions[round % versions.length] }));
      writing = false;
    })();
    const seen = new Set<number>();
    // Three readers at once, so GETs overlap the renames of every overwrite.
    await Promise.all(
      [0, 1, 2].map(async () => {
        while (writing) {
          const back = await get(Key);
          const v = known.get(sha(back));
          expect(v, `a GET read ${back.length} bytes that are no version written`).toBeDefined();
          seen.add(v!);
        }
      }),
    );
    await writer;
    expect(seen.size).toBeGreaterThan(0);
  });

  it('answers a ranged GET with exactly those bytes, and an empty object with none', async () => {
    const body = content(100_000, 3);
    await s3.send(new PutObjectCommand({ Bucket, Key: 'ranged/r.bin', Body: body }));
    const r = await s3.send(new GetObjectCommand({ Bucket, Key: 'ranged/r.bin', Range: 'bytes=10-19' }));
    expect(Buffer.from(await r.Body!.transformToByteArray())).toEqual(body.subarray(10, 20));
    expect(r.ContentRange).toBe('bytes 10-19/100000');
    await s3.send(new PutObjectCommand({ Bucket, Key: 'ranged/empty.bin', Body: Buffer.alloc(0) }));
    expect((await get('ranged/empty.bin')).length).toBe(0);
  });

  it('reads a multipart upload back whole, and leaves no temporary file, listed or on disk', async () => {
    const body = content(12 << 20, 7);
    await new Upload({ client: s3, params: { Bucket, Key: 'multipart/big.bin', Body: body }, partSize: 5 << 20 }).done();
    expect(sha(await get('multipart/big.bin'))).toBe(sha(body));
    const listed = await s3.send(new ListObjectsV2Command({ Bucket }));
    expect((listed.Contents ?? []).map((o) => o.Key).sort()).toEqual(
      [
        'multipart/big.bin',
        'overwritten/pointer.bin',
        'ranged/empty.bin',
        'ranged/r.bin',
        ...[0, 1, 4096, 1 << 20, 24 << 20].map((n) => `sizes/${n}.bin`),
      ].sort(),
    );
    expect(files().filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
