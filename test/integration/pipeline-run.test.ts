import { type ClickHouseClient, createClient } from '@clickhouse/client';
import { Job } from 'bullmq';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatStatus } from '../../src/cli/pipeline.js';
import { loadPipeline } from '../../src/jobs/pipeline.js';
import { Pipelines, PipelineWorkers, type RunStatus, taskJobId } from '../../src/jobs/runner.js';
import { PipelineScheduler } from '../../src/jobs/scheduler.js';
import { createTopic, produce, testKafka, unique } from '../support/kafka.js';
import { dropJobsState, runOutcome, testJobsConfig, writePipeline } from '../support/pipelines.js';
import { connectOrExplain, serviceUrl } from '../support/services.js';
import { waitFor } from '../support/wait.js';

const id = process.pid;
const source = `it_pipe_src_${id}`;
const target = `it_pipe_out_${id}`;
/** One row per row the load writes to `target` (an upsert that changes nothing counts too). */
const targetWrites = `it_pipe_out_writes_${id}`;
const diamondTarget = `it_pipe_diamond_${id}`;
const ignoredTarget = `it_pipe_ignored_${id}`;
const kafkaTarget = `it_pipe_kafka_${id}`;
const windowTarget = `it_pipe_window_${id}`;

const byTask = (s: RunStatus) => Object.fromEntries(s.tasks.map((t) => [t.task, t]));

