import { describe, expect, it } from 'vitest';
import type { StepContext } from '../../src/core/component.js';
import type { FlotillaRecord } from '../../src/core/record.js';
import { hllStandardError } from '../../src/sketch/hyperloglog.js';
import { seededRandom } from '../../src/sources/synthetic.js';
import { type WindowStepConfig, windowStepSchema } from '../../src/steps/window/config.js';
import { exactAdd, exactValue } from '../../src/steps/window/exact-sum.js';
import type { StateEntry } from '../../src/steps/window/stateful-step.js';
import { WindowStep } from '../../src/steps/window/window-step.js';

/*
 * The oracle: random records (out of order, some late, some malformed) over several partitions go
 * through the step in batches of random sizes; the results must equal a plain batch GROUP BY of
 * the same records, computed here from scratch, minus the records the step reported late (and
 * every record the definition makes late must be reported).
 */

const TOPIC = 'in';
const PARTITIONS = 3;
const SECOND = 1000;
const QUANTILES = [0.5, 0.95, 0.99];
const HLL_PRECISION = 12;
const ALPHA = 0.01;

interface Input {
  partition: number;
  /** Position in its partition (= offset, = arrival order). */
  index: number;
  /** Event time; undefined for a record whose time field is unreadable. */
  time: number | undefined;
  /** The value field is missing or not a number: the step must dead-letter it (reason window). */
  badField: boolean;
  key: string;
  record: FlotillaRecord;
}

const TENANTS = ['acme', 'globex', 'initech'];
const HOSTS = ['h1', 'h2', undefined];

/** Group keys, each living in one partition, as when the topic is keyed by the group-by fields. */
const GROUPS = TENANTS.flatMap((tenant) => HOSTS.map((host) => ({ tenant, host })));
const partitionOf = (g: number) => g % PARTITIONS;

function generate(seed: number, perPartition: number): Input[][] {
  const rnd = seededRandom(seed);
  // Coarse event times in half the seeds: ties (first/last by arrival) and watermarks landing
  // exactly on window ends + grace.
  const grain = seed % 2 === 0 ? 250 : 1;
  const streams: Input[][] = Array.from({ length: PARTITIONS }, () => []);
  const cursors = Array.from(
    { length: PARTITIONS },
    () => Date.UTC(2026, 0, 1) + Math.floor(rnd() * 10 * SECOND),
  );
  for (let n = 0; n < perPartition * PARTITIONS; n++) {
    const g = Math.floor(rnd() * GROUPS.length);
    const p = partitionOf(g);
    const stream = streams[p] as Input[];
    if (stream.length >= perPartition * 1.5) continue;
    const { tenant, host } = GROUPS[g] as { tenant: string; host: string | undefined };
    cursors[p] = (cursors[p] as number) + Math.floor(rnd() * 700);
    const u = rnd();
    // Mostly small disorder, some records a few seconds back, a few far behind.
    const back = u < 0.75 ? rnd() * 1500 : u < 0.95 ? rnd() * 8 * SECOND : rnd() * 40 * SECOND;
    const time = Math.round(((cursors[p] as number) - back) / grain) * grain;
    const v = rnd() < 0.5 ? Math.round((rnd() * 200 - 100) * 100) / 100 : Math.floor(rnd() * 1000);
    const value: Record<string, unknown> = {
      ts: rnd() < 0.3 ? new Date(time).toISOString() : time,
      tenant,
      meta: host === undefined ? {} : { host },
      m: { v },
      user: `u${Math.floor(rnd() * 150)}`,
    };
    if (rnd() < 0.85) value.tag = `t${n}`;
    let badField = false;
    let badTime = false;
    const fault = rnd();
    if (fault < 0.01) {
      value.m = { v: 'n/a' };
      badField = true;
    } else if (fault < 0.02) {
      value.m = {};
      badField = true;
    } else if (fault < 0.03) {
      value.ts = 'soon';
      badTime = true;
    }
    const index = stream.length;
    stream.push({
      partition: p,
      index,
      time: badTime ? undefined : time,
      badField,
      key: JSON.stringify([tenant, host ?? null]),
      record: {
        id: `${TOPIC}/${p}/${index}`,
        key: null,
        value,
        timestamp: 0,
        headers: {},
        source: { topic: TOPIC, partition: p, offset: String(index) },
      },
    });
  }
  return streams;
}

