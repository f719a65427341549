import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import type { ComponentContext, StepContext } from '../../src/core/component.js';
import { ConfigError } from '../../src/core/errors.js';
import type { FlotillaRecord } from '../../src/core/record.js';
import { registry } from '../../src/observability/metrics.js';
import { embeddedLog } from '../../src/sources/embedded-log.js';
import { seededRandom } from '../../src/sources/synthetic.js';
import { DedupeTable } from '../../src/steps/quality/dedupe.js';
import { QualityError, QualityStep } from '../../src/steps/quality/index.js';
import { qualityStepSchema } from '../../src/steps/quality/schema.js';
import { loadTopology } from '../../src/topology/load.js';
import { runToEnd } from '../support/embedded.js';

const NOW = Date.UTC(2024, 0, 1, 12, 0, 0);
const logger = pino({ level: 'silent' });

function makeStep(config: Record<string, unknown>, topology = 'quality-test', now = NOW): QualityStep {
  const ctx: ComponentContext = { topology, group: `flotilla-${topology}`, baseDir: '.', logger };
  return new QualityStep(qualityStepSchema.parse({ kind: 'quality', ...config }), ctx, { now: () => now });
}

let nextOffset = 0;
function record(value: unknown, opts: { partition?: number; timestamp?: number } = {}): FlotillaRecord {
  const offset = String(nextOffset++);
  const source = { topic: 'in', partition: opts.partition ?? 0, offset };
  return {
    id: `in/${source.partition}/${offset}`,
    key: null,
    value,
    timestamp: opts.timestamp ?? NOW,
    headers: {},
    source,
  };
}

interface Dead {
  record: FlotillaRecord;
  reason: string;
  error: unknown;
}

/** Runs one batch of values through the step on one partition. */
function run(step: QualityStep, values: unknown[], partition = 0): { out: FlotillaRecord[]; dead: Dead[] } {
  const dead: Dead[] = [];
  const ctx: StepContext = {
    topic: 'in',
    partition,
    deadLetter: (r, reason, error) => dead.push({ record: r, reason, error }),
  };
  const out = step.process(
    values.map((v) => record(v, { partition })),
    ctx,
  ) as FlotillaRecord[];
  return { out, dead };
}

function messageOf(d: Dead | undefined): string | undefined {
  return (d?.error as Error | undefined)?.message;
}

/** The failure message of a single value under a single rule; null when it passes. */
function failureOf(
  rule: Record<string, unknown>,
  value: unknown,
  config: Record<string, unknown> = {},
): string | null | undefined {
  const { out, dead } = run(makeStep({ rules: [rule], ...config }), [value]);
  if (out.length === 1) return null;
  expect(dead).toHaveLength(1);
  return messageOf(dead[0]);
}

/** The `_quality` tag of a record that flowed on. */
function qualityOf(r: FlotillaRecord | undefined): unknown {
  return (r?.value as Record<string, unknown> | undefined)?._quality;
}

async function counterValue(name: string, labels: Record<string, string>): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const hit = values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return hit?.value ?? 0;
}

