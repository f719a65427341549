import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { StepContext } from '../../src/core/component.js';
import type { FlotillaRecord } from '../../src/core/record.js';
import { registry } from '../../src/observability/metrics.js';
import { seededRandom } from '../../src/sources/synthetic.js';
import {
  type AnomalyStep,
  anomalyStep,
  anomalyStepSchema,
  defaultSpec,
  type ModelKind,
  SeriesDetector,
  seriesKeyOf,
} from '../../src/steps/anomaly/index.js';
import { applyTuning, type Tuning } from '../../src/steps/anomaly/schema.js';
import { topologySchema } from '../../src/topology/schema.js';

const FIVE_MINUTES = 300_000;
const T0 = Date.UTC(2024, 0, 1);
const models: ModelKind[] = ['seasonal', 'ewma', 'mad', 'ensemble'];
const threshold = anomalyStepSchema.parse({ kind: 'anomaly', value: 'v' }).threshold;

const detector = (t: Tuning = {}) => new SeriesDetector(applyTuning(defaultSpec, t));

/** A daily cycle (peak in the afternoon) plus seeded noise, one value every 5 minutes. */
function dailySeries(n: number, seed = 7): { time: number; value: number }[] {
  const rnd = seededRandom(seed);
  return Array.from({ length: n }, (_, i) => {
    const time = T0 + i * FIVE_MINUTES;
    const hour = (time / 3_600_000) % 24;
    return { time, value: 50 + 20 * Math.sin((2 * Math.PI * hour) / 24) + 2 * (rnd() - 0.5) };
  });
}

function scores(d: SeriesDetector, points: { time: number; value: number }[]): number[] {
  return points.map((p) => d.observe(p.value, p.time)?.score ?? Number.NaN);
}

describe.each(models)('the %s model', (model) => {
  it('cold start: scores 0 and forecasts nothing until it has seen enough', () => {
    const d = detector({ model, warmup: 50 });
    const first = d.observe(10, T0);
    expect(first).toMatchObject({ score: 0, expected: null, lower: null, upper: null });
    const early = scores(d, dailySeries(50).slice(1));
    expect(early.every((s) => s === 0)).toBe(true);
  });

  it('a constant series: no division by zero, no flags; any change from it is anomalous', () => {
    const d = detector({ model });
    const flat = Array.from({ length: 600 }, (_, i) => ({ time: T0 + i * FIVE_MINUTES, value: 45 }));
    const verdicts = flat.map((p) => d.observe(p.value, p.time));
    expect(verdicts.every((v) => v?.score === 0)).toBe(true);
    expect(verdicts.at(-1)).toMatchObject({ expected: 45, lower: 45, upper: 45 });
    const change = d.observe(45.5, T0 + 600 * FIVE_MINUTES);
    expect(change?.score).toBe(1);
  });

  it('a spike in a noisy daily series is flagged; the normal values around it mostly are not', () => {
    const d = detector({ model });
    const normal = scores(d, dailySeries(3 * 288));
    const spike = d.observe(95, T0 + 3 * 288 * FIVE_MINUTES);
    expect(spike?.score).toBeGreaterThanOrEqual(threshold);
    const flagged = normal.slice(288).filter((s) => s >= threshold).length;
    expect(flagged).toBeLessThan(0.02 * 2 * 288);
  });

  it('skips NaN and infinite values: null, and the next scores are those of a run without them', () => {
    const points = dailySeries(400);
    const clean = detector({ model });
    const holey = detector({ model });
    const expected = scores(clean, points);
    const got = points.map((p, i) => {
      if (i % 50 === 25) {
        expect(holey.observe(Number.NaN, p.time)).toBeNull();
        expect(holey.observe(Number.POSITIVE_INFINITY, p.time)).toBeNull();
      }
      return holey.observe(p.value, p.time)?.score;
    });
    expect(got).toEqual(expected);
  });

  it('scores an out-of-order value without learning it', () => {
    const points = dailySeries(400);
    const d = detector({ model });
    scores(d, points.slice(0, 300));
    const before = JSON.stringify(d.snapshot());
    const late = d.observe(500, (points[100] as { time: number }).time);
    expect(late?.late).toBe(true);
    expect(late?.score).toBeGreaterThan(0);
    expect(JSON.stringify(d.snapshot())).toBe(before);

    const inOrder = detector({ model });
    scores(inOrder, points.slice(0, 300));
    expect(scores(d, points.slice(300))).toEqual(scores(inOrder, points.slice(300)));
  });

  it('snapshot → JSON → restore gives identical subsequent scores', () => {
    const points = [
      ...dailySeries(700),
      { time: T0 + 700 * FIVE_MINUTES, value: 90 },
      ...dailySeries(100, 9),
    ];
    // The second part continues the clock so every value stays in order.
    const rest = points.slice(500).map((p, i) => ({ ...p, time: T0 + (500 + i) * FIVE_MINUTES }));
    const original = detector({ model });
    scores(original, points.slice(0, 500));
    const restored = detector({ model }).restore(JSON.parse(JSON.stringify(original.snapshot())));
    const a = scores(original, rest);
    expect(scores(restored, rest)).toEqual(a);
    expect(a.some((s) => s >= threshold)).toBe(true);
  });
});

