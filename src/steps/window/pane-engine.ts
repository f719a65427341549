import type { FlotillaRecord } from '../../core/record.js';
import { StateDecodeError, type StateReader, type StateWriter } from './codec.js';
import { gcd } from './config.js';
import { type EngineContext, PartitionState, type StateUnit, type WindowEngine } from './engine.js';
import { NO_SOURCE, type Tally } from './tally.js';

/** The records of one group key within one pane [start, start + pane). */
interface Pane extends StateUnit, Tally {
  kind: 'pane';
  start: number;
  key: string;
}

/** on_update: the revision of one window of one group key, and whether it changed since its last result. */
interface RevisionMark extends StateUnit {
  kind: 'mark';
  /** Window start. */
  start: number;
  key: string;
  revision: number;
  pending: boolean;
}

type PaneUnit = Pane | RevisionMark;

class PanePartition extends PartitionState<PaneUnit> {
  /** Pane start → group key → pane. */
  readonly panes = new Map<number, Map<string, Pane>>();
  /** Starts of the panes held, ascending. */
  readonly starts: number[] = [];
  /** on_update: window start → group key → revision mark. */
  readonly marks = new Map<number, Map<string, RevisionMark>>();
  readonly pendingMarks: RevisionMark[] = [];
}

const UNIT_VERSION = 1;

const floorTo = (x: number, unit: number): number => Math.floor(x / unit) * unit;

