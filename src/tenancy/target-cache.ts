interface Entry<V> {
  value: Promise<V>;
  /** Writes using the value now; it is not closed while any does. */
  users: number;
}

export interface TargetCacheOptions<V> {
  /** Entries kept; beyond it the least recently used idle ones are closed. */
  max: number;
  /** Prepares a target on first use (creates its schema or database, opens a pool). */
  open(key: string): Promise<V>;
  /** Releases what `open` made (ends a pool); a failure is ignored: the entry is dropped either way. */
  close?(value: V): Promise<void>;
}

/**
 * Per-target state of a sink (a tenant's table statements, a tenant database's pool), prepared
 * once per key even under concurrent writes, kept for at most `max` keys in least-recently-used
 * order. An entry in use is never closed: the cache may hold more than `max` while all are in
 * use and shrinks when they are released. A failed `open` is forgotten, so the next use retries.
 */
export class TargetCache<V> {
  /** Map order is recency order: a used entry is moved to the end. */
  private readonly entries = new Map<string, Entry<V>>();
  private readonly closing = new Set<Promise<void>>();

  constructor(private readonly options: TargetCacheOptions<V>) {}

  get size(): number {
    return this.entries.size;
  }

  /** The target's value, opened if needed; call `release(key)` when done with it. */
  async acquire(key: string): Promise<V> {
    let entry = this.entries.get(key);
    if (entry) this.entries.delete(key);
    else entry = { value: this.options.open(key), users: 0 };
    this.entries.set(key, entry);
    entry.users++;
    try {
      const value = await entry.value;
      this.evict();
      return value;
    } catch (err) {
      entry.users--;
      if (this.entries.get(key) === entry) this.entries.delete(key);
      throw err;
    }
  }

  release(key: string): void {
    const entry = this.entries.get(key);
    if (entry && entry.users > 0) entry.users--;
    this.evict();
  }

  /** Closes every entry (in use or not): the sink is closing. */
  async close(): Promise<void> {
    const values = [...this.entries.values()];
    this.entries.clear();
    for (const entry of values) this.closeEntry(entry);
    await Promise.all(this.closing);
  }

  private evict(): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.options.max) return;
      if (entry.users > 0) continue;
      this.entries.delete(key);
      this.closeEntry(entry);
    }
  }

  private closeEntry(entry: Entry<V>): void {
    const { close } = this.options;
    if (!close) return;
    const done = entry.value.then(close).catch(() => undefined);
    this.closing.add(done);
    void done.then(() => this.closing.delete(done));
  }
}
