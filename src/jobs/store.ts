import { createHash } from 'node:crypto';
import pg from 'pg';
import type { DeadLetter, FlotillaRecord } from '../core/record.js';
import { DEFAULT_JOBS_SCHEMA } from './config.js';
import type { ParamValue } from './pipeline-schema.js';

/** `"name"`, quoted for SQL. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export type RunState = 'running' | 'completed' | 'failed';
export type TaskState = 'running' | 'retrying' | 'completed' | 'failed';

export interface RunRecord {
  runId: string;
  pipeline: string;
  file: string;
  definition: string;
  params: Record<string, ParamValue>;
  trigger: 'manual' | 'schedule';
  state: RunState;
  error: string | null;
  createdAt: Date;
  finishedAt: Date | null;
}

/** What a task hands to its dependents and shows in the status: small, never the data itself. */
export interface TaskOutput {
  /** Staging table holding the task's records (extract, transform). */
  table?: string;
  /** Records staged, loaded or fitted. */
  rows: number;
  /** Records that went to the dead-letter table (a step or the sink refused them). */
  deadLetters?: number;
  /** Anything else worth showing (a model version...). */
  details?: Record<string, unknown>;
}

export interface TaskRecord {
  runId: string;
  task: string;
  state: TaskState;
  attempts: number;
  startedAt: Date | null;
  finishedAt: Date | null;
  error: string | null;
  output: TaskOutput | null;
}

/** Records staged per INSERT: one JSON parameter each, so memory per statement stays bounded. */
const STAGE_ROWS_PER_STATEMENT = 1000;

/**
 * The PostgreSQL side of pipelines: runs and their tasks (state, timings, errors, outputs), the
 * staging tables tasks pass records through, and dead letters. Everything lives in one schema.
 */
export class JobsStore {
  readonly pool: pg.Pool;
  private ready: Promise<void> | undefined;

  constructor(
    url: string,
    readonly schema = DEFAULT_JOBS_SCHEMA,
  ) {
    this.pool = new pg.Pool({ connectionString: url, max: 4 });
    // An idle client's connection error (server restart) must not crash the process.
    this.pool.on('error', () => {});
  }

  private t(table: string): string {
    return `${quoteIdent(this.schema)}.${quoteIdent(table)}`;
  }

