import type { StepContext } from '../../core/component.js';
import { FlotillaError, RecordError } from '../../core/errors.js';
import type { FlotillaRecord } from '../../core/record.js';
import { type Aggregate, createAggregate } from './aggregates.js';
import { StateReader, StateWriter } from './codec.js';
import type { WindowStepConfig } from './config.js';
import type { PartitionState, StateUnit, WindowEngine } from './engine.js';
import { eventTimeReader, groupKeyReader, recordLabel } from './field-path.js';
import { PaneEngine } from './pane-engine.js';
import { ResultBuilder } from './results.js';
import { SessionEngine } from './session-engine.js';
import type { StateEntry, StatefulStep, StateStats } from './stateful-step.js';
import { AggregateSet } from './tally.js';

/** Changelog key of a partition's watermark, arrival counter and last applied offset. */
export const META_KEY = 'meta';
/**
 * Format of the state entries (keys and encodings). Bump it with any change to them: a worker
 * then refuses, with a clear error, state written in a format it does not read.
 */
const META_VERSION = 1;
/** Rough heap cost of a pane or session besides its aggregates: object, bounds, tally, map entry, key. */
const BASE_WINDOW_KEY_BYTES = 200;

/** Window state that does not fit this step's configuration. */
export class WindowStateError extends FlotillaError {}

function formatTime(ms: number): string {
  return Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : String(ms);
}

/**
 * The `window` step: aggregates records per group key over event-time windows, keeping state per
 * input partition. Each partition has its own watermark (highest event time seen − allowed
 * lateness), advanced record by record, and its windows close as soon as the watermark reaches
 * their end + grace, before the next record is added. What a window holds therefore depends only
 * on the order of the partition's records, not on how they were batched, and a replay from a
 * checkpoint gives the same results under the same ids.
 */
export class WindowStep implements StatefulStep {
  readonly name: string;
  /** Where late records go. A named topic is not routed yet: late records go to the dead-letter topic (reason `late`). */
  readonly lateOutput: WindowStepConfig['late'];
  private readonly engine: WindowEngine<PartitionState, StateUnit>;
  private readonly aggregates: AggregateSet;
  private readonly partitions = new Map<number, PartitionState>();
  private readonly timeOf: (r: FlotillaRecord) => number;
  private readonly keyOf: (value: unknown) => string;
  /** Aggregate inputs of the record being added (reused). */
  private readonly inputs: unknown[];
  private readonly lateness: number;
  private readonly grace: number;
  private readonly idleTimeout: number;
  private readonly onUpdate: boolean;
  /** What the state encoding depends on; a restore from another layout fails. */
  private readonly layout: string;
  private readonly writer = new StateWriter();

  constructor(
    config: WindowStepConfig,
    topology: string,
    /** Wall clock for idle detection (tests pass their own). */
    private readonly clock: () => number = Date.now,
  ) {
    this.name = config.name ?? 'window';
    this.lateOutput = config.late;
    const list: Aggregate[] = Object.entries(config.aggregates).map(([name, a]) => createAggregate(name, a));
    this.aggregates = new AggregateSet(list);
    this.inputs = new Array(list.length);
    this.timeOf = eventTimeReader(config.time.field);
    this.keyOf = groupKeyReader(config.group_by);
    this.lateness = config.allowed_lateness;
    this.grace = config.grace;
    this.idleTimeout = config.idle_timeout;
    this.onUpdate = config.emit === 'on_update';
    const ctx = {
      aggregates: this.aggregates,
      results: new ResultBuilder(`${topology}/${this.name}/`, config.group_by, this.aggregates),
      grace: config.grace,
      onUpdate: this.onUpdate,
    };
    this.engine =
      config.type === 'session'
        ? new SessionEngine(ctx, config.gap as number)
        : new PaneEngine(
            ctx,
            config.size as number,
            config.type === 'sliding' ? (config.slide as number) : (config.size as number),
          );
    this.layout = JSON.stringify([
      config.type,
      config.size,
      config.slide,
      config.gap,
      config.emit,
      config.group_by,
      Object.entries(config.aggregates),
    ]);
  }

