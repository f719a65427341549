import type { StateEntry, StatefulStep, Step, StepContext } from '../core/component.js';
import type { FlotillaRecord } from '../core/record.js';

/**
 * A step that keeps small per-partition state as a whole JSON snapshot (quality dedupe
 * tables, anomaly series) rather than as changelog entries.
 */
export interface SnapshottingStep extends Step {
  snapshot(topic: string, partition: number): unknown;
  restore(topic: string, partition: number, snapshot: never): void;
  release(topic: string, partition: number): void;
}

export function isSnapshottingStep(step: Step): step is SnapshottingStep {
  const s = step as Partial<SnapshottingStep>;
  return (
    typeof s.snapshot === 'function' && typeof s.restore === 'function' && typeof s.release === 'function'
  );
}

const KEY = 'snapshot';

interface Saved {
  /** Offset of the last record the state holds ('' when none). */
  lastOffset: string;
  state: unknown;
}

/**
 * Makes a snapshotting step a StatefulStep, so the worker checkpoints it like window state:
 * the whole snapshot is one changelog entry, written with the offset of the last record it
 * holds; after a restore, re-delivered records up to that offset are skipped, so none is
 * applied twice (a dedupe key seen twice, a series learning a value twice).
 */
export class SnapshotState implements StatefulStep {
  readonly name: string;
  private readonly topics = new Map<number, string>();
  private readonly lastOffsets = new Map<number, string>();
  /** Restored but not applied yet: the snapshot needs the topic, known at the first batch. */
  private readonly pending = new Map<number, Saved>();
  /** Records at or below this offset are already in the restored state. */
  private readonly skipThrough = new Map<number, number>();

  constructor(private readonly inner: SnapshottingStep) {
    this.name = inner.name;
  }

  async process(records: FlotillaRecord[], ctx: StepContext): Promise<FlotillaRecord[]> {
    const { partition } = ctx;
    this.topics.set(partition, ctx.topic);
    const saved = this.pending.get(partition);
    if (saved) {
      this.pending.delete(partition);
      if (saved.state !== null) this.inner.restore(ctx.topic, partition, saved.state as never);
    }
    let input = records;
    const through = this.skipThrough.get(partition);
    if (through !== undefined) {
      input = records.filter((r) => !(Number(r.source.offset) <= through));
      if (input.length > 0) this.skipThrough.delete(partition);
    }
    const last = records.at(-1);
    if (last) this.lastOffsets.set(partition, last.source.offset);
    return this.inner.process(input, ctx);
  }

  snapshot(partition: number): StateEntry[] {
    const topic = this.topics.get(partition);
    if (topic === undefined) return [];
    const saved: Saved = {
      lastOffset: this.lastOffsets.get(partition) ?? '',
      state: this.inner.snapshot(topic, partition) ?? null,
    };
    return [{ key: KEY, value: Buffer.from(JSON.stringify(saved)) }];
  }

  restore(partition: number, entries: Iterable<StateEntry>): void {
    let latest: Buffer | null = null;
    for (const e of entries) if (e.key === KEY) latest = e.value;
    if (!latest) return;
    const saved = JSON.parse(latest.toString('utf8')) as Saved;
    this.pending.set(partition, saved);
    const through = Number(saved.lastOffset);
    if (saved.lastOffset !== '' && Number.isSafeInteger(through)) this.skipThrough.set(partition, through);
  }

  releasePartition(partition: number): void {
    const topic = this.topics.get(partition);
    if (topic !== undefined) this.inner.release(topic, partition);
    for (const m of [this.topics, this.lastOffsets, this.pending, this.skipThrough]) m.delete(partition);
  }

  tick(): FlotillaRecord[] {
    return [];
  }

  close(): Promise<void> {
    return this.inner.close?.() ?? Promise.resolve();
  }
}
