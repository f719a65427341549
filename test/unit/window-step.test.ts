import { describe, expect, it } from 'vitest';
import type { StepContext } from '../../src/core/component.js';
import { ConfigError } from '../../src/core/errors.js';
import type { FlotillaRecord } from '../../src/core/record.js';
import {
  isStatefulStep,
  WindowStateError,
  WindowStep,
  windowStepSchema,
} from '../../src/steps/window/index.js';
import { topologySchema } from '../../src/topology/schema.js';
import { parseAndValidate } from '../../src/topology/validate.js';
import { parseDuration } from '../../src/util/duration.js';

const T0 = Date.UTC(2026, 0, 1);
const S = 1000;

function step(config: Record<string, unknown>, clock?: () => number): WindowStep {
  return new WindowStep(windowStepSchema.parse({ kind: 'window', ...config }), 'topo', clock);
}

function records(partition: number, from: number, values: Record<string, unknown>[]): FlotillaRecord[] {
  return values.map((value, i) => ({
    id: `in/${partition}/${from + i}`,
    key: null,
    value,
    timestamp: 0,
    headers: {},
    source: { topic: 'in', partition, offset: String(from + i) },
  }));
}

interface Dead {
  id: string;
  reason: string;
  message: string;
}

function ctx(partition: number, dead: Dead[] = []): StepContext {
  return {
    topic: 'in',
    partition,
    deadLetter: (r, reason, err) => dead.push({ id: r.id, reason, message: (err as Error).message }),
  };
}

function problems(config: Record<string, unknown>): string[] {
  const parsed = windowStepSchema.safeParse({ kind: 'window', ...config });
  return parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('durations', () => {
  it('reads milliseconds and unit strings, and says what it expected', () => {
    expect(parseDuration(1500)).toBe(1500);
    expect(parseDuration('250')).toBe(250);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('1m')).toBe(60_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('2d')).toBe(172_800_000);
    expect(() => parseDuration('5x')).toThrow(
      /invalid duration '5x': expected milliseconds .* e\.g\. '500ms'/,
    );
    expect(() => parseDuration(-1)).toThrow(/invalid duration -1/);
  });
});

describe('window step config', () => {
  const base = { type: 'tumbling', size: '1m' };

  it('fills defaults', () => {
    const c = windowStepSchema.parse({ kind: 'window', ...base });
    expect(c).toMatchObject({
      size: 60_000,
      group_by: [],
      aggregates: {},
      grace: 0,
      allowed_lateness: 0,
      idle_timeout: 30_000,
      emit: 'on_close',
      late: 'dead_letter',
      time: {},
    });
  });

  it.each([
    [{ type: 'sliding', size: '5m' }, 'slide: a sliding window needs slide'],
    [
      { type: 'sliding', size: '1m', slide: '5m' },
      'slide: slide (300000 ms) must not exceed size (60000 ms)',
    ],
    [
      { type: 'sliding', size: '1h', slide: 7 },
      'slide: size 3600000 ms and slide 7 ms make windows of 3600000 panes',
    ],
    [{ type: 'session' }, 'gap: a session window needs gap'],
    [
      { type: 'session', gap: '1m', size: '1m' },
      'size: size is only for tumbling and sliding windows, not session',
    ],
    [{ ...base, gap: '1m' }, 'gap: gap is only for session windows, not tumbling'],
    [{ ...base, size: 0 }, 'size: size must be a whole number of milliseconds above 0'],
    [{ ...base, size: '1 minute' }, "size: invalid duration '1 minute'"],
    [
      { ...base, aggregates: { total: { op: 'sum' } } },
      'aggregates.total.field: op sum needs a field to read',
    ],
    [
      { ...base, aggregates: { count: { op: 'count' } } },
      "aggregates.count: 'count' is a name every result already has",
    ],
    [
      { ...base, aggregates: { p: { op: 'quantiles', field: 'x' } } },
      'aggregates.p.quantiles: op quantiles needs a list',
    ],
    [
      { ...base, aggregates: { p: { op: 'quantiles', field: 'x', quantiles: [0.5, 0.5] } } },
      'each quantile may be listed once',
    ],
    [
      { ...base, aggregates: { s: { op: 'sum', field: 'x', precision: 12 } } },
      'aggregates.s.precision: precision is only for op distinct',
    ],
    [{ ...base, aggregates: { d: { op: 'distinct', field: 'x', precision: 20 } } }, 'aggregates.d.precision'],
    [{ ...base, group_by: ['a..b'] }, 'group_by.0: a field path'],
  ])('rejects %j: %s', (config, message) => {
    expect(problems(config).join('\n')).toContain(message);
  });

  it('is a registered step kind whose errors name the YAML line and path', () => {
    const yaml = (window: string) => `name: t
source: { kind: embedded, topic: in }
steps:
  - { kind: decode, format: json }
  - ${window}
sinks:
  - { kind: stdout }
`;
    const config = parseAndValidate(
      yaml(
        `{ kind: window, type: sliding, size: 5m, slide: 1m, group_by: [tenant], aggregates: { n: { op: count } } }`,
      ),
      'topo.yaml',
      topologySchema,
      {},
    );
    expect(config.steps[1]).toMatchObject({ kind: 'window', size: 300_000, slide: 60_000 });
    try {
      parseAndValidate(yaml('{ kind: window, type: sliding, size: 5m }'), 'topo.yaml', topologySchema, {});
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(
        /^topo\.yaml:5:\d+: steps\[1\]\.slide: a sliding window needs slide$/m,
      );
    }
  });
});