/** One record per partition far in the future, under its own key: it closes every window before it. */
function withSentinels(streams: Input[][]): Input[][] {
  return streams.map((stream, p) => {
    const last = Math.max(...stream.map((i) => i.time ?? 0));
    const time = last + 86_400_000;
    const index = stream.length;
    const record: FlotillaRecord = {
      id: `${TOPIC}/${p}/${index}`,
      key: null,
      value: { ts: time, tenant: '~end', meta: {}, m: { v: 0 }, user: 'u', tag: 'end' },
      timestamp: 0,
      headers: {},
      source: { topic: TOPIC, partition: p, offset: String(index) },
    };
    return [...stream, { partition: p, index, time, badField: false, key: '["~end",null]', record }];
  });
}

type Shape =
  | { type: 'tumbling'; size: number }
  | { type: 'sliding'; size: number; slide: number }
  | { type: 'session'; gap: number };

interface Options {
  shape: Shape;
  grace: number;
  lateness: number;
  emit: 'on_close' | 'on_update';
}

function stepConfig(o: Options): WindowStepConfig {
  const ms = (n: number) => (n % SECOND === 0 ? `${n / SECOND}s` : n);
  const shape =
    o.shape.type === 'tumbling'
      ? { size: ms(o.shape.size) }
      : o.shape.type === 'sliding'
        ? { size: ms(o.shape.size), slide: ms(o.shape.slide) }
        : { gap: ms(o.shape.gap) };
  return windowStepSchema.parse({
    kind: 'window',
    name: 'w',
    type: o.shape.type,
    ...shape,
    time: { field: 'ts' },
    group_by: ['tenant', 'meta.host'],
    aggregates: {
      tagged: { op: 'count', field: 'tag' },
      total: { op: 'sum', field: 'm.v' },
      lo: { op: 'min', field: 'm.v' },
      hi: { op: 'max', field: 'm.v' },
      mean: { op: 'avg', field: 'm.v' },
      first_tag: { op: 'first', field: 'tag' },
      last_tag: { op: 'last', field: 'tag' },
      users: { op: 'distinct', field: 'user', precision: HLL_PRECISION },
      spread: { op: 'quantiles', field: 'm.v', quantiles: QUANTILES },
    },
    grace: o.grace,
    allowed_lateness: o.lateness,
    idle_timeout: '1h',
    emit: o.emit,
  });
}

interface Run {
  results: FlotillaRecord[];
  /** Reason per dead-lettered record id. */
  dead: Map<string, string>;
}

interface Batch {
  partition: number;
  inputs: Input[];
}

/** Cuts the partition streams into batches of random sizes, interleaving partitions at random. */
function batches(streams: Input[][], rnd: () => number): Batch[] {
  const at = streams.map(() => 0);
  const out: Batch[] = [];
  for (;;) {
    const open = streams.map((s, p) => ((at[p] as number) < s.length ? p : -1)).filter((p) => p >= 0);
    if (open.length === 0) return out;
    const p = open[Math.floor(rnd() * open.length)] as number;
    const n = 1 + Math.floor(rnd() * (rnd() < 0.2 ? 120 : 25));
    const from = at[p] as number;
    out.push({ partition: p, inputs: (streams[p] as Input[]).slice(from, from + n) });
    at[p] = from + n;
  }
}

function context(partition: number, dead: Map<string, string>): StepContext {
  return {
    topic: TOPIC,
    partition,
    deadLetter: (record, reason) => {
      expect(dead.has(record.id), `${record.id} dead-lettered twice`).toBe(false);
      dead.set(record.id, reason);
    },
  };
}

function feed(step: WindowStep, list: Batch[], run: Run, afterBatch?: (b: Batch) => void): void {
  for (const b of list) {
    run.results.push(
      ...step.process(
        b.inputs.map((i) => i.record),
        context(b.partition, run.dead),
      ),
    );
    afterBatch?.(b);
  }
}

// ---- the oracle ----------------------------------------------------------------------------

interface Expected {
  key: string;
  start: number;
  end: number;
  inputs: Input[];
}

/** Per input: the partition watermark just before it (the step's lateness is judged on it). */
function watermarksBefore(streams: Input[][], lateness: number): Map<Input, number> {
  const out = new Map<Input, number>();
  for (const stream of streams) {
    let wm = Number.NEGATIVE_INFINITY;
    for (const i of stream) {
      out.set(i, wm);
      if (i.time !== undefined) wm = Math.max(wm, i.time - lateness);
    }
  }
  return out;
}

const idOf = (key: string, start: number, end: number) => `t/w/${key}/${start}/${end}`;

