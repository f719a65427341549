import type { FlotillaRecord } from '../../core/record.js';
import { StateDecodeError, type StateReader, type StateWriter } from './codec.js';
import { gcd } from './config.js';
import { type EngineContext, PartitionState, type StateUnit, type WindowEngine } from './engine.js';
import { NO_SOURCE, type Tally } from './tally.js';

/** The records of one group key within one pane [start, start + pane). */
interface Pane extends Tally {
  start: number;
  owner: PaneKey;
}

/** on_update: the revision of one window of one group key, and whether it changed since its last result. */
interface RevisionMark {
  /** Window start. */
  start: number;
  owner: PaneKey;
  revision: number;
  pending: boolean;
  freed: boolean;
}

/**
 * The state of one group key: its open panes and (on_update) the revision marks of its open
 * windows, kept as one changelog entry. One entry per key rather than per pane: a snapshot
 * writes each key a batch touched once, however many panes the batch spanned, and a closed
 * pane needs no tombstone of its own (changelog messages cost far more than their bytes).
 */
interface PaneKey extends StateUnit {
  key: string;
  panes: Pane[];
  marks: RevisionMark[];
}

class PanePartition extends PartitionState<PaneKey> {
  /** Group key → its state. */
  readonly keys = new Map<string, PaneKey>();
  /** Pane start → group key → pane. */
  readonly panes = new Map<number, Map<string, Pane>>();
  /** Starts of the panes held, ascending. */
  readonly starts: number[] = [];
  /** on_update: window start → group key → revision mark. */
  readonly marks = new Map<number, Map<string, RevisionMark>>();
  readonly pendingMarks: RevisionMark[] = [];
}

const UNIT_VERSION = 2;

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

function remove<T>(xs: T[], x: T): void {
  const i = xs.indexOf(x);
  if (i >= 0) xs.splice(i, 1);
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
export class PaneEngine implements WindowEngine<PanePartition, PaneKey> {
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
      const owner = this.ownerOf(p, key);
      pane = {
        start,
        owner,
        count: 0,
        accs: this.ctx.aggregates.initAccs(),
        lastSeq: -1,
        lastSource: NO_SOURCE,
      };
      owner.panes.push(pane);
      byKey.set(key, pane);
    }
    this.ctx.aggregates.add(pane, inputs, time, p.seq, record.source);
    p.touch(pane.owner);
    if (this.ctx.onUpdate) this.markOpenWindows(p, start, pane.owner);
    return true;
  }

  private ownerOf(p: PanePartition, key: string): PaneKey {
    let owner = p.keys.get(key);
    if (owner === undefined) {
      owner = { key, panes: [], marks: [], persisted: false, changed: false, freed: false };
      p.keys.set(key, owner);
    }
    return owner;
  }

  /** After a pane or mark of `owner` closed: its entry is rewritten, or deleted once nothing is left. */
  private shrunk(p: PanePartition, owner: PaneKey): void {
    if (owner.panes.length > 0 || owner.marks.length > 0) p.touch(owner);
    else {
      p.keys.delete(owner.key);
      p.free(owner);
    }
  }

  private markOpenWindows(p: PanePartition, paneStart: number, owner: PaneKey): void {
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
      let mark = byKey.get(owner.key);
      if (mark === undefined) {
        mark = { start: s, owner, revision: 0, pending: false, freed: false };
        owner.marks.push(mark);
        byKey.set(owner.key, mark);
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
          for (const pane of byKey.values()) this.closeWindow(p, s, pane.owner.key, pane, out);
          continue;
        }
        let window = merged.get(s);
        if (window === undefined) {
          window = new Map();
          merged.set(s, window);
        }
        for (const pane of byKey.values()) {
          const key = pane.owner.key;
          let t = window.get(key);
          if (t === undefined) {
            t = this.ctx.aggregates.newTally();
            window.set(key, t);
          }
          this.ctx.aggregates.merge(t, pane);
        }
      }
      // Panes end up ascending by their last window too, so the freed ones are a prefix.
      if (last + size + grace <= wm) {
        for (const pane of byKey.values()) {
          remove(pane.owner.panes, pane);
          this.shrunk(p, pane.owner);
        }
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
      for (const mark of byKey.values()) {
        mark.freed = true;
        remove(mark.owner.marks, mark);
        this.shrunk(p, mark.owner);
      }
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
      p.touch(mark.owner);
      const key = mark.owner.key;
      const t = this.windowTally(p, mark.start, key);
      out.push(this.ctx.results.result(key, mark.start, mark.start + this.size, t, mark.revision));
    }
    p.pendingMarks.length = 0;
  }

  liveUnits(p: PanePartition): Iterable<PaneKey> {
    return p.keys.values();
  }

  unitKey(unit: PaneKey): string {
    return `k/${unit.key}`;
  }

  encode(unit: PaneKey, w: StateWriter): void {
    w.u8(UNIT_VERSION);
    w.str(unit.key);
    w.u32(unit.panes.length);
    for (const pane of unit.panes) {
      w.f64(pane.start);
      this.ctx.aggregates.write(pane, w);
    }
    w.u32(unit.marks.length);
    for (const mark of unit.marks) {
      w.f64(mark.start);
      w.f64(mark.revision);
    }
  }

  decode(p: PanePartition, key: string, r: StateReader): void {
    if (!key.startsWith('k/')) {
      throw new StateDecodeError(
        `'${key}' is not a key of ${this.slide === this.size ? 'tumbling' : 'sliding'} window state`,
      );
    }
    r.u8();
    const owner = this.ownerOf(p, r.str());
    owner.persisted = true;
    const panes = r.u32();
    for (let i = 0; i < panes; i++) {
      const start = r.f64();
      const pane: Pane = { start, owner, ...this.ctx.aggregates.read(r) };
      owner.panes.push(pane);
      let byKey = p.panes.get(start);
      if (byKey === undefined) {
        byKey = new Map();
        p.panes.set(start, byKey);
        insertSorted(p.starts, start);
      }
      byKey.set(owner.key, pane);
    }
    const marks = r.u32();
    for (let i = 0; i < marks; i++) {
      const mark: RevisionMark = { start: r.f64(), owner, revision: r.f64(), pending: false, freed: false };
      owner.marks.push(mark);
      let byKey = p.marks.get(mark.start);
      if (byKey === undefined) {
        byKey = new Map();
        p.marks.set(mark.start, byKey);
      }
      byKey.set(owner.key, mark);
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