  private partition(partition: number): PartitionState {
    let p = this.partitions.get(partition);
    if (p === undefined) {
      p = this.engine.createPartition(this.clock());
      this.partitions.set(partition, p);
    }
    return p;
  }

  process(records: FlotillaRecord[], ctx: StepContext): FlotillaRecord[] {
    const p = this.partition(ctx.partition);
    p.lastActivity = this.clock();
    const out: FlotillaRecord[] = [];
    for (const r of records) {
      if (p.replayedThrough >= 0) {
        if (Number(r.source.offset) <= p.replayedThrough) continue; // already in the restored state
        p.replayedThrough = -1;
      }
      let time: number;
      try {
        time = this.timeOf(r);
      } catch (err) {
        ctx.deadLetter(r, 'window', err);
        continue;
      }
      if (p.watermark >= p.nextDue) this.engine.close(p, out);
      p.closedWatermark = p.watermark;
      this.addRecord(p, r, time, ctx, out);
      const w = time - this.lateness;
      if (w > p.watermark) p.watermark = w;
    }
    const last = records[records.length - 1];
    if (last !== undefined && p.replayedThrough < 0) p.lastOffset = last.source.offset;
    if (p.watermark >= p.nextDue) this.engine.close(p, out);
    p.closedWatermark = p.watermark;
    if (this.onUpdate) this.engine.emitUpdates(p, out);
    return out;
  }

  private addRecord(
    p: PartitionState,
    r: FlotillaRecord,
    time: number,
    ctx: StepContext,
    out: FlotillaRecord[],
  ): void {
    const { inputs } = this;
    const list = this.aggregates.list;
    let key: string;
    try {
      key = this.keyOf(r.value);
      for (let i = 0; i < list.length; i++) inputs[i] = (list[i] as Aggregate).input(r.value, r);
    } catch (err) {
      ctx.deadLetter(r, 'window', err);
      return;
    }
    if (this.engine.add(p, key, time, inputs, r, out)) p.seq++;
    else ctx.deadLetter(r, 'late', this.lateError(r, key, time, p.watermark));
  }

  private lateError(r: FlotillaRecord, key: string, time: number, watermark: number): RecordError {
    const [start, end] = this.engine.lateWindow(time);
    const topic = typeof this.lateOutput === 'object' ? ` (late topic '${this.lateOutput.topic}')` : '';
    return new RecordError(
      `record ${recordLabel(r)} with event time ${formatTime(time)} is late for window ` +
        `[${formatTime(start)}, ${formatTime(end)}) of key ${key}: the partition watermark is ` +
        `${formatTime(watermark)} and grace ${this.grace} ms${topic}`,
      'late',
    );
  }

  tick(nowMs: number): FlotillaRecord[] {
    const out: FlotillaRecord[] = [];
    const idle: PartitionState[] = [];
    let liveMin = Number.POSITIVE_INFINITY;
    let anyMax = Number.NEGATIVE_INFINITY;
    for (const p of this.partitions.values()) {
      if (nowMs - p.lastActivity >= this.idleTimeout) idle.push(p);
      else liveMin = Math.min(liveMin, p.watermark);
      anyMax = Math.max(anyMax, p.watermark);
    }
    // With every partition idle, the idle ones catch up with the most advanced.
    const target = liveMin === Number.POSITIVE_INFINITY ? anyMax : liveMin;
    for (const p of idle) {
      if (p.watermark >= target) continue;
      p.watermark = target;
      if (p.watermark >= p.nextDue) this.engine.close(p, out);
      p.closedWatermark = p.watermark;
    }
    return out;
  }

  finish(): FlotillaRecord[] {
    const out: FlotillaRecord[] = [];
    for (const p of this.partitions.values()) {
      p.watermark = Number.POSITIVE_INFINITY;
      this.engine.close(p, out);
      p.closedWatermark = p.watermark;
    }
    return out;
  }

