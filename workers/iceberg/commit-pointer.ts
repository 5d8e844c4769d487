// A table's commit pointer in Redis (layout: shared/contracts/iceberg-table.ts) and its compare-and-swap. A commit
// built on version N installs N+1 only while the pointer still says N; the version number is the fencing token, so
// a committer that was paused (GC, network) while another committed finds its swap refused and retries on the new
// base — it can never overwrite a newer commit, which a lock with an expired lease could not promise. No lock is held
// while files are written: every table file goes to a unique name first, and only the swap makes it current.
//
// Why Redis and not the object store: an S3 conditional write (If-None-Match: * on the next metadata file, or If-Match
// on a pointer object) would make the store itself the arbiter, and AWS S3 and MinIO support it; the local S3
// emulator (s3rver 3.7) ignores both headers and overwrites (test/integration/iceberg-commit.test.ts shows it), so a
// commit protocol built on them could not be tested here. Redis is already a dependency of every Sluice job.
import type { RedisClient } from '../../shared/clients/redis.js';
import { decodeCommitPointer, type CommitPointer } from '../../shared/contracts/iceberg-table.js';
import { classify } from '../../shared/errors.js';

/** KEYS[1] pointer; ARGV expected version (0 = none yet), new version, location, committedAt. Returns 1, or the current version. */
const CAS_SCRIPT = `
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[1]) then return -current end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'location', ARGV[3], 'committedAt', ARGV[4])
return 1`;

export class CommitPointerStore {
  /** `key`: the table's pointer (IcebergTableLayout.pointerKey). */
  constructor(
    private readonly redis: RedisClient,
    readonly key: string,
  ) {}

  async read(): Promise<CommitPointer | undefined> {
    try {
      return decodeCommitPointer(await this.redis.hgetall(this.key), `Redis key ${this.key}`);
    } catch (err) {
      if (err instanceof Error && err.message.includes('is not an Iceberg commit pointer')) throw err;
      throw classify(err, `reading the Iceberg commit pointer ${this.key}`);
    }
  }

  /**
   * Swaps the pointer from `expected` to `next`. Resolves true when it did, false when the pointer had moved on
   * (another commit won; retry on the new base). A commit moves it by one version; only a missing pointer
   * (`expected` 0) may be set to any version — rebuilt from the newest metadata published in S3.
   */
  async swap(expected: number, next: CommitPointer): Promise<boolean> {
    if (expected !== 0 && next.version !== expected + 1)
      throw new RangeError(`a commit moves the Iceberg pointer by one version, not ${expected} → ${next.version}`);
    try {
      const r = await this.redis.eval(CAS_SCRIPT, 1, this.key, String(expected), String(next.version), next.location, String(next.committedAtMs));
      return Number(r) === 1;
    } catch (err) {
      throw classify(err, `swapping the Iceberg commit pointer ${this.key}`);
    }
  }
}