describe('quality rules', () => {
  it.each([
    [
      'required',
      { kind: 'required', fields: ['ts', 'host'] },
      { ts: 1, host: 'a' },
      { ts: 1, host: null },
      'required:ts,host (missing host)',
    ],
    [
      'range',
      { kind: 'range', field: 'v', min: 0, max: 100 },
      { v: 100 },
      { v: 100.5 },
      'range:v (v: 100.5 is above max 100)',
    ],
    [
      'range (min)',
      { kind: 'range', field: 'v', min: 0 },
      { v: 0 },
      { v: -1 },
      'range:v (v: -1 is below min 0)',
    ],
    [
      'range (not a number)',
      { kind: 'range', field: 'v', max: 1 },
      { v: 1 },
      { v: '1' },
      "range:v (v: expected a number, found '1')",
    ],
    [
      'range (NaN, e.g. from a code step)',
      { kind: 'range', field: 'v', min: 0, max: 1 },
      { v: 0.5 },
      { v: Number.NaN },
      'range:v (v: expected a number, found NaN)',
    ],
    [
      'enum',
      { kind: 'enum', field: 'm', values: ['cpu', 'mem'] },
      { m: 'cpu' },
      { m: 'gpu' },
      "enum:m (m: 'gpu' is not one of cpu, mem)",
    ],
    [
      'enum (strict)',
      { kind: 'enum', field: 'n', values: [1, 2] },
      { n: 2 },
      { n: '2' },
      "enum:n (n: '2' is not one of 1, 2)",
    ],
    [
      'pattern',
      { kind: 'pattern', field: 'host', regex: '^host-\\d+$' },
      { host: 'host-12' },
      { host: 'host-x' },
      "pattern:host (host: 'host-x' does not match /^host-\\d+$/)",
    ],
    [
      'pattern (flags)',
      { kind: 'pattern', field: 'host', regex: '^HOST', flags: 'i' },
      { host: 'host-1' },
      { host: 'web-1' },
      "pattern:host (host: 'web-1' does not match /^HOST/i)",
    ],
    [
      'length',
      { kind: 'length', field: 's', min: 2, max: 3 },
      { s: 'abc' },
      { s: 'abcd' },
      'length:s (s: 4 characters, more than max 3)',
    ],
    [
      'length (min)',
      { kind: 'length', field: 's', min: 2 },
      { s: 'ab' },
      { s: 'a' },
      'length:s (s: 1 characters, fewer than min 2)',
    ],
    [
      'freshness',
      { kind: 'freshness', max_age: '5m' },
      { ts: NOW - 299_000 },
      { ts: NOW - 301_000 },
      'freshness (event time is 301s behind the wall clock (max_age 300s))',
    ],
    [
      'clock_skew',
      { kind: 'clock_skew', max_ahead: '30s' },
      { ts: new Date(NOW + 30_000).toISOString() },
      { ts: new Date(NOW + 45_500).toISOString() },
      'clock_skew (event time is 45.5s ahead of the wall clock (max_ahead 30s))',
    ],
    [
      'check',
      { kind: 'check', expr: 'value.min <= value.max' },
      { min: 1, max: 2 },
      { min: 3, max: 2 },
      'check:value.min <= value.max (value.min <= value.max is false)',
    ],
  ])(
    '%s: passes a good record and fails a bad one with the rule and why',
    (_kind, rule, good, bad, expected) => {
      const config = { event_time: 'ts' };
      expect(failureOf(rule, good, config)).toBeNull();
      expect(failureOf(rule, bad, config)).toBe(`failed quality rules: ${expected}`);
    },
  );

  it.each([
    ['string', 'a', 1],
    ['number', 1.5, '1.5'],
    ['integer', 2, 2.5],
    ['boolean', false, 'false'],
    ['object', { a: 1 }, [1]],
    ['array', [1], { 0: 1 }],
    ['timestamp', '2024-01-01T00:00:00Z', '2024-01-01T00:00:00'],
    ['timestamp', 1_700_000_000_000, 'yesterday'],
  ])('type %s accepts %j and rejects %j', (type, good, bad) => {
    const rule = { kind: 'type', field: 'f', type };
    expect(failureOf(rule, { f: good })).toBeNull();
    expect(failureOf(rule, { f: bad })).toMatch(
      new RegExp(`^failed quality rules: type:f \\(f: expected ${type}, found `),
    );
  });

  it('leaves absence to `required`: value rules skip a missing or null field', () => {
    const step = makeStep({
      rules: [
        { kind: 'type', field: 'a', type: 'number' },
        { kind: 'range', field: 'a', min: 0 },
        { kind: 'pattern', field: 'b.c', regex: 'x' },
      ],
      tag_all: true,
    });
    const { out } = run(step, [{ a: null }]);
    expect(qualityOf(out[0])).toEqual({
      passed: true,
      failed: [],
      score: 1,
    });
  });

  it('reads nested field paths and array indexes', () => {
    const rule = { kind: 'range', field: 'geo.points.1', max: 10 };
    expect(failureOf(rule, { geo: { points: [99, 5] } })).toBeNull();
    expect(failureOf(rule, { geo: { points: [0, 11] } })).toBe(
      'failed quality rules: range:geo.points.1 (geo.points.1: 11 is above max 10)',
    );
  });

  it('fails freshness on an event time that is not a timestamp, and uses the record timestamp by default', () => {
    expect(failureOf({ kind: 'freshness', max_age: '1m' }, { ts: 'soon' }, { event_time: 'ts' })).toBe(
      "failed quality rules: freshness (event time 'soon' is not a timestamp)",
    );
    const step = makeStep({ rules: [{ kind: 'freshness', max_age: '1m' }] });
    const dead: Dead[] = [];
    const ctx: StepContext = {
      topic: 'in',
      partition: 0,
      deadLetter: (r, reason, error) => dead.push({ record: r, reason, error }),
    };
    const out = step.process(
      [record({}, { timestamp: NOW - 30_000 }), record({}, { timestamp: NOW - 90_000 })],
      ctx,
    );
    expect(out).toHaveLength(1);
    expect(dead).toHaveLength(1);
  });

  it('fails a check whose expression errors at runtime, naming the error', () => {
    const message = failureOf({ kind: 'check', name: 'sane', expr: 'value.a - 1 > 0' }, { a: 'x' });
    expect(message).toMatch(/^failed quality rules: sane \(.*'-'.*string/);
  });

  it('dead-letters a value that is not a decoded object', () => {
    const { out, dead } = run(makeStep({ rules: [{ kind: 'required', fields: ['a'] }] }), [
      Buffer.from('{}'),
    ]);
    expect(out).toHaveLength(0);
    expect(dead[0]?.reason).toBe('quality');
    expect(messageOf(dead[0])).toMatch(
      /expected an object value to check, found bytes \(put a decode step before quality\)/,
    );
  });
});

describe('quality actions, verdicts and scores', () => {
  const rules = [
    { kind: 'required', fields: ['id'], name: 'has_id' },
    { kind: 'range', field: 'v', max: 10, name: 'v_small', action: 'tag' },
    { kind: 'enum', field: 'env', values: ['prod'], name: 'prod_only', action: 'drop' },
    { kind: 'check', expr: 'value.v != 7', name: 'not_seven' },
  ];

  it('dead-letters with reason quality and every failed rule in the message, tags, and drops', () => {
    const step = makeStep({ rules });
    const { out, dead } = run(step, [
      { id: 1, v: 1, env: 'prod' }, // passes
      { id: 2, v: 11, env: 'prod' }, // tag only → flows on, tagged
      { v: 7, env: 'prod' }, // has_id and not_seven → dead letter
      { id: 4, v: 11, env: 'test' }, // drop wins over tag
      { v: 7, env: 'test' }, // drop wins over dead_letter
    ]);
    expect(out.map((r) => (r.value as { id: number }).id)).toEqual([1, 2]);
    expect(qualityOf(out[0])).toBeUndefined();
    expect(qualityOf(out[1])).toEqual({
      passed: false,
      failed: ['v_small'],
      score: 0.75,
    });
    expect(dead).toHaveLength(1);
    expect(dead[0]?.reason).toBe('quality');
    const error = dead[0]?.error as QualityError;
    expect(error).toBeInstanceOf(QualityError);
    expect(error.message).toBe(
      'failed quality rules: has_id (missing id); not_seven (value.v != 7 is false)',
    );
    expect(error.verdict).toEqual({ passed: false, failed: ['has_id', 'not_seven'], score: 0.5 });
  });

  it('does not change the records it tags in place', () => {
    const step = makeStep({ rules, tag_all: true, tag_field: 'dq' });
    const value = { id: 1, v: 1, env: 'prod' };
    const { out } = run(step, [value]);
    expect(out[0]?.value).toEqual({ ...value, dq: { passed: true, failed: [], score: 1 } });
    expect(value).not.toHaveProperty('dq');
  });

  it('weights the score and leaves rules that do not apply out of it', () => {
    const step = makeStep({
      rules: [
        { kind: 'required', fields: ['a'], weight: 3, action: 'tag' },
        { kind: 'range', field: 'b', max: 0, weight: 1, action: 'tag' },
        { kind: 'range', field: 'c', max: 0, weight: 5, action: 'tag' },
      ],
    });
    const { out } = run(step, [{ a: 1, b: 1 }]);
    expect(qualityOf(out[0])).toEqual({
      passed: false,
      failed: ['range:b'],
      score: 0.75,
    });
  });

  it('applies a conditional range only where `when` holds (ranges per metric)', () => {
    const step = makeStep({
      rules: [
        { kind: 'range', name: 'cpu_range', field: 'value', min: 0, max: 100, when: "value.metric == 'cpu'" },
        {
          kind: 'range',
          name: 'mem_range',
          field: 'value',
          min: 0,
          max: 65536,
          when: "value.metric == 'mem'",
        },
      ],
    });
    const { out, dead } = run(step, [
      { metric: 'cpu', value: 50 },
      { metric: 'cpu', value: 150 },
      { metric: 'mem', value: 150 },
      { metric: 'mem', value: 70000 },
      { metric: 'disk', value: -5 },
    ]);
    expect(out.map((r) => r.value)).toEqual([
      { metric: 'cpu', value: 50 },
      { metric: 'mem', value: 150 },
      { metric: 'disk', value: -5 },
    ]);
    expect(dead.map((d) => (d.error as QualityError).verdict.failed)).toEqual([['cpu_range'], ['mem_range']]);
  });

  it('counts failures per rule and tenant, folding tenants past the cap into other', async () => {
    const topology = 'quality-metrics-test';
    const step = makeStep(
      { rules: [{ kind: 'range', field: 'v', max: 0, name: 'neg' }], tenant_field: 'org', max_tenants: 2 },
      topology,
    );
    run(step, [
      { org: 'a', v: 1 },
      { org: 'a', v: 1 },
      { org: 'b', v: 1 },
      { org: 'c', v: 1 },
      { org: 'd', v: 1 },
      { org: 'd', v: -1 },
      { v: 1 },
    ]);
    const failures = (tenant: string) =>
      counterValue('flotilla_quality_rule_failures_total', {
        topology,
        step: 'quality',
        rule: 'neg',
        tenant,
      });
    expect(await failures('a')).toBe(2);
    expect(await failures('b')).toBe(1);
    expect(await failures('other')).toBe(2);
    expect(await failures('none')).toBe(1);
    expect(
      await counterValue('flotilla_quality_records_total', { topology, tenant: 'other', outcome: 'passed' }),
    ).toBe(1);
    expect(
      await counterValue('flotilla_quality_records_total', {
        topology,
        tenant: 'other',
        outcome: 'dead_lettered',
      }),
    ).toBe(2);
  });
});

describe('quality dedupe', () => {
  const dedupe = (extra: Record<string, unknown> = {}) =>
    makeStep({
      event_time: 'ts',
      rules: [{ kind: 'dedupe', key: ['tenant', 'id'], ttl: '10m', action: 'drop', ...extra }],
    });
  const MIN = 60_000;

  it('drops a repeated key within the TTL of event time and passes it after', () => {
    const step = dedupe();
    const { out } = run(step, [
      { tenant: 'a', id: 1, ts: 0 },
      { tenant: 'a', id: 1, ts: 5 * MIN }, // duplicate
      { tenant: 'b', id: 1, ts: 5 * MIN }, // another tenant: new key
      { tenant: 'a', id: 1, ts: 10 * MIN }, // exactly the TTL: still a duplicate
      { tenant: 'a', id: 1, ts: 10 * MIN + 1 }, // past it: passes and is remembered anew
      { tenant: 'a', id: 1, ts: 12 * MIN }, // duplicate of the renewed key
    ]);
    expect(out.map((r) => (r.value as { ts: number }).ts)).toEqual([0, 5 * MIN, 10 * MIN + 1]);
    expect(out.map((r) => (r.value as { tenant: string }).tenant)).toEqual(['a', 'b', 'a']);
  });

  it('is deterministic on replay: time is event time, not the wall clock', () => {
    const values = [
      { tenant: 'a', id: 1, ts: 0 },
      { tenant: 'a', id: 1, ts: 11 * MIN },
      { tenant: 'a', id: 1, ts: 3 * MIN }, // late, but within the TTL of the renewed key
    ];
    const first = run(
      makeStep(
        { event_time: 'ts', rules: [{ kind: 'dedupe', key: ['id'], ttl: '10m', action: 'drop' }] },
        'q',
        0,
      ),
      values,
    );
    const replay = run(
      makeStep(
        { event_time: 'ts', rules: [{ kind: 'dedupe', key: ['id'], ttl: '10m', action: 'drop' }] },
        'q',
        1e13,
      ),
      values,
    );
    expect(first.out.map((r) => r.value)).toEqual(values.slice(0, 2));
    expect(replay.out.map((r) => r.value)).toEqual(first.out.map((r) => r.value));
  });

  it('keeps keys per partition, skips records missing the key, and forgets keys of records that did not flow on', () => {
    const step = makeStep({
      rules: [
        { kind: 'range', field: 'v', max: 10 },
        { kind: 'dedupe', key: ['id'], ttl: '1h', action: 'drop' },
      ],
    });
    expect(run(step, [{ id: 1, v: 1 }], 0).out).toHaveLength(1);
    expect(run(step, [{ id: 1, v: 1 }], 1).out).toHaveLength(1);
    expect(run(step, [{ id: 1, v: 1 }], 0).out).toHaveLength(0);
    expect(run(step, [{ v: 1 }, { v: 1 }], 0).out).toHaveLength(2);
    // A dead-lettered record's key is not remembered: its corrected resend passes.
    expect(run(step, [{ id: 2, v: 99 }], 0).dead).toHaveLength(1);
    expect(run(step, [{ id: 2, v: 1 }], 0).out).toHaveLength(1);
  });

  it('bounds the keys per partition and counts evictions', async () => {
    const step = makeStep(
      { rules: [{ kind: 'dedupe', key: ['id'], ttl: '1d', max_keys: 3, action: 'drop', name: 'ids' }] },
      'quality-evict-test',
    );
    run(step, [{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }, { id: 5 }]);
    expect(step.snapshot('in', 0).dedupe.ids?.entries.map(([k]) => k)).toEqual(['[3]', '[4]', '[5]']);
    expect(run(step, [{ id: 1 }, { id: 5 }]).out.map((r) => r.value)).toEqual([{ id: 1 }]);
    expect(
      await counterValue('flotilla_quality_dedupe_evictions_total', {
        topology: 'quality-evict-test',
        rule: 'ids',
      }),
    ).toBe(3);
  });

  it('matches a plain reference model on a long out-of-order stream (expiry, eviction, re-remembered keys)', () => {
    // The reference scans an insertion-ordered Map from its head, as the table's contract says.
    const ttl = 50;
    const maxKeys = 60;
    const ref = new Map<string, number>();
    let refClock = Number.NEGATIVE_INFINITY;
    const refRemember = (key: string, time: number): number => {
      refClock = Math.max(refClock, time);
      ref.delete(key);
      ref.set(key, time);
      for (const [k, at] of ref) {
        if (at >= refClock - ttl) break;
        ref.delete(k);
      }
      let evicted = 0;
      for (const k of ref.keys()) {
        if (ref.size <= maxKeys) break;
        ref.delete(k);
        evicted++;
      }
      return evicted;
    };
    const table = new DedupeTable(ttl, maxKeys);
    const random = seededRandom(7);
    let time = 0;
    let duplicates = 0;
    let evictions = 0;
    const mismatches: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      time += random() < 0.5 ? 1 : 0;
      const t = time - Math.floor(random() * 20); // up to 20 late
      const key = `k${Math.floor(random() * (i < 10_000 ? 150 : 400))}`;
      const at = ref.get(key);
      const duplicate = at !== undefined && at >= Math.max(refClock, t) - ttl;
      if (table.has(key, t) !== duplicate) mismatches.push(`${i}: has(${key}, ${t})`);
      if (duplicate) duplicates++;
      else {
        const n = table.remember(key, t);
        if (n !== refRemember(key, t)) mismatches.push(`${i}: evicted ${n}`);
        evictions += n;
      }
      if (table.size !== ref.size) mismatches.push(`${i}: size ${table.size} != ${ref.size}`);
    }
    expect(mismatches.slice(0, 5)).toEqual([]);
    // The stream exercised both paths.
    expect(duplicates).toBeGreaterThan(1000);
    expect(evictions).toBeGreaterThan(100);
    expect(table.snapshot().entries).toEqual([...ref]);
  });

  it('restores a JSON snapshot per partition so duplicates are caught across a restart', () => {
    const before = dedupe();
    run(
      before,
      [
        { tenant: 'a', id: 1, ts: 0 },
        { tenant: 'a', id: 2, ts: MIN },
      ],
      0,
    );
    run(before, [{ tenant: 'a', id: 3, ts: 0 }], 1);
    const saved = JSON.parse(JSON.stringify(before.snapshot('in', 0)));
    expect(saved).toEqual({
      version: 1,
      dedupe: {
        'dedupe:tenant,id': {
          clock: MIN,
          entries: [
            ['["a",1]', 0],
            ['["a",2]', MIN],
          ],
        },
      },
    });

    const after = dedupe();
    after.restore('in', 0, saved);
    const { out } = run(after, [
      { tenant: 'a', id: 1, ts: 2 * MIN },
      { tenant: 'a', id: 3, ts: 2 * MIN }, // partition 1's key: not restored here
      { tenant: 'a', id: 2, ts: 11 * MIN }, // within the TTL of MIN
      { tenant: 'a', id: 1, ts: 12 * MIN }, // past the TTL of 0
    ]);
    expect(out.map((r) => (r.value as { id: number }).id)).toEqual([3, 1]);
    after.release('in', 0);
    expect(after.snapshot('in', 0)).toEqual({ version: 1, dedupe: {} });
  });

  it('refuses a malformed snapshot with the step, topology and partition', () => {
    expect(() =>
      dedupe().restore('in', 4, { version: 1, dedupe: { x: { clock: 'late', entries: [] } } }),
    ).toThrow(
      /quality step 'quality' of topology 'quality-test': cannot restore the state of in\/4: .*clock/s,
    );
  });
});

