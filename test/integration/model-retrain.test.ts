import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ClickHouseClient, createClient } from '@clickhouse/client';
import { Redis } from 'ioredis';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StepContext } from '../../src/core/component.js';
import type { FlotillaRecord } from '../../src/core/record.js';
import { jobMetrics } from '../../src/jobs/metrics.js';
import {
  InvalidModelError,
  ModelRegistry,
  ModelWatcher,
  type ModelWatcherOptions,
} from '../../src/jobs/model-registry.js';
import { loadPipeline } from '../../src/jobs/pipeline.js';
import { Pipelines, PipelineWorkers } from '../../src/jobs/runner.js';
import { seededRandom } from '../../src/sources/synthetic.js';
import type { AnomalyFields, AnomalyStep, ModelParameters } from '../../src/steps/anomaly/index.js';
import { anomalyStep } from '../../src/steps/anomaly/index.js';
import { loadTopology } from '../../src/topology/load.js';
import { dropJobsState, runOutcome, testJobsConfig, writePipeline } from '../support/pipelines.js';
import { connectOrExplain, serviceUrl } from '../support/services.js';
import { waitFor } from '../support/wait.js';

const id = process.pid;
const history = `it_history_${id}`;
const model = `it-metrics-${id}`;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 0, 1);
const DAYS = 14;
/** The known daily pattern of series `web`: 150 at 06:00 UTC, 50 at 18:00. */
const pattern = (hour: number) => 100 + 50 * Math.sin((2 * Math.PI * hour) / 24);

const logger = pino({ level: 'silent' });
const stepContext: StepContext = { topic: 'live', partition: 0, deadLetter: () => {} };

function live(series: string, time: number, value: number): FlotillaRecord {
  return {
    id: `${series}/${time}`,
    key: null,
    value: { series, time, value },
    timestamp: time,
    headers: {},
    source: { topic: 'live', partition: 0, offset: String(time) },
  };
}

async function gauge(name: 'modelVersion' | 'modelLoads', labels: Record<string, string>): Promise<number> {
  const { values } = await jobMetrics[name].get();
  const hit = values.find((v) =>
    Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l),
  );
  return hit?.value ?? 0;
}