  /** Creates the schema and tables once per process (several processes may race: a lock orders them). */
  init(): Promise<void> {
    this.ready ??= this.withTransaction(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`flotilla-jobs-ddl:${this.schema}`]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(this.schema)}`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.t('pipeline_runs')} (
        run_id text PRIMARY KEY,
        pipeline text NOT NULL,
        file text NOT NULL,
        definition text NOT NULL,
        params jsonb NOT NULL,
        trigger text NOT NULL,
        state text NOT NULL,
        error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz)`);
      await c.query(
        `CREATE INDEX IF NOT EXISTS pipeline_runs_created ON ${this.t('pipeline_runs')} (created_at DESC)`,
      );
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.t('pipeline_tasks')} (
        run_id text NOT NULL REFERENCES ${this.t('pipeline_runs')} ON DELETE CASCADE,
        task text NOT NULL,
        state text NOT NULL,
        attempts integer NOT NULL,
        started_at timestamptz,
        finished_at timestamptz,
        error text,
        output jsonb,
        PRIMARY KEY (run_id, task))`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.t('pipeline_dead_letters')} (
        run_id text NOT NULL,
        task text NOT NULL,
        record_id text NOT NULL,
        step text NOT NULL,
        reason text NOT NULL,
        error text NOT NULL,
        record jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, task, record_id))`);
    });
    return this.ready;
  }

  async withTransaction<T>(work: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  /** Records a new run; an existing run id is left as it is (a schedule fired twice). */
  async createRun(run: Omit<RunRecord, 'state' | 'error' | 'createdAt' | 'finishedAt'>): Promise<boolean> {
    await this.init();
    const res = await this.pool.query(
      `INSERT INTO ${this.t('pipeline_runs')} (run_id, pipeline, file, definition, params, trigger, state)
       VALUES ($1, $2, $3, $4, $5, $6, 'running') ON CONFLICT (run_id) DO NOTHING`,
      [run.runId, run.pipeline, run.file, run.definition, JSON.stringify(run.params), run.trigger],
    );
    return res.rowCount === 1;
  }

  async run(runId: string): Promise<RunRecord | undefined> {
    await this.init();
    const res = await this.pool.query(`SELECT * FROM ${this.t('pipeline_runs')} WHERE run_id = $1`, [runId]);
    return res.rows[0] ? toRun(res.rows[0]) : undefined;
  }

  async recentRuns(limit: number, pipeline?: string): Promise<RunRecord[]> {
    await this.init();
    const res = await this.pool.query(
      `SELECT * FROM ${this.t('pipeline_runs')} WHERE $1::text IS NULL OR pipeline = $1
       ORDER BY created_at DESC LIMIT $2`,
      [pipeline ?? null, limit],
    );
    return res.rows.map(toRun);
  }

  /** Ends a run; a run already ended keeps its first outcome (a failure is not overwritten). */
  async finishRun(runId: string, state: 'completed' | 'failed', error?: string): Promise<void> {
    await this.pool.query(
      `UPDATE ${this.t('pipeline_runs')} SET state = $2, error = $3, finished_at = now()
       WHERE run_id = $1 AND state = 'running'`,
      [runId, state, error ?? null],
    );
  }

  async tasks(runId: string): Promise<TaskRecord[]> {
    await this.init();
    const res = await this.pool.query(`SELECT * FROM ${this.t('pipeline_tasks')} WHERE run_id = $1`, [runId]);
    return res.rows.map(toTask);
  }

  async task(runId: string, task: string): Promise<TaskRecord | undefined> {
    const res = await this.pool.query(
      `SELECT * FROM ${this.t('pipeline_tasks')} WHERE run_id = $1 AND task = $2`,
      [runId, task],
    );
    return res.rows[0] ? toTask(res.rows[0]) : undefined;
  }

  async startTask(runId: string, task: string, attempt: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.t('pipeline_tasks')} (run_id, task, state, attempts, started_at)
       VALUES ($1, $2, 'running', $3, now())
       ON CONFLICT (run_id, task) DO UPDATE SET state = 'running', attempts = $3,
         started_at = COALESCE(${this.t('pipeline_tasks')}.started_at, now()), finished_at = NULL`,
      [runId, task, attempt],
    );
  }

  async completeTask(runId: string, task: string, output: TaskOutput): Promise<void> {
    await this.pool.query(
      `UPDATE ${this.t('pipeline_tasks')} SET state = 'completed', finished_at = now(), error = NULL, output = $3
       WHERE run_id = $1 AND task = $2`,
      [runId, task, JSON.stringify(output)],
    );
  }

  /** Records a failed attempt (also of a task that failed before it started: a need had failed). */
  async failTask(
    runId: string,
    task: string,
    state: 'retrying' | 'failed',
    error: string,
    attempt: number,
  ): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.t('pipeline_tasks')} (run_id, task, state, attempts, started_at, finished_at, error)
       VALUES ($1, $2, $3, $5, now(), CASE WHEN $3 = 'failed' THEN now() END, $4)
       ON CONFLICT (run_id, task) DO UPDATE SET state = $3, error = $4, attempts = $5,
         finished_at = CASE WHEN $3 = 'failed' THEN now() END`,
      [runId, task, state, error, attempt],
    );
  }

  /** Staging table of one task of one run (the name is a hash: identifiers are limited to 63 bytes). */
  stagingTable(runId: string, task: string): string {
    return `stage_${createHash('sha256').update(`${runId}\u0000${task}`).digest('hex').slice(0, 24)}`;
  }

  /** An empty staging table for a task (emptied if an earlier attempt left rows in it). */
  async openStaging(runId: string, task: string): Promise<StagingWriter> {
    const table = this.stagingTable(runId, task);
    await this.pool.query(`CREATE TABLE IF NOT EXISTS ${this.t(table)} (
      seq bigint PRIMARY KEY, id text NOT NULL, key text, value jsonb, raw bytea,
      ts bigint NOT NULL, headers jsonb NOT NULL, source jsonb NOT NULL)`);
    await this.pool.query(`TRUNCATE ${this.t(table)}`);
    return new StagingWriter(this.pool, this.t(table), table);
  }

  /** The records of a staging table in the order they were staged, `pageSize` at a time. */
  async *readStaging(table: string, pageSize: number): AsyncGenerator<FlotillaRecord[]> {
    let after = -1;
    for (;;) {
      const res = await this.pool.query(
        `SELECT seq, id, key, value, raw, ts, headers, source FROM ${this.t(table)}
         WHERE seq > $1 ORDER BY seq LIMIT $2`,
        [after, pageSize],
      );
      if (res.rows.length === 0) return;
      after = Number(res.rows[res.rows.length - 1].seq);
      yield res.rows.map(
        (r): FlotillaRecord => ({
          id: r.id,
          key: r.key,
          value: r.raw ?? r.value,
          timestamp: Number(r.ts),
          headers: r.headers,
          source: r.source,
        }),
      );
    }
  }

  /** Drops the staging tables of a run's tasks. */
  async dropStaging(runId: string, tasks: readonly string[]): Promise<void> {
    for (const task of tasks) {
      await this.pool.query(`DROP TABLE IF EXISTS ${this.t(this.stagingTable(runId, task))}`);
    }
  }

  /** Keeps records a step or a sink refused (idempotent on the record id: a retry adds nothing). */
  async deadLetter(runId: string, task: string, letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const rows = letters.map((d) => ({
      record_id: d.record.id,
      step: d.step,
      reason: d.reason,
      error: d.error,
      record: { ...d.record, value: recordValueJson(d.record.value) },
    }));
    await this.pool.query(
      `INSERT INTO ${this.t('pipeline_dead_letters')} (run_id, task, record_id, step, reason, error, record)
       SELECT $1, $2, x.record_id, x.step, x.reason, x.error, x.record
       FROM jsonb_to_recordset($3::jsonb) AS x(record_id text, step text, reason text, error text, record jsonb)
       ON CONFLICT DO NOTHING`,
      [runId, task, JSON.stringify(rows)],
    );
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

function recordValueJson(value: unknown): unknown {
  return Buffer.isBuffer(value) ? { base64: value.toString('base64') } : value;
}

/** Appends records to one staging table, in order. */
export class StagingWriter {
  private seq = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly qualified: string,
    readonly table: string,
  ) {}

  get rows(): number {
    return this.seq;
  }

  async write(records: readonly FlotillaRecord[]): Promise<void> {
    for (let i = 0; i < records.length; i += STAGE_ROWS_PER_STATEMENT) {
      const rows = records.slice(i, i + STAGE_ROWS_PER_STATEMENT).map((r) => {
        const raw = Buffer.isBuffer(r.value);
        return {
          seq: this.seq++,
          id: r.id,
          key: r.key,
          value: raw ? null : (r.value ?? null),
          raw: raw ? (r.value as Buffer).toString('base64') : null,
          ts: r.timestamp,
          headers: r.headers,
          source: r.source,
        };
      });
      await this.pool.query(
        `INSERT INTO ${this.qualified} (seq, id, key, value, raw, ts, headers, source)
         SELECT x.seq, x.id, x.key, x.value, decode(x.raw, 'base64'), x.ts, x.headers, x.source
         FROM jsonb_to_recordset($1::jsonb)
           AS x(seq bigint, id text, key text, value jsonb, raw text, ts bigint, headers jsonb, source jsonb)`,
        [JSON.stringify(rows)],
      );
    }
  }
}

function toRun(r: Record<string, unknown>): RunRecord {
  return {
    runId: r.run_id as string,
    pipeline: r.pipeline as string,
    file: r.file as string,
    definition: r.definition as string,
    params: r.params as Record<string, ParamValue>,
    trigger: r.trigger as RunRecord['trigger'],
    state: r.state as RunState,
    error: (r.error as string | null) ?? null,
    createdAt: r.created_at as Date,
    finishedAt: (r.finished_at as Date | null) ?? null,
  };
}

function toTask(r: Record<string, unknown>): TaskRecord {
  return {
    runId: r.run_id as string,
    task: r.task as string,
    state: r.state as TaskState,
    attempts: r.attempts as number,
    startedAt: (r.started_at as Date | null) ?? null,
    finishedAt: (r.finished_at as Date | null) ?? null,
    error: (r.error as string | null) ?? null,
    output: (r.output as TaskOutput | null) ?? null,
  };
}