describe('the detector', () => {
  it('range rule: a value far outside all values seen so far scores 1', () => {
    const d = detector({ model: 'ewma', ewma: { alpha: 0.5 }, suppression: { window: 0, factor: 1 } });
    scores(d, dailySeries(300));
    expect(d.observe(200, T0 + 300 * FIVE_MINUTES)?.score).toBe(1);
  });

  it('suppression: a repeat of a recent alarm is damped', () => {
    const d = detector({ model: 'ewma' });
    scores(d, dailySeries(300));
    const first = d.observe(200, T0 + 300 * FIVE_MINUTES)?.score ?? 0;
    const again = d.observe(200, T0 + 301 * FIVE_MINUTES)?.score ?? 0;
    expect(first).toBe(1);
    expect(again).toBeLessThanOrEqual(0.8);
  });

  it('restores a snapshot taken before any value (JSON has no Infinity)', () => {
    const empty = JSON.parse(JSON.stringify(detector({}).snapshot()));
    const restored = detector({}).restore(empty);
    const fresh = detector({});
    const points = dailySeries(400);
    expect(scores(restored, points)).toEqual(scores(fresh, points));
  });

  it('a late value right after an alarm leaves the suppression state as it was', () => {
    const d = detector({ model: 'ewma', suppression: { window: 5, factor: 0.5 } });
    scores(d, dailySeries(300));
    d.observe(200, T0 + 300 * FIVE_MINUTES);
    scores(d, dailySeries(306).slice(301));
    const before = JSON.stringify(d.snapshot());
    d.observe(50, T0);
    expect(JSON.stringify(d.snapshot())).toBe(before);
  });

  it('refuses a snapshot of another model', () => {
    const ewma = detector({ model: 'ewma' });
    ewma.observe(1, T0);
    expect(() => detector({ model: 'ensemble' }).restore(ewma.snapshot())).toThrow(/does not fit/);
    const seasonal = detector({ model: 'seasonal' });
    expect(() =>
      detector({ model: 'seasonal', seasonal: { slots: 12 } }).restore(seasonal.snapshot()),
    ).toThrow(/12 slots/);
  });
});

// --- the step ---

function makeStep(config: Record<string, unknown>, logger = pino({ level: 'silent' })): AnomalyStep {
  const parsed = anomalyStepSchema.parse({ kind: 'anomaly', value: 'v', series_key: ['host'], ...config });
  return anomalyStep.create(parsed, {
    topology: 'anomaly-test',
    group: 'g',
    baseDir: '.',
    logger,
  }) as AnomalyStep;
}

function record(value: unknown, offset: number, timestamp = T0 + offset * FIVE_MINUTES): FlotillaRecord {
  return {
    id: `t/0/${offset}`,
    key: null,
    value,
    timestamp,
    headers: {},
    source: { topic: 't', partition: 0, offset: String(offset) },
  };
}

function context(partition = 0) {
  const dead: { record: FlotillaRecord; reason: string; error: string }[] = [];
  const ctx: StepContext = {
    topic: 't',
    partition,
    deadLetter: (r, reason, error) => dead.push({ record: r, reason, error: String(error) }),
  };
  return { ctx, dead };
}

