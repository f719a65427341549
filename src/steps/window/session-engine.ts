import type { FlotillaRecord } from '../../core/record.js';
import { StateDecodeError, type StateReader, type StateWriter } from './codec.js';
import { DueHeap } from './due-heap.js';
import { type EngineContext, PartitionState, type StateUnit, type WindowEngine } from './engine.js';
import { NO_SOURCE, type Tally } from './tally.js';

/** One session of a group key: [first event, last event + gap). */
interface Session extends Tally {
  start: number;
  end: number;
  owner: SessionKey;
  /** on_update: results emitted so far, the bounds of the last one (NaN before), and whether it changed since. */
  revision: number;
  emittedStart: number;
  emittedEnd: number;
  pending: boolean;
  /** Closed, or merged into another session. */
  done: boolean;
}

/** The open sessions of one group key (disjoint, by start) and the end of its closed ones. */
interface SessionKey extends StateUnit {
  key: string;
  sessions: Session[];
  /**
   * End of the latest closed session. A record before it is late even when its own session
   * would still be open: it would join a session already emitted.
   */
  closedUntil: number;
  /** The heap entry that is this key's next due time; older entries are stale. */
  entry: DueEntry | null;
}

interface DueEntry {
  due: number;
  owner: SessionKey;
}

class SessionPartition extends PartitionState<SessionKey> {
  readonly keys = new Map<string, SessionKey>();
  readonly heap = new DueHeap<DueEntry>();
  readonly pending: Session[] = [];
}

const UNIT_VERSION = 1;

/**
 * Session windows: a record at t opens [t, t + gap), and sessions of a key that overlap merge.
 * A session closes when the watermark reaches its end + grace. Lateness, chosen so that the
 * results equal a batch sessionization of the records not reported late, whatever the arrival
 * order or batching:
 * - a record within the span of an open session (first ≤ t ≤ last event) joins it;
 * - otherwise it is late if it lies before the end of a closed session of its key (it would
 *   reach into a result already emitted), or if its own session [t, t + gap) is closed
 *   (t + gap + grace ≤ watermark); else it opens a session or merges the ones it overlaps.
 * A key's `closedUntil` is kept until the watermark passes it by gap + grace; after that the
 * own-session rule makes every such record late anyway, so the key's state is freed.
 */
export class SessionEngine implements WindowEngine<SessionPartition, SessionKey> {
  private readonly grace: number;

  constructor(
    private readonly ctx: EngineContext,
    private readonly gap: number,
  ) {
    this.grace = ctx.grace;
  }

  createPartition(now: number): SessionPartition {
    return new SessionPartition(now);
  }

  lateWindow(time: number): [number, number] {
    return [time, time + this.gap];
  }

  add(
    p: SessionPartition,
    key: string,
    time: number,
    inputs: readonly unknown[],
    record: FlotillaRecord,
    out: FlotillaRecord[],
  ): boolean {
    const { gap } = this;
    let owner = p.keys.get(key);
    // Sessions [i, j) overlap [time, time + gap).
    let i = 0;
    let j = 0;
    if (owner !== undefined) {
      const sessions = owner.sessions;
      while (i < sessions.length && (sessions[i] as Session).end <= time) i++;
      j = i;
      while (j < sessions.length && (sessions[j] as Session).start < time + gap) j++;
      const within = sessions[i];
      if (j - i === 1 && within !== undefined && time >= within.start && time + gap <= within.end) {
        this.addTo(p, within, inputs, time, record);
        return true;
      }
      if (time < owner.closedUntil) return false;
    }
    if (time + gap + this.grace <= p.watermark) return false;
    if (owner === undefined) {
      owner = {
        key,
        sessions: [],
        closedUntil: Number.NEGATIVE_INFINITY,
        entry: null,
        persisted: false,
        changed: false,
        freed: false,
      };
      p.keys.set(key, owner);
    }
    const sessions = owner.sessions;
    let session: Session;
    if (i === j) {
      session = this.newSession(owner, time, time + gap);
      sessions.splice(i, 0, session);
      if (time + gap < (owner.entry?.due ?? Number.POSITIVE_INFINITY)) this.schedule(p, owner, time + gap);
    } else {
      session = sessions[i] as Session;
      for (let k = i + 1; k < j; k++) this.absorb(session, sessions[k] as Session, out);
      sessions.splice(i + 1, j - i - 1);
    }
    this.addTo(p, session, inputs, time, record);
    return true;
  }

  private newSession(owner: SessionKey, start: number, end: number): Session {
    return {
      count: 0,
      accs: this.ctx.aggregates.initAccs(),
      lastSeq: -1,
      lastSource: NO_SOURCE,
      start,
      end,
      owner,
      revision: 0,
      emittedStart: Number.NaN,
      emittedEnd: Number.NaN,
      pending: false,
      done: false,
    };
  }

  private addTo(
    p: SessionPartition,
    s: Session,
    inputs: readonly unknown[],
    time: number,
    record: FlotillaRecord,
  ): void {
    this.ctx.aggregates.add(s, inputs, time, p.seq, record.source);
    if (time < s.start) s.start = time;
    if (time + this.gap > s.end) s.end = time + this.gap;
    p.touch(s.owner);
    if (this.ctx.onUpdate && !s.pending) {
      s.pending = true;
      p.pending.push(s);
    }
  }

