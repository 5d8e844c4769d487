// The local stack's object store: s3rver keeping every bucket and object as files under one folder (by default
// SLUICE_DATA_DIR/s3), so the archive and the cold tier survive restarts and the process's memory does not grow
// with them (objects are streamed to and from disk). Loopback only; like any emulator it accepts any credentials.
import S3rver from 's3rver';
import AWSAccount from 's3rver/lib/models/account.js';

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
  const address = await server.run();
  return { port: address.port, close: () => server.close() };
}
