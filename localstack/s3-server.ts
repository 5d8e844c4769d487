// The local stack's object store: s3rver keeping every bucket and object as files under one folder (by default
// SLUICE_DATA_DIR/s3), so the archive and the cold tier survive restarts and the process's memory does not grow
// with them (objects are streamed to and from disk). Loopback only; like any emulator it accepts any credentials.
import { createHash, randomUUID } from 'node:crypto';
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import S3rver from 's3rver';
import AWSAccount from 's3rver/lib/models/account.js';
import S3Object from 's3rver/lib/models/object.js';

export interface S3ServerOptions {
  /** Folder holding the buckets (created when missing). */
  directory: string;
  host?: string;
  /** 0 = any free port. */
  port?: number;
}

export interface RunningS3Server {
  port: number;
  close(): Promise<void>;
}

// s3rver knows one access key; an emulator should accept whatever keys the clients were given (SigV4 signatures are
// not checked by s3rver either), so an unknown key id resolves to its one account.
const registry = AWSAccount.registry;
const knownGet = registry.get.bind(registry);
registry.get = (id: string) => knownGet(id) ?? AWSAccount.DUMMY_ACCOUNT;

interface ListOptions {
  delimiter?: string;
  prefix?: string;
  startAfter?: string;
  maxKeys?: number;
}
interface Listing {
  objects: { key: string }[];
  commonPrefixes: string[];
  isTruncated: boolean;
}
interface ListingStore {
  store: { listObjects(bucket: string, o: ListOptions): Promise<Listing> };
}

/**
 * s3rver's file store skips a folder below a common prefix before it has seen an object in it, so with a delimiter
 * it never reports prefixes two folders deep (`events/` + `/` lists no `events/dt=…/`). With a delimiter, list
 * without one and group here: every key and prefix in one page (a local archive's folder listings are small).
 */
function groupCommonPrefixes({ store }: ListingStore): void {
  const list = store.listObjects.bind(store);
  store.listObjects = async (bucket, o) => {
    if (!o.delimiter) return list(bucket, o);
    const all = await list(bucket, { ...o, delimiter: '', maxKeys: Number.POSITIVE_INFINITY });
    const prefix = o.prefix ?? '';
    const prefixes = new Set<string>();
    const objects = all.objects.filter((obj) => {
      const at = obj.key.indexOf(o.delimiter!, prefix.length);
      if (at === -1) return true;
      prefixes.add(obj.key.slice(0, at + o.delimiter!.length));
      return false;
    });
    return { objects, commonPrefixes: [...prefixes].sort(), isTruncated: false };
  };
}

interface PutObject {
  bucket: string;
  key: string;
  content: Buffer | Readable;
  metadata: Record<string, string>;
}
interface FileStore {
  store: {
    getResourcePath(bucket: string, key: string, resource: 'object' | 'object.md5' | 'metadata.json'): string;
    putObject(o: PutObject): Promise<{ size: number; md5: string }>;
    putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5?: string): Promise<void>;
    getMetadata(bucket: string, key: string): Promise<Record<string, string | number>>;
    getObject(bucket: string, key: string, options?: { start?: number; end?: number }): Promise<unknown>;
  };
}

/**
 * Writes `data` to `file` as S3 promises a PUT: whole or not at all, and on disk before the answer. The bytes go to a
 * temporary file beside it (never listed: it lacks the object suffix), are fsynced, and the file is renamed over
 * `file`; `onChunk` sees every byte written. Resolves with the byte count.
 */
async function writeWhole(file: string, data: Buffer | Readable, onChunk?: (b: Buffer) => void): Promise<number> {
  const tmp = `${file}.${randomUUID()}.tmp`;
  const fh = await open(tmp, 'w');
  let size = 0;
  try {
    if (Buffer.isBuffer(data)) {
      onChunk?.(data);
      await fh.writeFile(data);
      size = data.length;
    } else {
      for await (const chunk of data) {
        const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
        onChunk?.(b);
        await fh.write(b);
        size += b.length;
      }
    }
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await rename(tmp, file);
  return size;
}

async function syncFolder(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * s3rver's file store answers a PUT before the object's bytes are written (it resolves on `end()` of the write
 * stream, not on its finish) and writes them in place: a GET right after can read an empty or cut object, a GET
 * during an overwrite a mix, and a power cut loses objects already acknowledged. Here a PUT (and the completion of
 * a multipart upload, which s3rver turns into one) writes the object and then its metadata each whole and fsynced,
 * and syncs the folder, before it answers; a GET reads one version whole (below).
 */
function durableObjects({ store }: FileStore): void {
  store.putObject = async (o) => {
    const objectPath = store.getResourcePath(o.bucket, o.key, 'object');
    const dir = path.dirname(objectPath);
    await mkdir(dir, { recursive: true });
    const md5 = createHash('md5');
    const size = await writeWhole(objectPath, o.content, (b) => md5.update(b));
    const digest = md5.digest('hex');
    await store.putMetadata(o.bucket, o.key, o.metadata, digest);
    await syncFolder(dir);
    return { size, md5: digest };
  };
  store.putMetadata = async (bucket, key, metadata, md5) => {
    // The same JSON s3rver keeps (its allowed headers and the x-amz-meta-* ones), written whole.
    const kept = Object.fromEntries(Object.entries(metadata).filter(([k]) => S3Object.ALLOWED_METADATA.includes(k) || k.startsWith('x-amz-meta-')));
    if (md5 !== undefined) await writeWhole(store.getResourcePath(bucket, key, 'object.md5'), Buffer.from(md5));
    await writeWhole(store.getResourcePath(bucket, key, 'metadata.json'), Buffer.from(JSON.stringify(kept, null, 2)));
  };
  // A GET opens the object's file first and takes its size from that open file: s3rver reads the size from the path
  // and opens it later, so a GET during an overwrite streamed one version's bytes cut to the other's length.
  store.getObject = async (bucket, key, options) => {
    let fh: FileHandle;
    try {
      fh = await open(store.getResourcePath(bucket, key, 'object'), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      const st = await fh.stat();
      const metadata = { ...(await store.getMetadata(bucket, key)), 'content-length': st.size, 'last-modified': st.mtime.toUTCString() };
      const lastByte = Math.max(0, st.size - 1);
      const range = { start: options?.start ?? 0, end: Math.min(options?.end ?? Number.POSITIVE_INFINITY, lastByte) };
      const ranged = options !== undefined && (options.start !== undefined || Boolean(options.end));
      // As s3rver decides: an empty object is read as one empty range.
      const satisfiable = !(range.start < 0 || Math.min(range.end, lastByte) < range.start);
      if (!satisfiable) await fh.close();
      const object = new S3Object(bucket, key, satisfiable ? fh.createReadStream({ ...range, autoClose: true }) : null, metadata) as { range?: unknown };
      if (ranged) object.range = range;
      return object;
    } catch (err) {
      await fh.close().catch(() => undefined);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  };
}

export async function startS3Server(o: S3ServerOptions): Promise<RunningS3Server> {
  const server = new S3rver({
    address: o.host ?? '127.0.0.1',
    port: o.port ?? 0,
    directory: o.directory,
    silent: true,
    resetOnClose: false,
    allowMismatchedSignatures: true,
    vhostBuckets: false,
  });
  groupCommonPrefixes(server as unknown as ListingStore);
  durableObjects(server as unknown as FileStore);
  const address = await server.run();
  return { port: address.port, close: () => server.close() };
}