/** Tumbling and sliding: a record counts in each window holding it that was open when it came. */
function expectedPanes(
  streams: Input[][],
  o: Options,
  wmBefore: Map<Input, number>,
): { windows: Map<string, Expected>; late: Set<string> } {
  const shape = o.shape as { size: number; slide?: number };
  const size = shape.size;
  const slide = shape.slide ?? size;
  const windows = new Map<string, Expected>();
  const late = new Set<string>();
  for (const stream of streams) {
    for (const i of stream) {
      if (i.time === undefined || i.badField) continue;
      let counted = false;
      for (let s = Math.floor(i.time / slide) * slide; s > i.time - size; s -= slide) {
        if (s + size + o.grace <= (wmBefore.get(i) as number)) continue;
        counted = true;
        const id = idOf(i.key, s, s + size);
        let w = windows.get(id);
        if (!w) {
          w = { key: i.key, start: s, end: s + size, inputs: [] };
          windows.set(id, w);
        }
        w.inputs.push(i);
      }
      if (!counted) late.add(i.record.id);
    }
  }
  return { windows, late };
}

/** Sessions of the records the step accepted, by plain sorting: a gap of `gap` or more splits. */
function expectedSessions(
  streams: Input[][],
  gap: number,
  accepted: (i: Input) => boolean,
): Map<string, Expected> {
  const byKey = new Map<string, Input[]>();
  for (const stream of streams) {
    for (const i of stream) {
      if (i.time === undefined || i.badField || !accepted(i)) continue;
      const list = byKey.get(i.key) ?? [];
      list.push(i);
      byKey.set(i.key, list);
    }
  }
  const windows = new Map<string, Expected>();
  for (const [key, list] of byKey) {
    list.sort((a, b) => (a.time as number) - (b.time as number));
    let current: Input[] = [];
    const flush = () => {
      if (current.length === 0) return;
      const start = current[0]?.time as number;
      const end = (current.at(-1)?.time as number) + gap;
      windows.set(idOf(key, start, end), { key, start, end, inputs: current });
      current = [];
    };
    for (const i of list) {
      if (current.length > 0 && (i.time as number) >= (current.at(-1)?.time as number) + gap) flush();
      current.push(i);
    }
    flush();
  }
  return windows;
}

const SCALE = 2 ** 64;
/** The exactly rounded sum, by integer arithmetic (test values have at most 2 decimals, |v| < 1000). */
function exactSum(values: number[]): number {
  let total = 0n;
  for (const v of values) {
    if (!Number.isInteger(v * SCALE)) throw new Error(`${v} has more bits than the oracle sums exactly`);
    total += BigInt(v * SCALE);
  }
  return Number(total) / SCALE;
}

function expectedValue(w: Expected): Record<string, unknown> {
  const values = w.inputs.map((i) => (i.record.value as { m: { v: number } }).m.v);
  const tagged = w.inputs.filter((i) => (i.record.value as { tag?: string }).tag !== undefined);
  const order = (a: Input, b: Input) => (a.time as number) - (b.time as number) || a.index - b.index;
  tagged.sort(order);
  const [tenant, host] = JSON.parse(w.key) as [string, string | null];
  return {
    window_start: w.start,
    window_end: w.end,
    key: { tenant, 'meta.host': host },
    count: w.inputs.length,
    tagged: tagged.length,
    total: exactSum(values),
    lo: Math.min(...values),
    hi: Math.max(...values),
    mean: exactSum(values) / values.length,
    first_tag: (tagged[0]?.record.value as { tag?: string } | undefined)?.tag ?? null,
    last_tag: (tagged.at(-1)?.record.value as { tag?: string } | undefined)?.tag ?? null,
  };
}

function checkResult(w: Expected, got: Record<string, unknown>): void {
  const exact = expectedValue(w);
  const { users, spread, revision: _, ...rest } = got;
  expect(rest).toEqual(exact);
  const distinct = new Set(w.inputs.map((i) => (i.record.value as { user: string }).user)).size;
  // 3 standard errors; plus 2 for sets far smaller than the 2^p registers, whose error is the
  // few colliding pairs of hashes (Poisson, mean n^2 / 2^(p+1)) and the rounding.
  expect(Math.abs((users as number) - distinct)).toBeLessThanOrEqual(
    3 * hllStandardError(HLL_PRECISION) * distinct + 2,
  );
  const sorted = w.inputs.map((i) => (i.record.value as { m: { v: number } }).m.v).sort((a, b) => a - b);
  for (const q of QUANTILES) {
    const truth = sorted[Math.floor(q * (sorted.length - 1))] as number;
    const est = (spread as Record<string, number>)[`p${q * 100}`] as number;
    expect(Math.abs(est - truth), `p${q * 100}`).toBeLessThanOrEqual(ALPHA * Math.abs(truth) * (1 + 1e-9));
  }
}

