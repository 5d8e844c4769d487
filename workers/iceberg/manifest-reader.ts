// What a snapshot of an Iceberg table holds, read from S3: the manifests its manifest list names, each manifest's
// entries and header, and the live data files. Manifest lists and manifests are immutable, so they are kept decoded
// (by location, bounded): a long-running process reads each once.
import { EntryStatus, decodeAvroFile, type ManifestEntry, type ManifestFile } from './avro-files.js';
import type { TableFiles } from './table-files.js';
import { currentSnapshot, type Snapshot, type TableMetadata } from './table-metadata.js';

/** A data file the current snapshot holds, with the manifest that lists it. */
export interface LiveEntry {
  entry: ManifestEntry;
  manifest: ManifestFile;
}

/** A decoded manifest: its entries (sequence numbers and snapshot ids resolved) and its header. */
interface DecodedManifest {
  entries: ManifestEntry[];
  header: Record<string, string>;
}

/** Decoded manifests kept in memory (immutable files, by location): a few entries each for the archive's appends. */
const MANIFESTS_MAX = 4096;
/** Decoded manifest lists kept in memory: the current snapshot's, the oldest kept one's and a few more. */
const LISTS_MAX = 16;
/** Manifests fetched at once when reading a snapshot's files. */
const READ_CONCURRENCY = 16;

function remember<T>(cache: Map<string, Promise<T>>, max: number, key: string, load: () => Promise<T>): Promise<T> {
  let p = cache.get(key);
  if (!p) {
    p = load();
    p.catch(() => cache.delete(key));
    if (cache.size >= max) cache.delete(cache.keys().next().value!);
    cache.set(key, p);
  }
  return p;
}

/** Reads (and caches) one table's manifest lists and manifests. */
export class ManifestReader {
  private readonly lists = new Map<string, Promise<ManifestFile[]>>();
  private readonly decoded = new Map<string, Promise<DecodedManifest>>();

  constructor(private readonly files: TableFiles) {}

  /** The manifests a snapshot's manifest list names (cached: the list never changes). */
  manifestsOf(snapshot: Snapshot): Promise<ManifestFile[]> {
    const at = snapshot['manifest-list'];
    return remember(this.lists, LISTS_MAX, at, async () => (await decodeAvroFile<ManifestFile>(await this.files.getRequired(at), at)).records);
  }

  /** The manifests of the current snapshot of `metadata` (none before the first snapshot). */
  async manifests(metadata: TableMetadata): Promise<ManifestFile[]> {
    const snap = currentSnapshot(metadata);
    return snap ? this.manifestsOf(snap) : [];
  }

  /**
   * The manifests of `metadata` a new snapshot carries on: those still listing a live file. A manifest left with only
   * DELETED entries told the snapshot that removed them what it removed; later snapshots drop it (as Iceberg's own
   * writers do), so replaced files leave no manifests behind.
   */
  async carriedManifests(metadata: TableMetadata): Promise<ManifestFile[]> {
    return (await this.manifests(metadata)).filter((m) => m.added_files_count + m.existing_files_count > 0);
  }

  private decode(m: ManifestFile): Promise<DecodedManifest> {
    return remember(this.decoded, MANIFESTS_MAX, m.manifest_path, async () => {
      const { records, metadata } = await decodeAvroFile<ManifestEntry>(await this.files.getRequired(m.manifest_path), m.manifest_path);
      const entries = records.map((e) => ({
        ...e,
        snapshot_id: e.snapshot_id ?? m.added_snapshot_id,
        sequence_number: e.sequence_number ?? m.sequence_number,
        file_sequence_number: e.file_sequence_number ?? m.sequence_number,
      }));
      return { entries, header: metadata };
    });
  }

  /**
   * The entries of a manifest, each with its sequence numbers and snapshot id resolved (an ADDED entry inherits
   * them from the manifest), so it can be written again as EXISTING or DELETED.
   */
  async entries(m: ManifestFile): Promise<ManifestEntry[]> {
    return (await this.decode(m)).entries;
  }

  /** The key-value metadata in a manifest's header. */
  async header(m: ManifestFile): Promise<Record<string, string>> {
    return (await this.decode(m)).header;
  }

  /**
   * Every data file the current snapshot of `metadata` holds (entries not DELETED), with its manifest: what the
   * table holds is read from here, so it survives the expiry of the snapshots that added it.
   */
  async liveEntries(metadata: TableMetadata): Promise<LiveEntry[]> {
    const manifests = await this.carriedManifests(metadata);
    const out: LiveEntry[] = [];
    for (let i = 0; i < manifests.length; i += READ_CONCURRENCY) {
      const chunk = manifests.slice(i, i + READ_CONCURRENCY);
      const decoded = await Promise.all(chunk.map((m) => this.entries(m)));
      for (const [j, entries] of decoded.entries())
        for (const entry of entries) if (entry.status !== EntryStatus.DELETED) out.push({ entry, manifest: chunk[j]! });
    }
    return out;
  }
}
