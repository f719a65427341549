import type { StateEntry, StateStore } from '../core/component.js';

/** The last entry per key of several writes, in one list (what compaction would keep). */
export function latestPerKey(writes: StateEntry[][]): StateEntry[] {
  if (writes.length === 1) return writes[0] as StateEntry[];
  const latest = new Map<string, StateEntry>();
  for (const entries of writes) for (const e of entries) latest.set(e.key, e);
  return [...latest.values()];
}

/** Entries per store name and partition, for the life of the process. */
const memory = new Map<string, Map<number, StateEntry[]>>();

/**
 * State in this process's memory: what the embedded log offers (it does not outlive the
 * process either). Compacts on write so a long run keeps one entry per key.
 */
export class MemoryStateStore implements StateStore {
  private readonly partitions: Map<number, StateEntry[]>;

  constructor(name: string) {
    let partitions = memory.get(name);
    if (!partitions) {
      partitions = new Map();
      memory.set(name, partitions);
    }
    this.partitions = partitions;
  }

  /** One process, one owner: nothing to fence. */
  async claim(): Promise<void> {}

  async read(partition: number): Promise<StateEntry[]> {
    return [...(this.partitions.get(partition) ?? [])];
  }

  async write(partition: number, entries: StateEntry[]): Promise<void> {
    const latest = new Map((this.partitions.get(partition) ?? []).map((e) => [e.key, e]));
    for (const e of entries) {
      if (e.value === null) latest.delete(e.key);
      else latest.set(e.key, e);
    }
    this.partitions.set(partition, [...latest.values()]);
  }

  async close(): Promise<void> {}
}