/** The latest value per id (tombstones delete), checking on_update revisions go up. */
function latestById(results: FlotillaRecord[], o: Options): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  const revisions = new Map<string, number>();
  for (const r of results) {
    if (r.id.includes('~end')) continue;
    if (r.value === null) {
      expect(out.has(r.id), `tombstone for ${r.id} which is not there`).toBe(true);
      out.delete(r.id);
      continue;
    }
    const value = r.value as Record<string, unknown>;
    expect(r.key).toBe(r.id.split('/')[2]);
    expect(r.timestamp).toBe(value.window_end);
    if (o.emit === 'on_close') {
      expect(out.has(r.id), `${r.id} emitted twice`).toBe(false);
      expect(value.revision).toBeUndefined();
    } else {
      // 1, 2, 3... per window; a session carries its count on when it merges or grows (new id).
      const revision = value.revision as number;
      const previous = revisions.get(r.id) ?? 0;
      if (o.shape.type === 'session') expect(revision).toBeGreaterThan(previous);
      else expect(revision).toBe(previous + 1);
      revisions.set(r.id, revision);
    }
    out.set(r.id, value);
  }
  return out;
}

/** Compares a run with the oracle; returns how many windows and late records it checked. */
function checkAgainstOracle(streams: Input[][], o: Options, run: Run): { windows: number; late: number } {
  const wmBefore = watermarksBefore(streams, o.lateness);
  const inputs = streams.flat();
  const malformed = inputs.filter((i) => i.time === undefined || i.badField).map((i) => i.record.id);
  expect(
    [...run.dead]
      .filter(([, reason]) => reason !== 'late')
      .map(([id]) => id)
      .sort(),
  ).toEqual(malformed.sort());
  expect([...run.dead.values()].every((reason) => reason === 'late' || reason === 'window')).toBe(true);
  const reportedLate = (i: Input) => run.dead.get(i.record.id) === 'late';
  let windows: Map<string, Expected>;
  if (o.shape.type === 'session') {
    const gap = o.shape.gap;
    windows = expectedSessions(streams, gap, (i) => !reportedLate(i));
    const sessionsOf = new Map<string, Expected[]>();
    for (const w of windows.values()) sessionsOf.set(w.key, [...(sessionsOf.get(w.key) ?? []), w]);
    for (const w of windows.values()) {
      // Accepted: its session was still open when it came.
      for (const i of w.inputs) expect(w.end + o.grace).toBeGreaterThan(wmBefore.get(i) as number);
    }
    for (const i of inputs.filter(reportedLate)) {
      // Late: its own session was closed, or it would have reached into one already closed.
      const wm = wmBefore.get(i) as number;
      const t = i.time as number;
      const ownLate = t + gap + o.grace <= wm;
      const sessions = sessionsOf.get(i.key) ?? [];
      const touchesClosed = sessions.some((s) => s.start < t + gap && s.end > t && s.end + o.grace <= wm);
      expect(ownLate || touchesClosed, `${i.record.id} reported late at t=${t}, watermark ${wm}`).toBe(true);
      // Not late if it fell within the span of a session open when it came: two records of that
      // session, there before it and less than a gap apart, on either side of it.
      const withinOpen = sessions.some((s) => {
        if (s.end + o.grace <= wm) return false;
        const before = s.inputs.filter((x) => x.index < i.index).map((x) => x.time as number);
        const below = Math.max(...before.filter((x) => x <= t));
        const above = Math.min(...before.filter((x) => x >= t));
        return above - below < gap;
      });
      expect(withinOpen, `${i.record.id} at t=${t} was within an open session`).toBe(false);
    }
  } else {
    const expected = expectedPanes(streams, o, wmBefore);
    windows = expected.windows;
    const late = new Set(inputs.filter(reportedLate).map((i) => i.record.id));
    expect([...late].sort()).toEqual([...expected.late].sort());
  }
  for (const id of [...windows.keys()]) if (id.includes('~end')) windows.delete(id);
  const got = latestById(run.results, o);
  expect([...got.keys()].sort()).toEqual([...windows.keys()].sort());
  for (const [id, w] of windows) checkResult(w, got.get(id) as Record<string, unknown>);
  return { windows: windows.size, late: inputs.filter(reportedLate).length };
}

// ---- the runs ------------------------------------------------------------------------------

const SEEDS = Array.from({ length: 30 }, (_, i) => i + 1);