const hostRecords = (host: string, n: number, from = 0) =>
  dailySeries(from + n)
    .slice(from)
    .map((p, i) => record({ host, v: p.value }, from + i));

async function valuesOut(step: AnomalyStep, records: FlotillaRecord[], partition = 0) {
  const { ctx } = context(partition);
  return (await step.process(records, ctx)).map((r) => r.value as Record<string, unknown>);
}

async function metric(name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values ?? [])
    .filter((v) => v.labels.topology === 'anomaly-test')
    .reduce((sum, v) => sum + Number(v.value), 0);
}

describe('the anomaly step', () => {
  it('is a registered step kind with a strict, documented config', () => {
    const topology = topologySchema.parse({
      name: 'anomaly-topology',
      source: { kind: 'embedded', topic: 'x' },
      steps: [{ kind: 'anomaly', series_key: ['tenant', 'host'], value: 'metrics.cpu', model: 'ewma' }],
      sinks: [{ kind: 'stdout' }],
    });
    expect(topology.steps[0]).toMatchObject({ kind: 'anomaly', model: 'ewma', threshold: 0.68 });
    expect(() => anomalyStepSchema.parse({ kind: 'anomaly', value: 'v', modle: 'ewma' })).toThrow(/modle/);
    expect(() => anomalyStepSchema.parse({ kind: 'anomaly', value: 'v', ewma: { alpha: 2 } })).toThrow();
    expect(
      anomalyStepSchema.parse({ kind: 'anomaly', value: 'v', seasonal: { period: '7d' } }).seasonal,
    ).toEqual({
      period: 7 * 86_400_000,
    });
  });

  it('adds score, flag, expected value and band to each record, per series', async () => {
    const step = makeStep({});
    const out = await valuesOut(step, [...hostRecords('a', 600), ...hostRecords('b', 10)]);
    expect(out).toHaveLength(610);
    const last = out[599] as Record<string, unknown>;
    expect(last).toMatchObject({ host: 'a', is_anomaly: false });
    expect(last.anomaly_score).toBeGreaterThanOrEqual(0);
    expect(last.lower as number).toBeLessThan(last.expected as number);
    expect(last.upper as number).toBeGreaterThan(last.expected as number);
    // Series b is new: its own cold start, whatever series a learned.
    expect(out[600]?.expected).toBeNull();
    expect(out.slice(600).every((v) => v.anomaly_score === 0)).toBe(true);

    const [spike] = await valuesOut(step, [record({ host: 'a', v: 150 }, 600)]);
    expect(spike).toMatchObject({ host: 'a', v: 150, anomaly_score: 1, is_anomaly: true });
  });

  it('dead-letters records with no numeric value, no object value or a bad time, and goes on', async () => {
    const step = makeStep({ time: 'at' });
    const { ctx, dead } = context();
    const out = await step.process(
      [
        record({ host: 'a', v: 1, at: T0 }, 0),
        record({ host: 'a', at: T0 }, 1),
        record({ host: 'a', v: 'n/a', at: T0 }, 2),
        record({ host: 'a', v: null, at: T0 }, 3),
        record('not an object', 4),
        record({ host: 'a', v: 2, at: 'yesterday' }, 5),
        record({ host: 'a', v: '3.5', at: '2024-01-01T00:10:00Z' }, 6),
      ],
      ctx,
    );
    expect(out.map((r) => r.source.offset)).toEqual(['0', '6']);
    expect(dead.map((d) => d.record.source.offset)).toEqual(['1', '2', '3', '4', '5']);
    expect(dead.every((d) => d.reason === 'anomaly')).toBe(true);
    expect(dead[0]?.error).toMatch(/no numeric value at 'v'/);
    expect(dead[4]?.error).toMatch(/no timestamp at 'at'/);
  });

  it('keeps state per partition; snapshot/restore of a partition continues identically', async () => {
    const first = hostRecords('a', 500);
    const rest = hostRecords('a', 300, 500);
    const original = makeStep({});
    await valuesOut(original, first);
    const state = JSON.parse(JSON.stringify(original.snapshot('t', 0)));
    expect(original.snapshot('t', 1).series).toEqual([]);

    const restored = makeStep({});
    restored.restore('t', 0, state);
    const clone = (rs: FlotillaRecord[]) => rs.map((r) => ({ ...r, value: { ...(r.value as object) } }));
    expect(await valuesOut(restored, clone(rest))).toEqual(await valuesOut(original, clone(rest)));

    original.release('t', 0);
    expect(original.snapshot('t', 0).series).toEqual([]);
  });

  it('restores the series that fit; those saved with another model start cold, with a warning', async () => {
    const ewma = makeStep({ model: 'ewma' });
    await valuesOut(ewma, [...hostRecords('a', 300), ...hostRecords('b', 300)]);
    const state = JSON.parse(JSON.stringify(ewma.snapshot('t', 0)));
    // Series b's state as the seasonal model would have saved it: it fits a seasonal step.
    const seasonal = makeStep({});
    await valuesOut(seasonal, hostRecords('b', 300));
    state.series[1] = seasonal.snapshot('t', 0).series[0];

    const warnings: { msg: string; series: number; first: { key: string; reason: string } }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line)) });
    const changed = makeStep({}, logger); // the topology now says model: seasonal (the default)
    changed.restore('t', 0, state);
    expect(warnings).toMatchObject([
      {
        msg: 'saved state of some series does not fit the configured model; they start cold',
        series: 1,
        first: {
          key: seriesKeyOf(['a']),
          reason: "series state (models ewma) does not fit model 'seasonal'",
        },
      },
    ]);
    const [a, b] = await valuesOut(changed, [...hostRecords('a', 1, 300), ...hostRecords('b', 1, 300)]);
    expect(a).toMatchObject({ anomaly_score: 0, expected: null }); // cold
    expect(b?.expected).not.toBeNull(); // restored

    expect(() => changed.restore('t', 3, { version: 2 } as never)).toThrow(
      "anomaly step 'anomaly' of topology 'anomaly-test': cannot restore the state of t/3: expected { version: 1, series: [...] }",
    );
  });

  it('holds at most max_series series per partition, evicting the least recently seen (counted)', async () => {
    const step = makeStep({ max_series: 2 });
    const evictedBefore = await metric('flotilla_anomaly_series_evicted_total');
    await valuesOut(step, [...hostRecords('a', 100), ...hostRecords('b', 100), ...hostRecords('a', 1, 100)]);
    await valuesOut(step, hostRecords('c', 1));
    const keys = step.snapshot('t', 0).series.map(([k]) => k);
    expect(keys).toEqual([seriesKeyOf(['a']), seriesKeyOf(['c'])]);
    expect((await metric('flotilla_anomaly_series_evicted_total')) - evictedBefore).toBe(1);
    // b comes back cold.
    const [back] = await valuesOut(step, hostRecords('b', 1, 100));
    expect(back).toMatchObject({ anomaly_score: 0, expected: null });
  });

  it('setModelParameters: a series gets its own parameters (or a trained state) from then on', async () => {
    const step = makeStep({});
    const key = seriesKeyOf(['a']);
    step.setModelParameters(key, { model: 'ewma', warmup: 10_000 });
    const out = await valuesOut(step, [...hostRecords('a', 300), ...hostRecords('b', 300)]);
    expect(out.slice(0, 300).every((v) => v.anomaly_score === 0)).toBe(true);
    expect(out.slice(300).some((v) => (v.anomaly_score as number) > 0)).toBe(true);

    const trained = detector({});
    scores(trained, dailySeries(600));
    step.setModelParameters(key, { state: trained.snapshot() });
    const [next] = await valuesOut(step, hostRecords('a', 1, 600));
    expect(next?.expected).not.toBeNull();
    expect(() => step.setModelParameters(key, { model: 'ewma', state: trained.snapshot() })).toThrow(
      /does not fit/,
    );
    expect(() => step.setModelParameters(key, { ewma: { alpha: 7 } })).toThrow();
  });

  it('counts records it scored out of order', async () => {
    const step = makeStep({});
    const before = await metric('flotilla_anomaly_out_of_order_total');
    await valuesOut(step, [...hostRecords('a', 10), record({ host: 'a', v: 1 }, 99, T0)]);
    expect((await metric('flotilla_anomaly_out_of_order_total')) - before).toBe(1);
  });
});
