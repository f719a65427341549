import type { Step } from '../../core/component.js';
import type { FlotillaRecord } from '../../core/record.js';

/** One changelog entry: last write per key wins, like a compacted topic; null is a tombstone. */
export interface StateEntry {
  key: string;
  value: Buffer | null;
}

/** Memory held by a stateful step, for the memory report. */
export interface StateStats {
  partitions: number;
  /** Open state units: window-keys for tumbling, pane-keys for sliding (state is per pane), sessions. */
  openWindowKeys: number;
  approxBytes: number;
  /**
   * Mean approximate bytes per open window-key: `base` (bounds, count, bookkeeping) and, for each
   * aggregate op in use, one aggregate of that op.
   */
  bytesPerWindowKey: Record<string, number>;
}

/**
 * A step that keeps state per input partition and checkpoints it as changelog entries.
 *
 * Contract for the worker, per partition, batches in order:
 * 1. `restore(partition, entries)` on assignment, with every entry read back from the changelog
 *    (none for a new partition); records the restored state already holds are skipped when the
 *    source re-delivers them (the state remembers the last offset it applied).
 * 2. `process(batch)`, then at once `snapshot(partition)` (entries changed since the last call; the
 *    first call returns everything), before the partition's next batch.
 * 3. Write the results to the sinks; when they acknowledge, write the snapshot entries to the
 *    changelog; then commit the batch's offsets. In that order, a crash at any point either
 *    replays the batch against the old state (same results, same ids) or skips it against the new.
 * 4. `tick(now)` on a timer closes windows held open by idle partitions; treat its results like a
 *    batch's (sinks, then snapshots of every partition, which carry the raised watermarks).
 * 5. `releasePartition(partition)` on revocation.
 */
export interface StatefulStep extends Step {
  /** Results of windows closed because idle partitions stopped holding the watermark back. */
  tick(nowMs: number): FlotillaRecord[];
  snapshot(partition: number): StateEntry[];
  restore(partition: number, entries: Iterable<StateEntry>): void;
  releasePartition(partition: number): void;
  stateStats(): StateStats;
}

export function isStatefulStep(step: Step): step is StatefulStep {
  const s = step as Partial<StatefulStep>;
  return typeof s.snapshot === 'function' && typeof s.restore === 'function' && typeof s.tick === 'function';
}
