import type { SourceCoordinates } from '../../core/record.js';
import { type Aggregate, SKIP } from './aggregates.js';
import type { StateReader, StateWriter } from './codec.js';

/** The aggregates of some records of one group key: what a pane, a window or a session holds. */
export interface Tally {
  count: number;
  /** One accumulator per aggregate, in declaration order. */
  accs: unknown[];
  /** Arrival order of the last record added, and where it came from (the source of results). */
  lastSeq: number;
  lastSource: SourceCoordinates;
}

/** Source of a tally no record has reached yet. */
export const NO_SOURCE: SourceCoordinates = { topic: '', partition: -1, offset: '-1' };

/** The step's aggregates, applied to tallies. */
export class AggregateSet {
  constructor(readonly list: readonly Aggregate[]) {}

  newTally(): Tally {
    return { count: 0, accs: this.initAccs(), lastSeq: -1, lastSource: NO_SOURCE };
  }

  /** Fresh accumulators, one per aggregate. */
  initAccs(): unknown[] {
    const { list } = this;
    const accs = new Array(list.length);
    for (let i = 0; i < list.length; i++) accs[i] = (list[i] as Aggregate).init();
    return accs;
  }

  /** Adds one record, given the inputs its aggregates read from it. */
  add(t: Tally, inputs: readonly unknown[], time: number, seq: number, source: SourceCoordinates): void {
    const { list } = this;
    const accs = t.accs;
    for (let i = 0; i < list.length; i++) {
      const input = inputs[i];
      if (input !== SKIP) accs[i] = (list[i] as Aggregate).add(accs[i], input, time, seq);
    }
    t.count++;
    t.lastSeq = seq;
    t.lastSource = source;
  }

  /** Folds `from` into `into`; `from` is left unchanged. */
  merge(into: Tally, from: Tally): void {
    const { list } = this;
    for (let i = 0; i < list.length; i++)
      into.accs[i] = (list[i] as Aggregate).merge(into.accs[i], from.accs[i]);
    into.count += from.count;
    if (from.lastSeq > into.lastSeq) {
      into.lastSeq = from.lastSeq;
      into.lastSource = from.lastSource;
    }
  }

  /** Writes the outputs of every aggregate into a result value. */
  results(t: Tally, into: Record<string, unknown>): void {
    for (let i = 0; i < this.list.length; i++) {
      const a = this.list[i] as Aggregate;
      into[a.name] = a.result(t.accs[i]);
    }
  }

  write(t: Tally, w: StateWriter): void {
    w.f64(t.count);
    w.f64(t.lastSeq);
    w.str(t.lastSource.topic);
    w.f64(t.lastSource.partition);
    w.str(t.lastSource.offset);
    this.list.forEach((a, i) => {
      a.serialize(t.accs[i], w);
    });
  }

  read(r: StateReader): Tally {
    const count = r.f64();
    const lastSeq = r.f64();
    const lastSource = { topic: r.str(), partition: r.f64(), offset: r.str() };
    return { count, lastSeq, lastSource, accs: this.list.map((a) => a.deserialize(r)) };
  }

  /** Adds the approximate bytes of each accumulator of `t` to `bytesByOp`. */
  measure(t: Tally, bytesByOp: Map<string, number>): void {
    this.list.forEach((a, i) => {
      bytesByOp.set(a.op, (bytesByOp.get(a.op) ?? 0) + a.approxBytes(t.accs[i]));
    });
  }
}
