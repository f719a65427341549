/** An entry of the in-process log: what a Kafka record would carry. */
export interface LogEntry {
  offset: number;
  key: string | null;
  value: Buffer;
  timestamp: number;
  headers: Record<string, string>;
}

export type NewEntry = Omit<LogEntry, 'offset' | 'timestamp' | 'headers'> &
  Partial<Pick<LogEntry, 'timestamp' | 'headers'>>;

/**
 * A partitioned, append-only, in-process log with committed offsets per group: the embedded
 * stand-in for Kafka, so a topology runs (and is tested) with no broker. Appends wake waiting
 * readers. Entries are kept until `truncate` — the demo and tests are bounded; the generator
 * truncates what every group has committed.
 */
export class EmbeddedLog {
  private readonly topics = new Map<string, LogEntry[][]>();
  private readonly committed = new Map<string, number>();
  private waiters: (() => void)[] = [];
  /** Offset of the first entry kept, per topic/partition. */
  private readonly base = new Map<string, number>();

  ensureTopic(topic: string, partitions: number): void {
    const existing = this.topics.get(topic);
    if (existing) {
      if (existing.length !== partitions) {
        throw new Error(`embedded topic '${topic}' has ${existing.length} partitions, not ${partitions}`);
      }
      return;
    }
    this.topics.set(
      topic,
      Array.from({ length: partitions }, () => []),
    );
  }

  partitions(topic: string): number {
    return this.topics.get(topic)?.length ?? 0;
  }

  /** Appends to a partition (by key hash when not given); returns the offset. */
  append(topic: string, entry: NewEntry, partition?: number): number {
    const parts = this.topics.get(topic);
    if (!parts) throw new Error(`embedded topic '${topic}' does not exist`);
    const p = partition ?? (entry.key === null ? 0 : hashKey(entry.key) % parts.length);
    const log = parts[p];
    if (!log) throw new Error(`embedded topic '${topic}' has no partition ${p}`);
    const offset = this.baseOffset(topic, p) + log.length;
    log.push({ headers: {}, timestamp: Date.now(), ...entry, offset });
    this.wake();
    return offset;
  }

  /** Entries of one partition from `offset`, at most `max`. */
  read(topic: string, partition: number, offset: number, max: number): LogEntry[] {
    const log = this.topics.get(topic)?.[partition];
    if (!log) return [];
    const start = Math.max(0, offset - this.baseOffset(topic, partition));
    return log.slice(start, start + max);
  }

  endOffset(topic: string, partition: number): number {
    return this.baseOffset(topic, partition) + (this.topics.get(topic)?.[partition]?.length ?? 0);
  }

  commit(group: string, topic: string, partition: number, offset: number): void {
    this.committed.set(`${group}\u0000${topic}\u0000${partition}`, offset);
  }

  committedOffset(group: string, topic: string, partition: number): number | undefined {
    return this.committed.get(`${group}\u0000${topic}\u0000${partition}`);
  }

  /** Drops entries below `offset` (all readers are past them). */
  truncate(topic: string, partition: number, offset: number): void {
    const log = this.topics.get(topic)?.[partition];
    if (!log) return;
    const drop = Math.min(log.length, offset - this.baseOffset(topic, partition));
    if (drop <= 0) return;
    log.splice(0, drop);
    this.base.set(`${topic}\u0000${partition}`, this.baseOffset(topic, partition) + drop);
  }

  /** Resolves on the next append, or after `ms`. */
  waitForAppend(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const waiters = this.waiters;
      function done() {
        clearTimeout(timer);
        resolve();
      }
      waiters.push(done);
    });
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private baseOffset(topic: string, partition: number): number {
    return this.base.get(`${topic}\u0000${partition}`) ?? 0;
  }
}

/** murmur2 is Kafka's; for the embedded log any stable spread will do. FNV-1a, 32-bit. */
export function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The process-wide embedded log, shared by the embedded sources and sinks of a process. */
export const embeddedLog = new EmbeddedLog();