function insertSorted(xs: number[], x: number): void {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((xs[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  xs.splice(lo, 0, x);
}

function lowerBound(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((xs[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Tumbling and sliding windows, both held as panes of gcd(size, slide): a record updates the one
 * pane its event time falls in, and a window's result is merged from its size / pane panes when
 * it is emitted. Windows start at multiples of `slide` since the epoch; tumbling is the case
 * slide = size, where a pane is a window. A record is late when the last window holding its
 * pane has closed; it still counts in the windows of its pane that are open.
 */
export class PaneEngine implements WindowEngine<PanePartition, PaneUnit> {
  private readonly pane: number;
  private readonly grace: number;

  constructor(
    private readonly ctx: EngineContext,
    private readonly size: number,
    private readonly slide: number,
  ) {
    this.pane = gcd(size, slide);
    this.grace = ctx.grace;
  }

  createPartition(now: number): PanePartition {
    return new PanePartition(now);
  }

  /** Start of the first window holding the pane that starts at `paneStart`. */
  private firstWindowOf(paneStart: number): number {
    return floorTo(paneStart - this.size, this.slide) + this.slide;
  }

  /** Start of the first window still open at watermark `w` (its end + grace is after `w`). */
  private firstOpenAt(w: number): number {
    return floorTo(w - this.size - this.grace, this.slide) + this.slide;
  }

  /** When the first window holding `paneStart` that is open at watermark `w` closes. */
  private dueOf(paneStart: number, w: number): number {
    return Math.max(this.firstWindowOf(paneStart), this.firstOpenAt(w)) + this.size + this.grace;
  }

  lateWindow(time: number): [number, number] {
    const start = floorTo(floorTo(time, this.pane), this.slide);
    return [start, start + this.size];
  }

  add(
    p: PanePartition,
    key: string,
    time: number,
    inputs: readonly unknown[],
    record: FlotillaRecord,
  ): boolean {
    const start = floorTo(time, this.pane);
    if (floorTo(start, this.slide) + this.size + this.grace <= p.watermark) return false;
    let byKey = p.panes.get(start);
    if (byKey === undefined) {
      byKey = new Map();
      p.panes.set(start, byKey);
      insertSorted(p.starts, start);
      const due = this.dueOf(start, p.closedWatermark);
      if (due < p.nextDue) p.nextDue = due;
    }
    let pane = byKey.get(key);
    if (pane === undefined) {
      pane = {
        kind: 'pane',
        start,
        key,
        count: 0,
        accs: this.ctx.aggregates.initAccs(),
        lastSeq: -1,
        lastSource: NO_SOURCE,
        persisted: false,
        changed: false,
        freed: false,
      };
      byKey.set(key, pane);
    }
    this.ctx.aggregates.add(pane, inputs, time, p.seq, record.source);
    p.touch(pane);
    if (this.ctx.onUpdate) this.markOpenWindows(p, start, key);
    return true;
  }

  private markOpenWindows(p: PanePartition, paneStart: number, key: string): void {
    const last = floorTo(paneStart, this.slide);
    for (
      let s = Math.max(this.firstWindowOf(paneStart), this.firstOpenAt(p.closedWatermark));
      s <= last;
      s += this.slide
    ) {
      let byKey = p.marks.get(s);
      if (byKey === undefined) {
        byKey = new Map();
        p.marks.set(s, byKey);
      }
      let mark = byKey.get(key);
      if (mark === undefined) {
        mark = {
          kind: 'mark',
          start: s,
          key,
          revision: 0,
          pending: false,
          persisted: false,
          changed: false,
          freed: false,
        };
        byKey.set(key, mark);
      }
      if (!mark.pending) {
        mark.pending = true;
        p.pendingMarks.push(mark);
      }
    }
  }

  close(p: PanePartition, out: FlotillaRecord[]): void {
    const { size, slide, grace } = this;
    const wm = p.watermark;
    const firstOpen = this.firstOpenAt(p.closedWatermark);
    // Tumbling: a pane is a window, emitted as it is. Sliding: window start → key → merged tally.
    const merged = this.pane === size ? null : new Map<number, Map<string, Tally>>();
    let freed = 0;
    for (const start of p.starts) {
      let s = Math.max(this.firstWindowOf(start), firstOpen);
      if (s + size + grace > wm) break;
      const byKey = p.panes.get(start) as Map<string, Pane>;
      const last = floorTo(start, slide);
      for (; s <= last && s + size + grace <= wm; s += slide) {
        if (merged === null) {
          for (const pane of byKey.values()) this.closeWindow(p, s, pane.key, pane, out);
          continue;
        }
        let window = merged.get(s);
        if (window === undefined) {
          window = new Map();
          merged.set(s, window);
        }
        for (const pane of byKey.values()) {
          let t = window.get(pane.key);
          if (t === undefined) {
            t = this.ctx.aggregates.newTally();
            window.set(pane.key, t);
          }
          this.ctx.aggregates.merge(t, pane);
        }
      }
      // Panes end up ascending by their last window too, so the freed ones are a prefix.
      if (last + size + grace <= wm) {
        for (const pane of byKey.values()) p.free(pane);
        p.panes.delete(start);
        freed++;
      }
    }
    if (freed > 0) p.starts.splice(0, freed);
    if (merged !== null) {
      for (const [s, window] of merged) for (const [key, t] of window) this.closeWindow(p, s, key, t, out);
    }
    if (this.ctx.onUpdate) this.freeClosedMarks(p, wm);
    p.closedWatermark = wm;
    p.nextDue = p.starts.length > 0 ? this.dueOf(p.starts[0] as number, wm) : Number.POSITIVE_INFINITY;
  }

  private closeWindow(p: PanePartition, start: number, key: string, t: Tally, out: FlotillaRecord[]): void {
    const { results } = this.ctx;
    if (!this.ctx.onUpdate) {
      out.push(results.result(key, start, start + this.size, t));
      return;
    }
    // on_update: the last revision is the final result; emit it if the batch has not yet.
    const mark = p.marks.get(start)?.get(key);
    if (mark?.pending) {
      mark.pending = false;
      mark.revision++;
      out.push(results.result(key, start, start + this.size, t, mark.revision));
    }
  }

  private freeClosedMarks(p: PanePartition, wm: number): void {
    for (const [s, byKey] of p.marks) {
      if (s + this.size + this.grace > wm) continue;
      for (const mark of byKey.values()) p.free(mark);
      p.marks.delete(s);
    }
  }

  /** The tally of window [start, start + size) for `key`, merged from its panes. */
  private windowTally(p: PanePartition, start: number, key: string): Tally {
    if (this.pane === this.size) return p.panes.get(start)?.get(key) ?? this.ctx.aggregates.newTally();
    const t = this.ctx.aggregates.newTally();
    const end = start + this.size;
    for (let i = lowerBound(p.starts, start); i < p.starts.length && (p.starts[i] as number) < end; i++) {
      const pane = p.panes.get(p.starts[i] as number)?.get(key);
      if (pane !== undefined) this.ctx.aggregates.merge(t, pane);
    }
    return t;
  }

  emitUpdates(p: PanePartition, out: FlotillaRecord[]): void {
    for (const mark of p.pendingMarks) {
      if (mark.freed || !mark.pending) continue;
      mark.pending = false;
      mark.revision++;
      p.touch(mark);
      const t = this.windowTally(p, mark.start, mark.key);
      out.push(this.ctx.results.result(mark.key, mark.start, mark.start + this.size, t, mark.revision));
    }
    p.pendingMarks.length = 0;
  }

  *liveUnits(p: PanePartition): Iterable<PaneUnit> {
    for (const byKey of p.panes.values()) yield* byKey.values();
    for (const byKey of p.marks.values()) yield* byKey.values();
  }

  unitKey(unit: PaneUnit): string {
    return `${unit.kind === 'pane' ? 'p' : 'r'}/${unit.start}/${unit.key}`;
  }

  encode(unit: PaneUnit, w: StateWriter): void {
    w.u8(UNIT_VERSION);
    w.f64(unit.start);
    w.str(unit.key);
    if (unit.kind === 'pane') this.ctx.aggregates.write(unit, w);
    else w.f64(unit.revision);
  }

  decode(p: PanePartition, key: string, r: StateReader): void {
    r.u8();
    const start = r.f64();
    const groupKey = r.str();
    const flags = { persisted: true, changed: false, freed: false };
    if (key.startsWith('p/')) {
      let byKey = p.panes.get(start);
      if (byKey === undefined) {
        byKey = new Map();
        p.panes.set(start, byKey);
        insertSorted(p.starts, start);
      }
      byKey.set(groupKey, { kind: 'pane', start, key: groupKey, ...flags, ...this.ctx.aggregates.read(r) });
    } else if (key.startsWith('r/')) {
      let byKey = p.marks.get(start);
      if (byKey === undefined) {
        byKey = new Map();
        p.marks.set(start, byKey);
      }
      byKey.set(groupKey, {
        kind: 'mark',
        start,
        key: groupKey,
        revision: r.f64(),
        pending: false,
        ...flags,
      });
    } else {
      throw new StateDecodeError(
        `'${key}' is not a key of ${this.slide === this.size ? 'tumbling' : 'sliding'} window state`,
      );
    }
  }

  afterRestore(p: PanePartition): void {
    p.closedWatermark = p.watermark;
    p.nextDue =
      p.starts.length > 0 ? this.dueOf(p.starts[0] as number, p.watermark) : Number.POSITIVE_INFINITY;
  }

  forEachTally(p: PanePartition, each: (t: Tally) => void): void {
    for (const byKey of p.panes.values()) for (const pane of byKey.values()) each(pane);
  }
}
