import { z } from 'zod';

/** What a dedupe table persists: keys in insertion order with their event times. JSON-safe. */
export const dedupeTableSnapshotSchema = z
  .object({
    /** Largest event time remembered so far; null before the first key. */
    clock: z.number().nullable(),
    entries: z.array(z.tuple([z.string(), z.number()])),
  })
  .strict();

export type DedupeTableSnapshot = z.infer<typeof dedupeTableSnapshotSchema>;

/**
 * Keys seen in one partition within a TTL of event time. Time only moves with the records'
 * event times (never the wall clock), so replaying a partition from a snapshot gives the same
 * answers. Memory is bounded by `maxKeys`: the oldest keys are evicted first.
 */
export class DedupeTable {
  /** Key → event time it was remembered at. */
  private readonly seen = new Map<string, number>();
  /**
   * Keys in the order remembered (parallel arrays from `head`), so expiry and eviction pop the
   * oldest without scanning the Map from its start: V8 leaves deleted slots there, which makes
   * that scan grow with every deletion. An entry is stale once its key is remembered again.
   */
  private keys: string[] = [];
  private times: number[] = [];
  private head = 0;
  private clock = Number.NEGATIVE_INFINITY;

  constructor(
    readonly ttlMs: number,
    readonly maxKeys: number,
  ) {}

  get size(): number {
    return this.seen.size;
  }

  /** True if `key` was remembered no longer than the TTL before the later of `time` and the clock. */
  has(key: string, time: number): boolean {
    const at = this.seen.get(key);
    return at !== undefined && at >= Math.max(this.clock, time) - this.ttlMs;
  }

  /** Remembers `key` at `time`; returns how many keys were evicted to stay within `maxKeys`. */
  remember(key: string, time: number): number {
    if (time > this.clock) this.clock = time;
    this.seen.delete(key);
    this.seen.set(key, time);
    this.keys.push(key);
    this.times.push(time);
    const horizon = this.clock - this.ttlMs;
    while (this.head < this.keys.length && (this.times[this.head] as number) < horizon) this.popOldest();
    let evicted = 0;
    while (this.seen.size > this.maxKeys) if (this.popOldest()) evicted++;
    this.compact();
    return evicted;
  }

  snapshot(): DedupeTableSnapshot {
    return { clock: Number.isFinite(this.clock) ? this.clock : null, entries: [...this.seen] };
  }

  /** Loads a snapshot; returns how many keys were evicted because `maxKeys` is now lower. */
  restore(snapshot: DedupeTableSnapshot): number {
    this.seen.clear();
    this.clock = snapshot.clock ?? Number.NEGATIVE_INFINITY;
    // Keep the newest keys when the snapshot holds more than maxKeys.
    const skip = Math.max(0, snapshot.entries.length - this.maxKeys);
    for (let i = skip; i < snapshot.entries.length; i++) {
      const [key, at] = snapshot.entries[i] as [string, number];
      this.seen.set(key, at);
    }
    this.reindex();
    return skip;
  }

  /** Forgets the oldest remembered entry; false if it was stale (its key remembered again since). */
  private popOldest(): boolean {
    const key = this.keys[this.head] as string;
    const at = this.times[this.head] as number;
    this.head++;
    if (this.seen.get(key) !== at) return false;
    this.seen.delete(key);
    return true;
  }

  /** Drops popped and stale entries once they outnumber live ones, keeping memory O(maxKeys). */
  private compact(): void {
    const queued = this.keys.length - this.head;
    if (queued > 2 * this.seen.size + 1024) this.reindex();
    else if (this.head > 1024 && this.head * 2 > this.keys.length) {
      this.keys = this.keys.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
  }

  /** Rebuilds the order from the Map, whose iteration order is insertion order. */
  private reindex(): void {
    this.keys = [...this.seen.keys()];
    this.times = [...this.seen.values()];
    this.head = 0;
  }
}