function optionsFor(seed: number, type: Shape['type'], emit: Options['emit']): Options {
  const rnd = seededRandom(seed * 31 + type.length);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const shape: Shape =
    type === 'tumbling'
      ? { type, size: pick([5, 10, 30]) * SECOND }
      : type === 'sliding'
        ? pick([
            { type, size: 15 * SECOND, slide: 5 * SECOND },
            { type, size: 10 * SECOND, slide: 4 * SECOND }, // panes of gcd = 2 s
            { type, size: 12 * SECOND, slide: 12 * SECOND },
          ])
        : { type, gap: pick([1500, 3 * SECOND, 6 * SECOND]) };
  return { shape, grace: pick([0, 1000, 4000]), lateness: pick([0, 0, 2000]), emit };
}

function runWhole(streams: Input[][], o: Options, seed: number): Run {
  const run: Run = { results: [], dead: new Map() };
  feed(new WindowStep(stepConfig(o), 't'), batches(streams, seededRandom(seed)), run);
  return run;
}

describe.each(['tumbling', 'sliding', 'session'] as const)('%s windows against a batch GROUP BY', (type) => {
  it.each(['on_close', 'on_update'] as const)('%s, 30 seeds', (emit) => {
    let windows = 0;
    let late = 0;
    for (const seed of SEEDS) {
      const streams = withSentinels(generate(seed, 150));
      const o = optionsFor(seed, type, emit);
      const checked = checkAgainstOracle(streams, o, runWhole(streams, o, seed));
      windows += checked.windows;
      late += checked.late;
    }
    // The data must exercise the oracle: many windows and a fair share of late records.
    expect(windows).toBeGreaterThan(300);
    expect(late).toBeGreaterThan(30);
  });
});

describe('checkpoint and restore', () => {
  it.each(['tumbling', 'sliding', 'session'] as const)(
    '%s: a run cut anywhere, snapshotted, restored into a fresh step (with replay) equals the uncut run',
    (type) => {
      for (const seed of SEEDS.slice(0, 12)) {
        const emit = seed % 2 === 0 ? 'on_update' : 'on_close';
        const o = optionsFor(seed, type, emit);
        const streams = withSentinels(generate(seed, 150));
        const list = batches(streams, seededRandom(seed));
        const whole = runWhole(streams, o, seed);

        const cut = 1 + Math.floor(seededRandom(seed * 7)() * (list.length - 2));
        const changelog = new Map<number, StateEntry[]>();
        const checkpoint = (step: WindowStep) => (b: Batch) => {
          const log = changelog.get(b.partition) ?? [];
          log.push(...step.snapshot(b.partition));
          changelog.set(b.partition, log);
        };
        const run: Run = { results: [], dead: new Map() };
        const first = new WindowStep(stepConfig(o), 't');
        feed(first, list.slice(0, cut), run, checkpoint(first));
        const second = new WindowStep(stepConfig(o), 't');
        for (const [p, log] of changelog) second.restore(p, log);
        // The source re-delivers the last batch of each partition (its commit was lost): skipped.
        const replay = list
          .slice(0, cut)
          .reverse()
          .filter((b, i, all) => all.findIndex((x) => x.partition === b.partition) === i);
        feed(second, [...replay, ...list.slice(cut)], run, checkpoint(second));

        // Closed windows leave nothing behind: the compacted changelog holds only the sentinels' state.
        for (const log of changelog.values()) {
          const compacted = new Map(log.map((e) => [e.key, e.value]));
          const live = [...compacted].filter(([key, value]) => value !== null && key !== 'meta');
          expect(live.map(([key]) => key).every((key) => key.includes('~end'))).toBe(true);
        }
        expect(latestById(run.results, o)).toEqual(latestById(whole.results, o));
        expect(run.dead).toEqual(whole.dead);
        checkAgainstOracle(streams, o, run);
      }
    },
  );
});

describe('exact sums', () => {
  it('give the correctly rounded sum whatever the order', () => {
    const rnd = seededRandom(3);
    for (let k = 0; k < 200; k++) {
      const values = Array.from(
        { length: 1 + Math.floor(rnd() * 50) },
        () => Math.round((rnd() - 0.5) * 1e7) / 100,
      );
      const forward: number[] = [];
      const backward: number[] = [];
      for (const v of values) exactAdd(forward, v);
      for (const v of [...values].reverse()) exactAdd(backward, v);
      expect(exactValue(forward)).toBe(exactSum(values));
      expect(exactValue(backward)).toBe(exactSum(values));
    }
    // Plain addition gets this wrong; the exact sum does not.
    const tricky = [0.1, 0.2, 0.3, -0.6, 1e16, 1, -1e16];
    const partials: number[] = [];
    for (const v of tricky) exactAdd(partials, v);
    expect(tricky.reduce((a, b) => a + b, 0)).toBe(0);
    expect(exactValue(partials)).toBe(1);
  });
});