  snapshot(partition: number): StateEntry[] {
    const p = this.partitions.get(partition);
    if (p === undefined) return [];
    const entries: StateEntry[] = [];
    if (!p.tracking) {
      p.tracking = true;
      for (const unit of this.engine.liveUnits(p)) entries.push(this.entryOf(unit));
    } else {
      // Last write per key, as the changelog keeps it: a key freed and opened again since the
      // last snapshot (a tumbling window closed, the next one began) needs no tombstone first.
      const latest = new Map<string, StateEntry>();
      for (const unit of p.changes) {
        unit.changed = false;
        if (!unit.freed) {
          const entry = this.entryOf(unit);
          latest.set(entry.key, entry);
        } else if (unit.persisted) {
          const key = this.engine.unitKey(unit);
          latest.set(key, { key, value: null });
        }
      }
      entries.push(...latest.values());
      p.changes = [];
    }
    const w = this.writer;
    w.u8(META_VERSION);
    w.str(this.layout);
    w.f64(p.watermark);
    w.f64(p.seq);
    w.str(p.lastOffset);
    entries.push({ key: META_KEY, value: w.take() });
    return entries;
  }

  private entryOf(unit: StateUnit): StateEntry {
    unit.persisted = true;
    this.engine.encode(unit, this.writer);
    return { key: this.engine.unitKey(unit), value: this.writer.take() };
  }

  restore(partition: number, entries: Iterable<StateEntry>): void {
    const latest = new Map<string, Buffer | null>();
    for (const e of entries) latest.set(e.key, e.value);
    const p = this.engine.createPartition(this.clock());
    p.tracking = true;
    const meta = latest.get(META_KEY);
    if (meta) {
      const r = new StateReader(meta, META_KEY);
      const version = r.u8();
      if (version !== META_VERSION) {
        throw new WindowStateError(
          `window state of step '${this.name}', partition ${partition}, is in state format ${version}; this ` +
            `version of Flotilla reads format ${META_VERSION}. Drain the topology with the version that wrote ` +
            'it, or give the step a new name (its windows start empty)',
        );
      }
      const layout = r.str();
      if (layout !== this.layout) {
        throw new WindowStateError(
          `window state of step '${this.name}', partition ${partition}, was written by another configuration ` +
            `(${layout}; now ${this.layout}); give the step a new name or clear its changelog`,
        );
      }
      p.watermark = r.f64();
      p.seq = r.f64();
      p.lastOffset = r.str();
      // Numeric offsets (Kafka, the embedded log) let a replay skip what the state already holds.
      const through = p.lastOffset === '' ? Number.NaN : Number(p.lastOffset);
      p.replayedThrough = Number.isSafeInteger(through) ? through : -1;
      r.end();
    }
    for (const [key, value] of latest) {
      if (key === META_KEY || value === null) continue;
      const r = new StateReader(value, key);
      this.engine.decode(p, key, r);
      r.end();
    }
    this.engine.afterRestore(p);
    this.partitions.set(partition, p);
  }

  releasePartition(partition: number): void {
    this.partitions.delete(partition);
  }

  stateStats(): StateStats {
    let windowKeys = 0;
    const bytesByOp = new Map<string, number>();
    for (const p of this.partitions.values()) {
      this.engine.forEachTally(p, (t) => {
        windowKeys++;
        this.aggregates.measure(t, bytesByOp);
      });
    }
    const bytesPerWindowKey: Record<string, number> = { base: BASE_WINDOW_KEY_BYTES };
    let approxBytes = windowKeys * BASE_WINDOW_KEY_BYTES;
    for (const [op, bytes] of bytesByOp) {
      const perOp = this.aggregates.list.filter((a) => a.op === op).length;
      approxBytes += bytes;
      bytesPerWindowKey[op] = windowKeys === 0 ? 0 : Math.round(bytes / (windowKeys * perOp));
    }
    return { partitions: this.partitions.size, openWindowKeys: windowKeys, approxBytes, bytesPerWindowKey };
  }
}
