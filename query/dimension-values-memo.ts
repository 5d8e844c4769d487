// The query API's memo of attribute values looked up in its copy of the dimension table (shared/dimension-store.ts),
// for /v1/topk?dimension=…: an entity of a top-K window is looked up once per table version, not on every request.
// A memo holds one table version: when the store swaps in another, the next use drops everything and starts anew, so
// values of two versions are never held together. Bounded by DIMENSION_MEMO_MAX_ENTRIES; the least recently used go.
//
// Cost: a use is one Map get per entity asked about; a lookup is one store query over the entities not held yet
// (lookups of one attribute run one at a time, so concurrent requests missing the same entities cause one query).
import type { DimensionStore } from '../shared/dimension-store.js';

/**
 * Entities held over all attributes. ≈ 150 bytes each (the Map slot ≈ 40, a two-field entry ≈ 40, the value string
 * ≈ 30, the entity id string ≈ 40 once no top-K window holds it any more), so ≈ 75 MB when full: eight times the
 * entities of a full 1h window at the default SLUICE_TOPK_CAPACITY (61 buckets × 1000).
 */
export const DIMENSION_MEMO_MAX_ENTRIES = 500_000;
/** An eviction drops the least recently used entries down to this share of the bound (eviction sorts: done rarely). */
const EVICT_TO = 0.9;

class Entry {
  constructor(
    /** The entity's value; null when it has none (not in the table, or an empty value). */
    readonly value: string | null,
    /** When it was last asked for or looked up (a counter of uses and lookups). */
    public used: number,
  ) {}
}

/** The values of one attribute in one table version, as one use sees them. */
export interface AttributeValues {
  /** The table version the values are of (0: no version loaded, every entity has no value). */
  readonly version: number;
  /** The entity's value, null when it has none; undefined when it was not looked up in this version yet. */
  valueOf(entityId: string): string | null | undefined;
}

export interface DimensionValueMemoOptions {
  /** Defaults to DIMENSION_MEMO_MAX_ENTRIES. */
  maxEntries?: number;
}

export class DimensionValueMemo {
  private version: number | undefined;
  private readonly byAttribute = new Map<string, Map<string, Entry>>();
  private held = 0;
  private uses = 0;
  private readonly pending = new Map<string, Promise<void>>();
  private readonly maxEntries: number;
  private looked = 0;

  constructor(
    private readonly store: DimensionStore,
    opts: DimensionValueMemoOptions = {},
  ) {
    this.maxEntries = opts.maxEntries ?? DIMENSION_MEMO_MAX_ENTRIES;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1)
      throw new RangeError(`dimension memo maxEntries must be a positive integer, got ${this.maxEntries}`);
  }

  /** Entities held now, over all attributes. */
  get size(): number {
    return this.held;
  }

  /** Whether `n` entities looked up at once are all still held afterwards (an eviction keeps the newest). */
  fits(n: number): boolean {
    return n <= Math.floor(this.maxEntries * EVICT_TO);
  }

  /** Entities sent to the store so far (a request answered from the memo alone adds none). */
  get lookedUp(): number {
    return this.looked;
  }

  /**
   * The values of `attribute` in the store's current version. What it answers never changes: a later version, or
   * an eviction, leaves its values as they were (an evicted entity then answers undefined).
   */
  values(attribute: string): AttributeValues {
    this.use(this.store.version);
    this.uses++;
    const m = this.mapOf(attribute);
    return {
      version: this.version!,
      valueOf: (id) => {
        const e = m.get(id);
        if (!e) return undefined;
        e.used = this.uses;
        return e.value;
      },
    };
  }

  /** Looks up those of `entityIds` not held yet in the current version (one store query). */
  async lookUp(attribute: string, entityIds: readonly string[]): Promise<void> {
    for (let p = this.pending.get(attribute); p; p = this.pending.get(attribute)) await p.catch(() => undefined);
    this.use(this.store.version);
    const m = this.mapOf(attribute);
    const todo = entityIds.filter((id) => !m.has(id));
    if (todo.length === 0) return;
    const p = this.fetch(attribute, todo);
    this.pending.set(attribute, p);
    try {
      await p;
    } finally {
      this.pending.delete(attribute);
    }
  }

  private async fetch(attribute: string, ids: readonly string[]): Promise<void> {
    this.looked += ids.length;
    const { version, values } = await this.store.valuesOf(attribute, ids);
    // Another version swapped in meanwhile: these values are of the old one, which the next use drops anyway.
    if (version !== this.store.version) return;
    this.use(version);
    const m = this.mapOf(attribute);
    const used = ++this.uses;
    for (const id of ids) {
      if (m.has(id)) continue;
      m.set(id, new Entry(values.get(id) ?? null, used));
      this.held++;
    }
    if (this.held > this.maxEntries) this.evict();
  }

  /** Starts a new memo when `version` is not the one held. */
  private use(version: number): void {
    if (version === this.version) return;
    this.byAttribute.clear();
    this.held = 0;
    this.version = version;
  }

  private mapOf(attribute: string): Map<string, Entry> {
    let m = this.byAttribute.get(attribute);
    if (!m) {
      m = new Map();
      this.byAttribute.set(attribute, m);
    }
    return m;
  }

  /** Drops the least recently used entries (ties: any of them) down to EVICT_TO of the bound. */
  private evict(): void {
    const remove = this.held - Math.floor(this.maxEntries * EVICT_TO);
    const stamps = new Float64Array(this.held);
    let i = 0;
    for (const m of this.byAttribute.values()) for (const e of m.values()) stamps[i++] = e.used;
    stamps.sort();
    const cut = stamps[remove - 1]!;
    let removed = 0;
    // Older than the cut first, then those of the cut itself until enough are gone.
    for (const older of [true, false])
      for (const m of this.byAttribute.values())
        for (const [id, e] of m) {
          if (removed === remove) break;
          if (older ? e.used < cut : e.used === cut) {
            m.delete(id);
            removed++;
          }
        }
    this.held -= removed;
  }
}
