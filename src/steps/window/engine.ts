import type { FlotillaRecord } from '../../core/record.js';
import type { StateReader, StateWriter } from './codec.js';
import type { ResultBuilder } from './results.js';
import type { AggregateSet, Tally } from './tally.js';

/** A piece of window state with its own changelog entry (a pane, a revision mark, a session key). */
export interface StateUnit {
  /** Written by a snapshot: once freed, it needs a tombstone. */
  persisted: boolean;
  /** Listed in the partition's changes since the last snapshot. */
  changed: boolean;
  /** Closed and dropped from memory. */
  freed: boolean;
}

/** Window state of one input partition: its watermark, its windows, and what changed since the last snapshot. */
export class PartitionState<U extends StateUnit = StateUnit> {
  /** Highest event time seen minus allowed lateness (or raised by an idle tick): records and windows are late against it. */
  watermark = Number.NEGATIVE_INFINITY;
  /** The watermark up to which windows have been closed. */
  closedWatermark = Number.NEGATIVE_INFINITY;
  /** Watermark at which the next window closes (its end + grace). */
  nextDue = Number.POSITIVE_INFINITY;
  /** Arrival order of records; orders first/last between records of equal event time. */
  seq = 0;
  /** Offset of the last record processed, as the source gave it (checkpointed). */
  lastOffset = '';
  /**
   * After a restore: the restored state holds every record up to this offset, so re-delivered
   * ones are skipped; -1 once past it (offsets are only parsed until then).
   */
  replayedThrough = -1;
  /** Set by the first snapshot or a restore: from then on, changed units are listed for the next snapshot. */
  tracking = false;
  changes: U[] = [];

  constructor(
    /** Wall-clock time of the last batch (idle detection). */
    public lastActivity: number,
  ) {}

  /** Notes that `unit` changed, for the next snapshot. */
  touch(unit: U): void {
    if (this.tracking && !unit.changed) {
      unit.changed = true;
      this.changes.push(unit);
    }
  }

  free(unit: U): void {
    unit.freed = true;
    this.touch(unit);
  }
}

/** What every engine shares: the step's aggregates, how results are built, and the timing options. */
export interface EngineContext {
  aggregates: AggregateSet;
  results: ResultBuilder;
  grace: number;
  onUpdate: boolean;
}

/**
 * Window assignment, closing and state layout of one window type. The step drives it: it skips
 * replayed records, reads event time, group key and aggregate inputs, advances the watermark,
 * and calls `close` whenever the watermark reaches `nextDue`, before the next record.
 */
export interface WindowEngine<P extends PartitionState<U>, U extends StateUnit> {
  createPartition(now: number): P;
  /** Adds a record to its windows; false when it is late (every window it belongs to is closed). */
  add(
    p: P,
    key: string,
    time: number,
    inputs: readonly unknown[],
    record: FlotillaRecord,
    out: FlotillaRecord[],
  ): boolean;
  /** Bounds of the window a late record at `time` missed (for the dead-letter message). */
  lateWindow(time: number): [start: number, end: number];
  /** Closes every window whose end + grace ≤ the watermark, emitting on_close results, and frees its state. */
  close(p: P, out: FlotillaRecord[]): void;
  /** on_update: a result for each window changed since the last call. */
  emitUpdates(p: P, out: FlotillaRecord[]): void;
  liveUnits(p: P): Iterable<U>;
  unitKey(unit: U): string;
  encode(unit: U, w: StateWriter): void;
  /** Adds the unit stored under `key` to `p`. */
  decode(p: P, key: string, r: StateReader): void;
  /** Rebuilds indexes (due times) once every unit is decoded. */
  afterRestore(p: P): void;
  /** Calls `each` for every open window-key's tally. */
  forEachTally(p: P, each: (t: Tally) => void): void;
}