describe('window step', () => {
  it('builds results with deterministic ids, nested keys, ISO event times and the last source', () => {
    const s = step({
      name: 'per-host',
      type: 'tumbling',
      size: '10s',
      time: { field: 'at.ts' },
      group_by: ['tenant', 'meta.host'],
      aggregates: { mean: { op: 'avg', field: 'v' } },
    });
    const out = s.process(
      records(0, 0, [
        { at: { ts: new Date(T0 + 1 * S).toISOString() }, tenant: 'a', meta: { host: 'h' }, v: 1 },
        { at: { ts: T0 + 2 * S }, tenant: 'a', meta: { host: 'h' }, v: 4 },
        { at: { ts: T0 + 12 * S }, tenant: 'a', meta: { host: 'h' }, v: 0 },
      ]),
      ctx(0),
    );
    expect(out).toEqual([
      {
        id: `topo/per-host/["a","h"]/${T0}/${T0 + 10 * S}`,
        key: '["a","h"]',
        value: {
          window_start: T0,
          window_end: T0 + 10 * S,
          key: { tenant: 'a', 'meta.host': 'h' },
          count: 2,
          mean: 2.5,
        },
        timestamp: T0 + 10 * S,
        headers: {},
        source: { topic: 'in', partition: 0, offset: '1' },
      },
    ]);
    expect(isStatefulStep(s)).toBe(true);
  });

  it('dead-letters malformed and late records with messages that name the field, record and window', () => {
    const s = step({
      type: 'tumbling',
      size: '10s',
      time: { field: 'ts' },
      late: { topic: 'late-readings' },
      aggregates: { total: { op: 'sum', field: 'm.v' } },
    });
    const dead: Dead[] = [];
    s.process(
      records(0, 0, [
        { ts: T0 + 15 * S, m: { v: 1 } },
        { ts: T0 + 16 * S, m: { v: 'high' } },
        { ts: 'yesterday', m: { v: 1 } },
        { ts: T0 + 3 * S, m: { v: 1 } },
      ]),
      ctx(0, dead),
    );
    expect(dead.map((d) => [d.id, d.reason])).toEqual([
      ['in/0/1', 'window'],
      ['in/0/2', 'window'],
      ['in/0/3', 'late'],
    ]);
    expect(dead[0]?.message).toBe(
      `sum needs a finite number in field 'm.v', but record in/0@1 has the string "high"`,
    );
    expect(dead[1]?.message).toMatch(
      /event time field 'ts' of record in\/0@2 is the string "yesterday"; expected/,
    );
    expect(dead[2]?.message).toBe(
      'record in/0@3 with event time 2026-01-01T00:00:03.000Z is late for window [2026-01-01T00:00:00.000Z, ' +
        '2026-01-01T00:00:10.000Z) of key []: the partition watermark is 2026-01-01T00:00:16.000Z and grace 0 ms ' +
        "(late topic 'late-readings')",
    );
    expect(s.lateOutput).toEqual({ topic: 'late-readings' });
  });

  it('closes the windows of an idle partition on tick, at the watermark of the others', () => {
    let now = 0;
    const s = step(
      { type: 'tumbling', size: '10s', time: { field: 'ts' }, idle_timeout: '30s', aggregates: {} },
      () => now,
    );
    const at = (...seconds: number[]) => seconds.map((x) => ({ ts: T0 + x * S }));
    const start = (r: FlotillaRecord) => (r.value as { window_start: number }).window_start - T0;
    // Partition 1's own watermark (25 s) closes [0, 10) and [10, 20); [20, 30) stays open.
    expect(s.process(records(1, 0, at(1, 12, 25)), ctx(1)).map(start)).toEqual([0, 10 * S]);
    s.process(records(0, 0, at(5, 50, 100)), ctx(0));
    expect(s.tick(now)).toEqual([]); // nobody idle yet

    now = 31 * S;
    s.process(records(0, 3, at(101)), ctx(0));
    const closed = s.tick(now);
    // Partition 1 is idle: its watermark rises to partition 0's (101 s), closing [20, 30).
    expect(closed.map((r) => [start(r), r.source.partition])).toEqual([[20 * S, 1]]);
    // A record for a window closed by the tick is late, like any other.
    const dead: Dead[] = [];
    s.process(records(1, 3, at(27)), ctx(1, dead));
    expect(dead.map((d) => d.reason)).toEqual(['late']);

    // When every partition is idle, the ones behind catch up with the most advanced.
    const quiet = step(
      { type: 'tumbling', size: '10s', time: { field: 'ts' }, idle_timeout: '30s' },
      () => now,
    );
    quiet.process(records(0, 0, at(5, 50)), ctx(0));
    expect(quiet.process(records(1, 0, at(1, 12)), ctx(1)).map(start)).toEqual([0]);
    now += 30 * S;
    expect(quiet.tick(now).map((r) => [start(r), r.source.partition])).toEqual([[10 * S, 1]]);
  });

  it.each([
    [
      'tumbling',
      { type: 'tumbling', size: '10s' },
      [
        [0, 10],
        [10, 20],
        [20, 30],
      ],
    ],
    [
      'sliding',
      { type: 'sliding', size: '20s', slide: '10s' },
      [
        [-10, 10],
        [0, 20],
        [10, 30],
        [20, 40],
      ],
    ],
    [
      'session',
      { type: 'session', gap: '5s' },
      [
        [1, 6],
        [12, 17],
        [25, 30],
      ],
    ],
  ])('finish closes every window a %s step holds open, as at the end of a batch job', (_, type, expected) => {
    const s = step({ ...type, time: { field: 'ts' }, grace: '1m', aggregates: {} });
    const at = (...seconds: number[]) => seconds.map((x) => ({ ts: T0 + x * S }));
    // With a minute of grace, nothing closes while the records come in.
    expect(s.process(records(0, 0, at(1, 12, 25)), ctx(0))).toEqual([]);
    const bounds = (r: FlotillaRecord) => {
      const v = r.value as { window_start: number; window_end: number };
      return [(v.window_start - T0) / S, (v.window_end - T0) / S];
    };
    expect(
      s
        .finish()
        .map(bounds)
        .sort((a, b) => (a[0] as number) - (b[0] as number)),
    ).toEqual(expected);
    expect(s.finish()).toEqual([]);
    expect(s.stateStats().openWindowKeys).toBe(0);
  });

  it('reports memory per open window-key and frees closed windows and released partitions', () => {
    const s = step({
      type: 'tumbling',
      size: '10s',
      time: { field: 'ts' },
      group_by: ['k'],
      aggregates: {
        n: { op: 'count' },
        a: { op: 'sum', field: 'v' },
        b: { op: 'sum', field: 'v' },
        users: { op: 'distinct', field: 'u' },
        p: { op: 'quantiles', field: 'v', quantiles: [0.5, 0.99] },
      },
    });
    const rows = Array.from({ length: 400 }, (_, i) => ({
      ts: T0 + (i % 10) * S,
      k: i % 4,
      v: i,
      u: `u${i}`,
    }));
    s.process(records(0, 0, rows), ctx(0));
    s.process(records(1, 0, rows.slice(0, 10)), ctx(1));
    const stats = s.stateStats();
    expect(stats.partitions).toBe(2);
    expect(stats.openWindowKeys).toBe(4 + 4);
    expect(Object.keys(stats.bytesPerWindowKey).sort()).toEqual([
      'base',
      'count',
      'distinct',
      'quantiles',
      'sum',
    ]);
    expect(stats.bytesPerWindowKey.count).toBe(8);
    expect(stats.bytesPerWindowKey.distinct).toBeGreaterThan(100); // 100 values per key: sparse registers
    expect(stats.bytesPerWindowKey.quantiles).toBeGreaterThan(160);
    expect(stats.approxBytes).toBeGreaterThan(8 * (stats.bytesPerWindowKey.base as number));

    s.process(records(0, 400, [{ ts: T0 + 60 * S, k: 0, v: 1, u: 'x' }]), ctx(0));
    expect(s.stateStats().openWindowKeys).toBe(1 + 4);
    s.releasePartition(1);
    expect(s.stateStats()).toMatchObject({ partitions: 1, openWindowKeys: 1 });
  });

  it('refuses to restore state written by another configuration', () => {
    const config = {
      type: 'tumbling',
      size: '10s',
      time: { field: 'ts' },
      aggregates: { n: { op: 'count' } },
    };
    const a = step(config);
    a.process(records(0, 0, [{ ts: T0 }]), ctx(0));
    const entries = a.snapshot(0);
    expect(entries.map((e) => e.key)).toEqual(['k/[]', 'meta']);
    expect(() => step({ ...config, size: '20s' }).restore(0, entries)).toThrow(WindowStateError);
    expect(() => step({ ...config, size: '20s' }).restore(0, entries)).toThrow(/another configuration/);
    // State in a format this build does not read (another version of Flotilla).
    const otherFormat = entries.map((e) =>
      e.key === 'meta' && e.value
        ? { key: e.key, value: Buffer.concat([Buffer.from([99]), e.value.subarray(1)]) }
        : e,
    );
    expect(() => step(config).restore(0, otherFormat)).toThrow(
      /state format 99; this version of Flotilla reads format 1/,
    );
    // The same configuration restores, and the next snapshot holds only what changed.
    const b = step(config);
    b.restore(0, entries);
    b.process(records(0, 1, [{ ts: T0 + 11 * S }]), ctx(0));
    // One entry per group key: its pane of T0 closed and one of T0 + 10 s opened.
    expect(b.snapshot(0).map((e) => [e.key, e.value === null])).toEqual([
      ['k/[]', false],
      ['meta', false],
    ]);
  });
});