describe('pipeline runs on BullMQ (Redis, PostgreSQL, ClickHouse)', () => {
  const config = testJobsConfig('piperun');
  let clickhouse: ClickHouseClient;
  let pool: pg.Pool;
  let workers: PipelineWorkers;
  let pipelines: Pipelines;

  beforeAll(async () => {
    clickhouse = await connectOrExplain('CLICKHOUSE_URL', async () => {
      const c = createClient({ url: serviceUrl('CLICKHOUSE_URL') });
      await c.ping();
      return c;
    });
    pool = new pg.Pool({ connectionString: serviceUrl('PG_URL'), max: 2 });
    await clickhouse.command({ query: `DROP TABLE IF EXISTS ${source}` });
    await clickhouse.command({
      query: `CREATE TABLE ${source} (id String, tenant String, n Int32) ENGINE = MergeTree ORDER BY id`,
    });
    await clickhouse.insert({
      table: source,
      format: 'JSONEachRow',
      values: Array.from({ length: 500 }, (_, n) => ({
        id: `r${String(n).padStart(4, '0')}`,
        tenant: `t${n % 3}`,
        n,
      })),
    });
    for (const t of [target, targetWrites, diamondTarget, ignoredTarget, kafkaTarget, windowTarget])
      await pool.query(`DROP TABLE IF EXISTS ${t}`);
    await pool.query(`CREATE TABLE ${target} (id text PRIMARY KEY, tenant text, n integer, twice integer)`);
    await pool.query(`CREATE TABLE ${targetWrites} (id text)`);
    await pool.query(`CREATE OR REPLACE FUNCTION ${targetWrites}() RETURNS trigger AS $$
      BEGIN INSERT INTO ${targetWrites} VALUES (NEW.id); RETURN NEW; END $$ LANGUAGE plpgsql`);
    await pool.query(
      `CREATE TRIGGER ${targetWrites} BEFORE INSERT ON ${target} FOR EACH ROW EXECUTE PROCEDURE ${targetWrites}()`,
    );
    workers = new PipelineWorkers(config, { concurrency: 3, logger: pino({ level: 'silent' }) });
    await workers.start();
    pipelines = new Pipelines(config);
  });

  afterAll(async () => {
    await workers?.close();
    await pipelines?.close();
    await dropJobsState(config);
    await clickhouse?.command({ query: `DROP TABLE IF EXISTS ${source}` });
    for (const t of [target, targetWrites, diamondTarget, ignoredTarget, kafkaTarget, windowTarget])
      await pool?.query(`DROP TABLE IF EXISTS ${t}`);
    await pool?.query(`DROP FUNCTION IF EXISTS ${targetWrites}()`);
    await clickhouse?.close();
    await pool?.end();
  });

  const count = async (table: string) =>
    Number((await pool.query(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM ${table}`)).rows[0].n);

  it('runs extract → transform → load in order and loads each record once, across re-runs', async () => {
    const pipeline = loadPipeline(
      writePipeline(`name: it-three
params: { min: 0 }
tasks:
  load:
    kind: load
    needs: [clean]
    sink:
      kind: postgres
      url: \${PG_URL}
      table: ${target}
      create_table: { columns: { tenant: text, n: integer, twice: integer } }
  clean:
    kind: transform
    needs: [extract]
    steps:
      - { kind: filter, expr: "value.n % 2 == 0" }
      - { kind: map, value: "{ tenant: value.tenant, n: value.n, twice: value.n * 2 }" }
  extract:
    kind: extract
    source:
      kind: clickhouse
      url: \${CLICKHOUSE_URL}
      query: "SELECT id, tenant, n FROM ${source} WHERE n >= {min:Int32} ORDER BY id"
    id: value.id
`),
    );
    const runId = await pipelines.start(pipeline);
    const status = await runOutcome(pipelines, runId);
    expect(status.state).toBe('completed');
    const t = byTask(status);
    expect(status.tasks.map((x) => [x.task, x.state, x.attempts])).toEqual([
      ['extract', 'completed', 1],
      ['clean', 'completed', 1],
      ['load', 'completed', 1],
    ]);
    expect(t.extract?.output?.rows).toBe(500);
    expect(t.clean?.output?.rows).toBe(250);
    expect(t.load?.output?.rows).toBe(250);
    // Each task started after the one it needs had finished.
    expect(t.clean?.startedAt?.getTime()).toBeGreaterThanOrEqual(t.extract?.finishedAt?.getTime() as number);
    expect(t.load?.startedAt?.getTime()).toBeGreaterThanOrEqual(t.clean?.finishedAt?.getTime() as number);

    expect(await count(target)).toBe(250);
    // Loaded once: each record was written once (the table's key alone would hide a second write).
    expect(await count(targetWrites)).toBe(250);
    const { rows } = await pool.query(`SELECT id, tenant, n, twice FROM ${target} WHERE id = 'r0042'`);
    expect(rows).toEqual([{ id: 'r0042', tenant: 't0', n: 42, twice: 84 }]);
    // Redis carries references, not records: job data names the run and task, results a staging table.
    const extractJob = await Job.fromId(pipelines.queue, taskJobId(runId, 'extract'));
    expect(extractJob?.data).toEqual({ runId, task: 'extract' });
    expect(extractJob?.returnvalue).toEqual({
      table: expect.stringMatching(/^stage_[0-9a-f]{24}$/),
      rows: 500,
    });
    const loadJob = await Job.fromId(pipelines.queue, taskJobId(runId, 'load'));
    expect(JSON.stringify(loadJob?.returnvalue).length).toBeLessThan(200);
    // The staging tables of a completed run are dropped.
    const staged = await pool.query(
      `SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = $1 AND table_name LIKE 'stage_%'`,
      [config.schema],
    );
    expect(Number(staged.rows[0].n)).toBe(0);

    // The same run id again adds nothing: no task runs a second time.
    await pipelines.start(pipeline, {}, { runId });
    await new Promise((r) => setTimeout(r, 1500));
    const again = (await pipelines.status(runId)) as RunStatus;
    expect(again.tasks.map((x) => x.attempts)).toEqual([1, 1, 1]);
    expect(await count(targetWrites)).toBe(250);
    // A run id names one run of one pipeline: another pipeline cannot take it over.
    const other = loadPipeline(
      writePipeline(`name: it-other
tasks:
  x: { kind: extract, source: { kind: postgres, query: "SELECT 1" } }
`),
    );
    await expect(pipelines.start(other, {}, { runId })).rejects.toThrow(
      `run id '${runId}' is taken by a run of pipeline 'it-three'`,
    );
    await expect(pipelines.start(other, {}, { runId: 'a:b' })).rejects.toThrow(/run id 'a:b': expected/);

    // A new run over the same rows upserts the same ids: still 250 rows.
    const second = await runOutcome(pipelines, await pipelines.start(pipeline, { min: '0' }));
    expect(second.state).toBe('completed');
    expect(await count(target)).toBe(250);
    expect(await count(targetWrites)).toBe(500);
  });

  it('runs a diamond: a need shared by two tasks runs once and both wait for it', async () => {
    // n is a bigint: it must reach the filters as a number (pg's default is a string, which `%` refuses).
    const pipeline = loadPipeline(
      writePipeline(`name: it-diamond
tasks:
  numbers:
    kind: extract
    source: { kind: postgres, url: "\${PG_URL}", query: "SELECT g::bigint AS n FROM generate_series(1, 100) g" }
    id: string(value.n)
  evens:
    kind: transform
    needs: [numbers]
    steps: [{ kind: filter, expr: "value.n % 2 == 0" }]
  odds:
    kind: transform
    needs: [numbers]
    steps: [{ kind: filter, expr: "value.n % 2 == 1" }]
  load:
    kind: load
    needs: [evens, odds]
    sink: { kind: postgres, url: "\${PG_URL}", table: ${diamondTarget}, create_table: { columns: { n: integer } } }
`),
    );
    const status = await runOutcome(pipelines, await pipelines.start(pipeline));
    expect(status.state).toBe('completed');
    const t = byTask(status);
    expect(t.numbers?.attempts).toBe(1);
    for (const name of ['evens', 'odds'] as const) {
      expect(t[name]?.startedAt?.getTime()).toBeGreaterThanOrEqual(
        t.numbers?.finishedAt?.getTime() as number,
      );
      expect(t[name]?.output?.rows).toBe(50);
    }
    expect(await count(diamondTarget)).toBe(100);
  });

  it("closes every window at the end of a transform's input, the last one included", async () => {
    // Ten minutes of one record per second: ten one-minute windows of 60 records each. The last
    // window's end is never passed by a record; the end of the input closes it.
    const pipeline = loadPipeline(
      writePipeline(`name: it-window
tasks:
  seconds:
    kind: extract
    source:
      kind: postgres
      url: "\${PG_URL}"
      query: "SELECT g::bigint AS n, (1767225600000 + g * 1000)::bigint AS ts FROM generate_series(0, 599) g"
    id: string(value.n)
  minutes:
    kind: transform
    needs: [seconds]
    steps:
      - { kind: window, type: tumbling, size: 1m, grace: 1m, time: { field: ts }, aggregates: { total: { op: sum, field: n } } }
  load:
    kind: load
    needs: [minutes]
    sink: { kind: postgres, url: "\${PG_URL}", table: ${windowTarget}, columns: { window_start: window_start, count: count, total: total }, create_table: { columns: { window_start: bigint, count: integer, total: bigint } } }
`),
    );
    const status = await runOutcome(pipelines, await pipelines.start(pipeline));
    expect(status.state).toBe('completed');
    const { rows } = await pool.query(
      `SELECT window_start, count, total FROM ${windowTarget} ORDER BY window_start`,
    );
    expect(
      rows.map((r) => [(Number(r.window_start) - 1767225600000) / 60_000, r.count, Number(r.total)]),
    ).toEqual(Array.from({ length: 10 }, (_, m) => [m, 60, 60 * (60 * m) + (59 * 60) / 2]));
  });

  it('retries a failing task with backoff, then fails the run with a clear status', async () => {
    const pipeline = loadPipeline(
      writePipeline(`name: it-failing
tasks:
  extract:
    kind: extract
    retries: 2
    backoff: 100ms
    source: { kind: postgres, url: "\${PG_URL}", query: "SELECT * FROM no_such_table_${id}" }
  load:
    kind: load
    needs: [extract]
    sink: { kind: discard }
`),
    );
    const started = Date.now();
    const status = await runOutcome(pipelines, await pipelines.start(pipeline));
    expect(status.state).toBe('failed');
    expect(status.run.error).toBe(`task 'extract' failed: relation "no_such_table_${id}" does not exist`);
    const t = byTask(status);
    expect(t.extract).toMatchObject({ state: 'failed', attempts: 3 });
    expect(t.extract?.error).toMatch(/no_such_table/);
    expect(t.load).toMatchObject({
      state: 'failed',
      attempts: 0,
      error: "not run: it needs 'extract', which failed",
    });
    // Backoff: 100 ms, then 200 ms.
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    // What `flotilla pipeline status RUN` prints: the run's error, then each task's state and error.
    const shown = formatStatus(status).split('\n');
    expect(shown[0]).toMatch(/^run it-failing-\S+ {2}pipeline it-failing {2}failed {2}\(manual\)$/);
    expect(shown).toContain(`error: task 'extract' failed: relation "no_such_table_${id}" does not exist`);
    expect(shown).toContainEqual(
      expect.stringMatching(
        /^extract +extract +failed +3 +\S+ \S+ +\d+\.\ds +relation "no_such_table_\d+" does not exist$/,
      ),
    );
    expect(shown).toContainEqual(
      expect.stringMatching(/^load +load +failed +not run: it needs 'extract', which failed$/),
    );
  });

  it('ignores a failed task declared on_failure: ignore; its dependents run without its records', async () => {
    const pipeline = loadPipeline(
      writePipeline(`name: it-ignore
tasks:
  good:
    kind: extract
    source: { kind: postgres, url: "\${PG_URL}", query: "SELECT g AS n FROM generate_series(1, 10) g" }
  flaky:
    kind: extract
    retries: 0
    on_failure: ignore
    source: { kind: postgres, url: "\${PG_URL}", query: "SELECT 1 / 0 AS n" }
  load:
    kind: load
    needs: [good, flaky]
    sink: { kind: postgres, url: "\${PG_URL}", table: ${ignoredTarget}, create_table: { columns: { n: integer } } }
`),
    );
    const status = await runOutcome(pipelines, await pipelines.start(pipeline));
    expect(status.state).toBe('completed');
    expect(status.run.error).toBe('ignored failed tasks: flaky');
    expect(byTask(status).flaky).toMatchObject({ state: 'failed', error: 'division by zero' });
    expect(await count(ignoredTarget)).toBe(10);
  });
  it('extracts a Kafka topic range by timestamps, decodes it in a transform and loads it', async () => {
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    const topic = unique('it-pipe-range');
    await createTopic(admin, topic, 2);
    const base = Date.UTC(2026, 0, 1);
    await produce(
      kafka,
      topic,
      Array.from({ length: 100 }, (_, i) => ({
        key: `k${i % 7}`,
        value: JSON.stringify({ i }),
        timestamp: String(base + i * 1000),
      })),
    );
    const pipeline = loadPipeline(
      writePipeline(`name: it-kafka
params: { from: "2026-01-01T00:00:10Z" }
tasks:
  range:
    kind: extract
    source: { kind: kafka, brokers: "\${KAFKA_BROKERS}", topic: ${topic}, from: "{from}", to: ${base + 60_000} }
  decoded:
    kind: transform
    needs: [range]
    steps: [{ kind: decode, format: json }]
  load:
    kind: load
    needs: [decoded]
    sink: { kind: postgres, url: "\${PG_URL}", table: ${kafkaTarget}, create_table: { columns: { i: integer } } }
`),
    );
    const status = await runOutcome(pipelines, await pipelines.start(pipeline));
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
    expect(status.state).toBe('completed');
    // Timestamps 10 s … 59 s: records 10 to 59, each once, with its topic/partition/offset id.
    expect(byTask(status).range?.output?.rows).toBe(50);
    const { rows } = await pool.query(`SELECT min(i) AS lo, max(i) AS hi, count(*) AS n FROM ${kafkaTarget}`);
    expect(rows[0]).toEqual({ lo: 10, hi: 59, n: '50' });
    const ids = await pool.query(`SELECT id FROM ${kafkaTarget} WHERE id NOT LIKE $1`, [`${topic}/%/%`]);
    expect(ids.rows).toEqual([]);
  });
  it('starts runs on a cron schedule, each scheduled time once, and removes a schedule that is gone', async () => {
    const pipeline = loadPipeline(
      writePipeline(`name: it-cron
params: { n: 1 }
schedule: { cron: "*/2 * * * * *", params: { n: 3 } }
tasks:
  numbers:
    kind: extract
    source: { kind: postgres, url: "\${PG_URL}", query: "SELECT g AS n FROM generate_series(1, {n}::int) g" }
`),
    );
    const scheduler = new PipelineScheduler(config, pipelines, pino({ level: 'silent' }));
    try {
      expect(await scheduler.sync([pipeline])).toEqual(['it-cron']);
      await scheduler.start();
      await waitFor(
        'a scheduled run to complete',
        async () => (await pipelines.store.recentRuns(5, 'it-cron')).some((r) => r.state === 'completed'),
        15_000,
      );
      const run = (await pipelines.store.recentRuns(5, 'it-cron')).find((r) => r.state === 'completed');
      expect(run).toMatchObject({ trigger: 'schedule', params: { n: 3 } });
      expect(run?.runId).toMatch(/^it-cron-\d{8}T\d{6}Z-cron$/);
      expect(((await pipelines.status(run?.runId as string)) as RunStatus).tasks[0]?.output?.rows).toBe(3);
      expect(await scheduler.scheduled()).toEqual(['it-cron']);
      expect(await scheduler.sync([])).toEqual([]);
      expect(await scheduler.scheduled()).toEqual([]);
    } finally {
      await scheduler.close();
    }
  });
});
