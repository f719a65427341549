import { RecordError } from '../../core/errors.js';
import type { FlotillaRecord } from '../../core/record.js';
import { DDSketch } from '../../sketch/ddsketch.js';
import { HyperLogLog } from '../../sketch/hyperloglog.js';
import type { StateReader, StateWriter } from './codec.js';
import { type AggregateConfig, type AggregateOp, NUMERIC_OPS, quantileName } from './config.js';
import { exactAdd, exactMerge, exactValue } from './exact-sum.js';
import { describeValue, type FieldReader, fieldReader, recordLabel } from './field-path.js';

/** What `input` returns for a record an aggregate does not count (e.g. first/last with the field missing). */
export const SKIP: unique symbol = Symbol('skip');

/**
 * One aggregate of a window. An accumulator `A` holds the aggregate of some records; panes,
 * windows and sessions each hold one per aggregate. `add` and `merge` may update their first
 * argument in place and return it (numbers are returned anew); `merge` never changes `from`.
 */
export interface Aggregate<A = unknown, I = unknown> {
  /** Output name. */
  readonly name: string;
  readonly op: AggregateOp;
  /** This aggregate's input from a record value, or SKIP; throws a RecordError (reason `window`) for a bad record. */
  input(value: unknown, record: FlotillaRecord): I | typeof SKIP;
  init(): A;
  /** Adds one input; `time` (event time) and `seq` (arrival order in the partition) order first/last. */
  add(acc: A, input: I, time: number, seq: number): A;
  merge(into: A, from: A): A;
  result(acc: A): unknown;
  serialize(acc: A, w: StateWriter): void;
  deserialize(r: StateReader): A;
  /** Approximate heap bytes of an accumulator (memory report). */
  approxBytes(acc: A): number;
}

type Numeric = (value: unknown, record: FlotillaRecord) => number;

function numericInput(op: AggregateOp, path: string): Numeric {
  const read = fieldReader(path);
  return (value, record) => {
    const v = read(value);
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    throw new RecordError(
      `${op} needs a finite number in field '${path}', but record ${recordLabel(record)} has ${describeValue(v)}`,
      'window',
    );
  };
}

/** A field value, or SKIP when it is missing or null (first, last and distinct ignore those, like SQL). */
function presentInput(read: FieldReader): (value: unknown) => unknown {
  return (value) => read(value) ?? SKIP;
}

const countAggregate = (name: string, field: string | undefined): Aggregate<number, true> => {
  const read = field === undefined ? undefined : fieldReader(field);
  return {
    name,
    op: 'count',
    input: read ? (value) => (read(value) == null ? SKIP : true) : () => true,
    init: () => 0,
    add: (acc) => acc + 1,
    merge: (into, from) => into + from,
    result: (acc) => acc,
    serialize: (acc, w) => w.f64(acc),
    deserialize: (r) => r.f64(),
    approxBytes: () => 8,
  };
};

const sumAggregate = (name: string, input: Numeric): Aggregate<number[], number> => ({
  name,
  op: 'sum',
  input,
  init: () => [],
  add: (acc, x) => {
    exactAdd(acc, x);
    return acc;
  },
  merge: (into, from) => {
    exactMerge(into, from);
    return into;
  },
  result: exactValue,
  serialize: writePartials,
  deserialize: readPartials,
  approxBytes: (acc) => 32 + 8 * acc.length,
});

function writePartials(partials: number[], w: StateWriter): void {
  w.u32(partials.length);
  for (const p of partials) w.f64(p);
}

function readPartials(r: StateReader): number[] {
  const n = r.u32();
  const partials: number[] = [];
  for (let i = 0; i < n; i++) partials.push(r.f64());
  return partials;
}

const extremeAggregate = (name: string, op: 'min' | 'max', input: Numeric): Aggregate<number, number> => {
  const pick = op === 'min' ? Math.min : Math.max;
  const empty = op === 'min' ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
  return {
    name,
    op,
    input,
    init: () => empty,
    add: (acc, x) => pick(acc, x),
    merge: (into, from) => pick(into, from),
    result: (acc) => (acc === empty ? null : acc),
    serialize: (acc, w) => w.f64(acc),
    deserialize: (r) => r.f64(),
    approxBytes: () => 8,
  };
};

interface Average {
  partials: number[];
  n: number;
}

const avgAggregate = (name: string, input: Numeric): Aggregate<Average, number> => ({
  name,
  op: 'avg',
  input,
  init: () => ({ partials: [], n: 0 }),
  add: (acc, x) => {
    exactAdd(acc.partials, x);
    acc.n++;
    return acc;
  },
  merge: (into, from) => {
    exactMerge(into.partials, from.partials);
    into.n += from.n;
    return into;
  },
  result: (acc) => (acc.n === 0 ? null : exactValue(acc.partials) / acc.n),
  serialize: (acc, w) => {
    writePartials(acc.partials, w);
    w.f64(acc.n);
  },
  deserialize: (r) => ({ partials: readPartials(r), n: r.f64() }),
  approxBytes: (acc) => 56 + 8 * acc.partials.length,
});