  /** Merges `from` into `into`; with on_update, the result `from` had emitted is retracted. */
  private absorb(into: Session, from: Session, out: FlotillaRecord[]): void {
    this.ctx.aggregates.merge(into, from);
    if (from.start < into.start) into.start = from.start;
    if (from.end > into.end) into.end = from.end;
    if (from.revision > into.revision) into.revision = from.revision;
    from.done = true;
    if (!Number.isNaN(from.emittedEnd)) {
      out.push(
        this.ctx.results.tombstone(from.owner.key, from.emittedStart, from.emittedEnd, from.lastSource),
      );
    }
  }

  private schedule(p: SessionPartition, owner: SessionKey, due: number): void {
    const entry = { due, owner };
    owner.entry = entry;
    p.heap.push(entry);
    if (due + this.grace < p.nextDue) p.nextDue = due + this.grace;
  }

  close(p: SessionPartition, out: FlotillaRecord[]): void {
    const { gap, grace } = this;
    const wm = p.watermark;
    for (let top = p.heap.peek(); top !== undefined && top.due + grace <= wm; top = p.heap.peek()) {
      p.heap.pop();
      const owner = top.owner;
      if (owner.entry !== top) continue;
      owner.entry = null;
      const sessions = owner.sessions;
      let closed = 0;
      for (const s of sessions) {
        if (s.end + grace > wm) break;
        this.closeSession(s, out);
        if (s.end > owner.closedUntil) owner.closedUntil = s.end;
        closed++;
      }
      if (closed > 0) {
        sessions.splice(0, closed);
        p.touch(owner);
      }
      const first = sessions[0];
      if (first !== undefined) this.schedule(p, owner, first.end);
      else if (owner.closedUntil + gap + grace <= wm) {
        p.free(owner);
        p.keys.delete(owner.key);
      } else this.schedule(p, owner, owner.closedUntil + gap);
    }
    p.closedWatermark = wm;
    const next = p.heap.peek();
    p.nextDue = next === undefined ? Number.POSITIVE_INFINITY : next.due + grace;
  }

  private closeSession(s: Session, out: FlotillaRecord[]): void {
    s.done = true;
    if (!this.ctx.onUpdate) out.push(this.ctx.results.result(s.owner.key, s.start, s.end, s));
    else if (s.pending) this.emitRevision(s, out);
  }

  private emitRevision(s: Session, out: FlotillaRecord[]): void {
    const { results } = this.ctx;
    const key = s.owner.key;
    if (!Number.isNaN(s.emittedEnd) && (s.emittedStart !== s.start || s.emittedEnd !== s.end)) {
      out.push(results.tombstone(key, s.emittedStart, s.emittedEnd, s.lastSource));
    }
    s.pending = false;
    s.revision++;
    s.emittedStart = s.start;
    s.emittedEnd = s.end;
    out.push(results.result(key, s.start, s.end, s, s.revision));
  }

  emitUpdates(p: SessionPartition, out: FlotillaRecord[]): void {
    for (const s of p.pending) {
      if (s.done || !s.pending) continue;
      this.emitRevision(s, out);
      p.touch(s.owner);
    }
    p.pending.length = 0;
  }

  liveUnits(p: SessionPartition): Iterable<SessionKey> {
    return p.keys.values();
  }

  unitKey(unit: SessionKey): string {
    return `k/${unit.key}`;
  }

  encode(unit: SessionKey, w: StateWriter): void {
    w.u8(UNIT_VERSION);
    w.str(unit.key);
    w.f64(unit.closedUntil);
    w.u32(unit.sessions.length);
    for (const s of unit.sessions) {
      w.f64(s.start);
      w.f64(s.end);
      w.f64(s.revision);
      w.f64(s.emittedStart);
      w.f64(s.emittedEnd);
      this.ctx.aggregates.write(s, w);
    }
  }

  decode(p: SessionPartition, key: string, r: StateReader): void {
    if (!key.startsWith('k/')) throw new StateDecodeError(`'${key}' is not a key of session window state`);
    r.u8();
    const owner: SessionKey = {
      key: r.str(),
      closedUntil: r.f64(),
      sessions: [],
      entry: null,
      persisted: true,
      changed: false,
      freed: false,
    };
    const n = r.u32();
    for (let k = 0; k < n; k++) {
      const session = this.newSession(owner, r.f64(), r.f64());
      session.revision = r.f64();
      session.emittedStart = r.f64();
      session.emittedEnd = r.f64();
      owner.sessions.push(Object.assign(session, this.ctx.aggregates.read(r)));
    }
    p.keys.set(owner.key, owner);
  }

  afterRestore(p: SessionPartition): void {
    for (const owner of p.keys.values()) {
      this.schedule(p, owner, owner.sessions[0]?.end ?? owner.closedUntil + this.gap);
    }
    p.closedWatermark = p.watermark;
  }

  forEachTally(p: SessionPartition, each: (t: Tally) => void): void {
    for (const owner of p.keys.values()) for (const s of owner.sessions) each(s);
  }
}