describe('quality profiling', () => {
  it('computes null rate, type mix, min/max/mean and distinct counts per field', async () => {
    const topology = 'quality-profile-test';
    const step = makeStep({ rules: [{ kind: 'required', fields: ['a'], action: 'tag' }] }, topology);
    run(step, [
      { a: 1, b: 'x' },
      { a: 3, b: 'y' },
      { a: null, b: 'x' },
      { b: 5, c: true },
      { a: Number.NaN, b: 'x', c: true }, // a: a number, but not one that min/max/mean can hold
    ]);
    const profile = step.profile();
    expect(profile?.records).toBe(5);
    expect(profile?.fields.a).toEqual({
      count: 5,
      null_rate: 0.4,
      types: { number: 1 },
      min: 1,
      max: 3,
      mean: 2,
      distinct: 3,
    });
    expect(profile?.fields.b).toEqual({
      count: 5,
      null_rate: 0,
      types: { string: 0.8, number: 0.2 },
      min: 5,
      max: 5,
      mean: 5,
      distinct: 3,
    });
    // c was first seen on the 4th record.
    expect(profile?.fields.c).toEqual({
      count: 2,
      null_rate: 0,
      types: { boolean: 1 },
      min: null,
      max: null,
      mean: null,
      distinct: 1,
    });

    const text = await registry.getSingleMetricAsString('flotilla_quality_field_null_ratio');
    expect(text).toContain(
      `flotilla_quality_field_null_ratio{topology="${topology}",step="quality",field="a"} 0.4`,
    );
    const types = await registry.getSingleMetricAsString('flotilla_quality_field_type_ratio');
    expect(types).toContain(`{topology="${topology}",step="quality",field="b",type="string"} 0.8`);
    await step.close();
    expect(await registry.getSingleMetricAsString('flotilla_quality_field_null_ratio')).not.toContain(
      topology,
    );
  });

  it('profiles only the listed fields, or the first max_fields top-level fields', () => {
    const listed = makeStep({ rules: [{ kind: 'required', fields: ['a'] }], profile: { fields: ['n.x'] } });
    run(listed, [{ a: 1, n: { x: 2 } }]);
    expect(Object.keys(listed.profile()?.fields ?? {})).toEqual(['n.x']);
    const capped = makeStep({ rules: [{ kind: 'required', fields: ['a'] }], profile: { max_fields: 2 } });
    run(capped, [{ a: 1, b: 2, c: 3 }, { d: 4 }]);
    expect(Object.keys(capped.profile()?.fields ?? {})).toEqual(['a', 'b']);
    const off = makeStep({ rules: [{ kind: 'required', fields: ['a'] }], profile: { enabled: false } });
    expect(off.profile()).toBeUndefined();
  });

  it('logs the profile at info level every log_every once records came, and when it stops', async () => {
    vi.useFakeTimers();
    try {
      const logged: { msg: string; step: string; profile: { records: number } }[] = [];
      const ctx: ComponentContext = {
        topology: 'quality-log-test',
        group: 'flotilla-quality-log-test',
        baseDir: '.',
        logger: pino({ level: 'info' }, { write: (line: string) => logged.push(JSON.parse(line)) }),
      };
      const rules = [{ kind: 'required', fields: ['a'] }];
      const config = (profile: Record<string, unknown>) =>
        qualityStepSchema.parse({ kind: 'quality', name: 'checks', rules, profile });
      const step = new QualityStep(config({ log_every: '1m' }), ctx);
      vi.advanceTimersByTime(60_000);
      expect(logged).toEqual([]); // nothing profiled yet
      run(step, [{ a: 1 }, { a: null }]);
      vi.advanceTimersByTime(120_000);
      await step.close();
      expect(logged.map((l) => [l.msg, l.step, l.profile.records])).toEqual([
        ['quality profile', 'checks', 2],
        ['quality profile', 'checks', 2],
        ['quality profile', 'checks', 2],
      ]);
      logged.length = 0;
      const quiet = new QualityStep(config({ log_every: 0 }), ctx);
      run(quiet, [{ a: 1 }]);
      vi.advanceTimersByTime(3_600_000);
      expect(logged).toEqual([]);
      await quiet.close();
      expect(logged).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('quality config errors through loadTopology', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-quality-'));
  function problems(rules: string): string[] {
    const file = path.join(dir, 'topo.yaml');
    writeFileSync(
      file,
      `name: q
source: { kind: embedded, topic: in }
steps:
  - kind: decode
    format: json
  - kind: quality
    rules:
${rules}sinks:
  - kind: stdout
`,
    );
    try {
      loadTopology(file);
    } catch (err) {
      if (err instanceof ConfigError) return err.message.split('\n').map((l) => l.replace(`${file}:`, ''));
      throw err;
    }
    return [];
  }

  it('accepts a valid rule set', () => {
    expect(
      problems('      - { kind: range, field: v, min: 0, max: 1, when: "value.m == \'cpu\'" }\n'),
    ).toEqual([]);
  });

  it.each([
    [
      'a bad regex',
      "      - { kind: pattern, field: host, regex: '^(host' }\n",
      [
        '8:46: steps[1].rules[0].regex: invalid regular expression: Invalid regular expression: /^(host/: Unterminated group',
      ],
    ],
    [
      'an unknown rule key, with a suggestion',
      '      - kind: range\n        field: v\n        maxx: 5\n',
      [
        "10:9: steps[1].rules[0].maxx: unknown key 'maxx' (did you mean 'max'?); expected one of: kind, field, min, max, name, action, weight, when",
      ],
    ],
    [
      'an unknown rule kind',
      '      - { kind: ranges, field: v }\n',
      [
        "8:17: steps[1].rules[0].kind: unknown kind 'ranges' (did you mean 'range'?); expected one of: required, type, range, enum, pattern, length, freshness, clock_skew, dedupe, check",
      ],
    ],
    [
      'a bad duration',
      '      - { kind: dedupe, key: [id], ttl: 10 minutes }\n',
      [
        "8:41: steps[1].rules[0].ttl: invalid duration '10 minutes': expected milliseconds (a number) or a number with a unit ms, s, m, h or d, e.g. '500ms', '30s', '1m', '1h30m'",
      ],
    ],
    [
      'an empty range',
      '      - { kind: range, field: v }\n',
      ['8:9: steps[1].rules[0].min: a range needs min, max or both'],
    ],
    [
      'min above max',
      '      - { kind: length, field: v, min: 5, max: 2 }\n',
      ['8:48: steps[1].rules[0].max: max (2) is below min (5)'],
    ],
    [
      'a bad action',
      '      - { kind: required, fields: [a], action: dlq }\n',
      ["8:48: steps[1].rules[0].action: expected one of 'dead_letter', 'tag', 'drop', found 'dlq'"],
    ],
    [
      'two rules with the same derived name',
      '      - { kind: range, field: v, max: 1 }\n      - { kind: range, field: v, min: 0 }\n',
      [
        "9:9: steps[1].rules[1].name: rule name 'range:v' is already used by rules[0]; give this rule its own name:",
      ],
    ],
    [
      'a bad expression',
      '      - { kind: check, expr: "value.a <=" }\n',
      [expect.stringMatching(/^8:30: steps\[1\]\.rules\[0\]\.expr: /), '  value.a <=', '            ^'],
    ],
  ])('reports %s with file, line and path', (_what, rules, expected) => {
    expect(problems(rules)).toEqual(expected);
  });
});

describe('a topology with a quality step on the embedded log', () => {
  it('passes good records, tags, drops duplicates and dead-letters failures with their rules', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-quality-run-'));
    const file = path.join(dir, 'topo.yaml');
    writeFileSync(
      file,
      `name: quality-run
source: { kind: embedded, topic: in-quality-run, partitions: 2 }
steps:
  - { kind: decode, format: json }
  - kind: quality
    event_time: ts
    rules:
      - { kind: required, fields: [id, metric, value] }
      - { kind: range, name: cpu_range, field: value, min: 0, max: 100, when: "value.metric == 'cpu'" }
      - { kind: pattern, field: host, regex: '^h\\d+$', action: tag }
      - { kind: dedupe, key: [id], ttl: 1h, action: drop }
sinks:
  - { kind: file, path: out.jsonl }
dead_letter: { topic: quality-run.dlq }
`,
    );
    const inputs = [
      { id: 1, metric: 'cpu', value: 50, host: 'h1', ts: 0 },
      { id: 2, metric: 'cpu', value: 150, host: 'h1', ts: 0 },
      { id: 3, metric: 'mem', value: 150, host: 'web', ts: 0 },
      { id: 1, metric: 'cpu', value: 50, host: 'h1', ts: 1000 },
      { metric: 'cpu', value: -1, host: 'h1', ts: 0 },
    ];
    // One key for all: every record lands in the same partition, in order.
    await runToEnd(file, () => {
      for (const v of inputs)
        embeddedLog.append('in-quality-run', { key: 'k', value: Buffer.from(JSON.stringify(v)) });
    });

    const lines = readFileSync(path.join(dir, 'out.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toEqual([
      inputs[0],
      { ...inputs[2], _quality: { passed: false, failed: ['pattern:host'], score: 2 / 3 } },
    ]);

    const dead = embeddedLog.read('quality-run.dlq', 0, 0, 10);
    expect(dead.map((d) => d.headers['flotilla.error'])).toEqual([
      'failed quality rules: cpu_range (value: 150 is above max 100)',
      'failed quality rules: required:id,metric,value (missing id); cpu_range (value: -1 is below min 0)',
    ]);
    expect(
      dead.every(
        (d) => d.headers['flotilla.reason'] === 'quality' && d.headers['flotilla.step'] === 'quality',
      ),
    ).toBe(true);
    expect(JSON.parse(dead[0]?.value.toString() ?? '')).toEqual(inputs[1]);
  });
});