describe('retraining and the model registry (ClickHouse, PostgreSQL, Redis)', () => {
  const config = testJobsConfig('models');
  let clickhouse: ClickHouseClient;
  let pool: pg.Pool;
  let publisher: Redis;
  let workers: PipelineWorkers;
  let pipelines: Pipelines;
  let step: AnomalyStep;
  let dir: string;

  beforeAll(async () => {
    clickhouse = await connectOrExplain('CLICKHOUSE_URL', async () => {
      const c = createClient({ url: serviceUrl('CLICKHOUSE_URL') });
      await c.ping();
      return c;
    });
    pool = new pg.Pool({ connectionString: serviceUrl('PG_URL'), max: 2 });
    publisher = new Redis(serviceUrl('REDIS_URL'));
    await clickhouse.command({ query: `DROP TABLE IF EXISTS ${history}` });
    await clickhouse.command({
      query: `CREATE TABLE ${history} (series String, time Int64, value Float64) ENGINE = MergeTree ORDER BY (series, time)`,
    });
    const random = seededRandom(7);
    const noise = () => (random() + random() + random() - 1.5) * 2;
    const rows = [];
    for (let h = 0; h < DAYS * 24; h++) {
      rows.push({ series: 'web', time: T0 + h * HOUR, value: pattern(h % 24) + noise() });
      rows.push({ series: 'db', time: T0 + h * HOUR, value: 20 + noise() });
    }
    await clickhouse.insert({ table: history, format: 'JSONEachRow', values: rows });

    dir = mkdtempSync(path.join(tmpdir(), 'flotilla-models-'));
    // The live step watches the registry; its poll is long, so only Redis announcements reach it fast.
    writeFileSync(
      path.join(dir, 'topology.yaml'),
      `name: it-anomaly
source: { kind: embedded, topic: it-anomaly-in }
steps:
  - name: score
    kind: anomaly
    series_key: [series]
    value: value
    time: time
    registry: { model: ${model}, poll: 1h, schema: ${config.schema} }
sinks: [{ kind: discard }]
`,
    );
    workers = new PipelineWorkers(config, { concurrency: 2, logger });
    await workers.start();
    pipelines = new Pipelines(config);
    const topology = loadTopology(path.join(dir, 'topology.yaml'));
    const stepConfig = topology.config.steps[0] as Parameters<typeof anomalyStep.create>[0];
    step = await anomalyStep.create(stepConfig, { topology: 'it-anomaly', group: 'g', baseDir: dir, logger });
  });

  afterAll(async () => {
    await step?.close();
    await workers?.close();
    await pipelines?.close();
    await dropJobsState(config);
    await clickhouse?.command({ query: `DROP TABLE IF EXISTS ${history}` });
    await clickhouse?.close();
    publisher?.disconnect();
    await pool?.end();
  });

  /** Scores of `web` on day 14 at 06:00 (150 is normal then) and 18:00 (150 is three times the usual). */
  function scoreWeb(day: number): { normal: AnomalyFields; odd: AnomalyFields } {
    const at = T0 + day * DAY;
    const [normal, odd] = step.process(
      [live('web', at + 6 * HOUR, 150), live('web', at + 18 * HOUR, 150)],
      stepContext,
    );
    return { normal: normal?.value as AnomalyFields, odd: odd?.value as AnomalyFields };
  }

  it('fits the seasonal pattern, and a running step switches to the new version within seconds', async () => {
    // Before any model: a new series is in its cold start and flags nothing.
    const before = scoreWeb(DAYS);
    expect(before.odd).toMatchObject({ anomaly_score: 0, is_anomaly: false, expected: null });

    const pipeline = loadPipeline(
      writePipeline(
        `name: it-retrain
tasks:
  history:
    kind: extract
    source: { kind: clickhouse, url: "\${CLICKHOUSE_URL}", query: "SELECT series, time, value FROM ${history}" }
  fit:
    kind: retrain
    needs: [history]
    model: ${model}
    topology: topology.yaml
    min_points: 48
`,
        'retrain.yaml',
        dir,
      ),
    );
    const started = Date.now();
    const status = await runOutcome(pipelines, await pipelines.start(pipeline));
    expect(status.state).toBe('completed');
    expect(status.tasks[1]?.output).toMatchObject({
      rows: DAYS * 24 * 2,
      details: { model, version: 1, series: 2 },
    });
    await waitFor(
      'the step to apply version 1',
      async () => (await gauge('modelVersion', { model })) === 1,
      5_000,
    );
    const switchedAfter = Date.now() - started;
    expect(switchedAfter).toBeLessThan(10_000);

    const registry = new ModelRegistry(pool, config.schema);
    const [v1] = await registry.versions(model);
    expect(v1).toMatchObject({
      version: 1,
      series: 2,
      current: true,
      metrics: { points: DAYS * 24 * 2, series: 2 },
    });
    expect(v1?.trainingFrom?.getTime()).toBe(T0);
    expect(v1?.trainingTo?.getTime()).toBe(T0 + (DAYS * 24 - 1) * HOUR);
    const web = (await registry.load(model, 1)).get('["web"]') as ModelParameters;
    expect(web.model).toBe('seasonal');
    // The seasonal baselines are the known pattern, hour by hour.
    const seasonal = web.state?.members[0]?.model as { mean: number[] };
    for (let h = 0; h < 24; h++) expect(seasonal.mean[h]).toBeCloseTo(pattern(h), -1);

    // The step now knows the day's shape: 150 is expected at 06:00 and anomalous at 18:00.
    const after = scoreWeb(DAYS);
    expect(after.normal.expected).toBeCloseTo(150, -1);
    expect(after.normal.is_anomaly).toBe(false);
    expect(after.odd.expected).toBeCloseTo(50, -1);
    expect(after.odd).toMatchObject({ is_anomaly: true });
    expect(after.odd.anomaly_score).toBeGreaterThan(0.9);
  });

  it('switches to an announced version, rolls back, and refuses a broken one', async () => {
    const registry = new ModelRegistry(pool, config.schema, publisher);
    const empty = {
      series: [],
      trainingFrom: null,
      trainingTo: null,
      metrics: {},
      source: { test: 'empty' },
    };
    // Version 2 has no series: the step's own configuration again (a cold start).
    expect(await registry.publish(model, empty)).toBe(2);
    await waitFor('version 2', async () => (await gauge('modelVersion', { model })) === 2, 5_000);
    expect(scoreWeb(DAYS + 1).normal.expected).toBeNull();

    await registry.rollback(model, 1);
    await waitFor(
      'the rollback to version 1',
      async () => (await gauge('modelVersion', { model })) === 1,
      5_000,
    );
    expect(scoreWeb(DAYS).normal.expected).toBeCloseTo(150, -1);

    const v1 = await registry.load(model, 1);
    // Parameters that do not validate (a non-finite number) are refused when published: nothing
    // is written, no version number is used, and version 1 stays current.
    const trained = v1.get('["web"]') as ModelParameters;
    const nonFinite = { ...trained, state: { ...trained.state, latest: Number.NaN } } as ModelParameters;
    const publishing = registry.publish(model, { ...empty, series: [['["web"]', nonFinite]] });
    await expect(publishing).rejects.toThrow(InvalidModelError);
    await expect(publishing).rejects.toThrow(/series \["web"\]: state\.latest/);
    expect(await registry.current(model)).toBe(1);
    expect((await registry.versions(model)).map((v) => v.version)).toEqual([2, 1]);

    // Valid JSON, but a seasonal state of 5 slots where the step has 24: refused, version 1 stays.
    const web = structuredClone(trained);
    const member = web.state?.members[0]?.model as { count: number[]; mean: number[]; variance: number[] };
    for (const k of ['count', 'mean', 'variance'] as const) member[k] = member[k].slice(0, 5);
    const refusedBefore = await gauge('modelLoads', { model, outcome: 'refused' });
    expect(await registry.publish(model, { ...empty, series: [['["web"]', web]] })).toBe(3);
    await waitFor(
      'version 3 to be refused',
      async () => (await gauge('modelLoads', { model, outcome: 'refused' })) === refusedBefore + 1,
      5_000,
    );
    expect(await gauge('modelVersion', { model })).toBe(1);
    expect(scoreWeb(DAYS).normal.expected).toBeCloseTo(150, -1);
  });

  /** A watcher of the test's model that polls every 300 ms, applying versions with `apply`. */
  const watch = (apply: ModelWatcherOptions['apply']) =>
    ModelWatcher.start({
      model,
      pgUrl: serviceUrl('PG_URL'),
      redisUrl: serviceUrl('REDIS_URL'),
      schema: config.schema,
      pollMs: 300,
      logger,
      apply,
    });

  it('finds a version that was never announced by polling', async () => {
    const applied: number[] = [];
    const watcher = await watch((_, version) => applied.push(version));
    try {
      // The current version (3 was refused by the step, but it is current) validates here: nothing checks slots.
      expect(applied).toEqual([3]);
      const silent = new ModelRegistry(pool, config.schema);
      const version = await silent.publish(model, {
        series: [],
        trainingFrom: null,
        trainingTo: null,
        metrics: {},
        source: { test: 'silent' },
      });
      await waitFor('the poll to find the new version', () => applied.includes(version), 3_000);
    } finally {
      await watcher.stop();
    }
  });

  it('starts on the newest older version when it refuses the current one, and does not retry it', async () => {
    const registry = new ModelRegistry(pool, config.schema);
    const versions = (await registry.versions(model)).map((v) => v.version);
    const [current, previous] = versions as [number, number];
    const tried: number[] = [];
    const applied: number[] = [];
    const watcher = await watch((_, version) => {
      tried.push(version);
      if (version === current) throw new Error('does not fit this step');
      applied.push(version);
    });
    try {
      expect(watcher.version).toBe(previous);
      expect(applied).toEqual([previous]);
      await new Promise((resolve) => setTimeout(resolve, 1000)); // a few polls
      expect(tried).toEqual([current, previous]);
    } finally {
      await watcher.stop();
    }
  });
});