/** The value of the earliest (first) or latest (last) record by event time; ties go by arrival order. */
interface Pick {
  time: number;
  seq: number;
  value: unknown;
}

const pickAggregate = (
  name: string,
  op: 'first' | 'last',
  field: string,
): Aggregate<Pick | null, unknown> => {
  const sign = op === 'first' ? -1 : 1;
  // Whether (time, seq) should replace `acc`: earlier for first, later for last.
  const wins = (acc: Pick, time: number, seq: number) =>
    time !== acc.time ? sign * (time - acc.time) > 0 : sign * (seq - acc.seq) > 0;
  const take = (acc: Pick | null, time: number, seq: number, value: unknown): Pick => {
    if (acc === null) return { time, seq, value };
    if (wins(acc, time, seq)) {
      acc.time = time;
      acc.seq = seq;
      acc.value = value;
    }
    return acc;
  };
  return {
    name,
    op,
    input: presentInput(fieldReader(field)),
    init: () => null,
    add: (acc, value, time, seq) => take(acc, time, seq, value),
    merge: (into, from) => (from === null ? into : take(into, from.time, from.seq, from.value)),
    result: (acc) => (acc === null ? null : acc.value),
    serialize: (acc, w) => {
      w.u8(acc === null ? 0 : 1);
      if (acc === null) return;
      w.f64(acc.time);
      w.f64(acc.seq);
      w.str(JSON.stringify(acc.value));
    },
    deserialize: (r) => (r.u8() === 0 ? null : { time: r.f64(), seq: r.f64(), value: JSON.parse(r.str()) }),
    approxBytes: (acc) => 48 + (acc === null ? 0 : JSON.stringify(acc.value).length * 2),
  };
};

/** Distinct values are counted by their string form: strings as they are, other values as JSON. */
function distinctForm(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

const distinctAggregate = (
  name: string,
  field: string,
  precision: number | undefined,
): Aggregate<HyperLogLog, string> => {
  const read = presentInput(fieldReader(field));
  return {
    name,
    op: 'distinct',
    input: (value) => {
      const v = read(value);
      return v === SKIP ? SKIP : distinctForm(v);
    },
    init: () => new HyperLogLog(precision),
    add: (acc, v) => {
      acc.add(v);
      return acc;
    },
    merge: (into, from) => {
      into.merge(from);
      return into;
    },
    result: (acc) => acc.estimate(),
    serialize: (acc, w) => w.bytes(acc.toBuffer()),
    deserialize: (r) => HyperLogLog.fromBuffer(r.bytes()),
    approxBytes: (acc) => acc.approxBytes(),
  };
};

const quantilesAggregate = (
  name: string,
  input: Numeric,
  quantiles: readonly number[],
  relativeAccuracy: number | undefined,
): Aggregate<DDSketch, number> => {
  const names = quantiles.map(quantileName);
  return {
    name,
    op: 'quantiles',
    input,
    init: () => new DDSketch({ relativeAccuracy }),
    add: (acc, x) => {
      acc.add(x);
      return acc;
    },
    merge: (into, from) => {
      into.merge(from);
      return into;
    },
    result: (acc) => {
      const values = acc.quantiles(quantiles);
      const out: Record<string, number | null> = {};
      names.forEach((n, i) => {
        out[n] = values[i] ?? null;
      });
      return out;
    },
    serialize: (acc, w) => w.bytes(acc.toBuffer()),
    deserialize: (r) => DDSketch.fromBuffer(r.bytes()),
    approxBytes: (acc) => acc.approxBytes(),
  };
};

/** Builds the aggregate a config entry describes (the config schema has checked its options). */
export function createAggregate(name: string, c: AggregateConfig): Aggregate {
  const field = c.field as string;
  const numeric = NUMERIC_OPS.has(c.op) ? numericInput(c.op, field) : undefined;
  switch (c.op) {
    case 'count':
      return countAggregate(name, c.field) as Aggregate;
    case 'sum':
      return sumAggregate(name, numeric as Numeric) as Aggregate;
    case 'min':
    case 'max':
      return extremeAggregate(name, c.op, numeric as Numeric) as Aggregate;
    case 'avg':
      return avgAggregate(name, numeric as Numeric) as Aggregate;
    case 'first':
    case 'last':
      return pickAggregate(name, c.op, field) as Aggregate;
    case 'distinct':
      return distinctAggregate(name, field, c.precision) as Aggregate;
    case 'quantiles':
      return quantilesAggregate(
        name,
        numeric as Numeric,
        c.quantiles ?? [],
        c.relative_accuracy,
      ) as Aggregate;
  }
}
