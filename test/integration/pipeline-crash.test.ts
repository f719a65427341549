import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPipeline } from '../../src/jobs/pipeline.js';
import { Pipelines } from '../../src/jobs/runner.js';
import { dropJobsState, runOutcome, testJobsConfig, writePipeline } from '../support/pipelines.js';
import { connectOrExplain, repoRoot, serviceUrl } from '../support/services.js';
import { waitFor } from '../support/wait.js';

const id = process.pid;
const target = `it_crash_out_${id}`;
const calls = `it_crash_calls_${id}`;
const slow = `it_crash_slow_${id}`;

describe('a pipeline worker killed in the middle of a load', () => {
  const config = testJobsConfig('pipecrash');
  let pool: pg.Pool;
  let pipelines: Pipelines;
  const children: ChildProcess[] = [];

  /** Starts a worker process; resolves when it takes tasks. */
  async function startWorker(): Promise<ChildProcess> {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(repoRoot, 'test/support/pipeline-worker.ts')],
      {
        cwd: repoRoot,
        env: { ...process.env, JOBS_CONFIG: JSON.stringify(config) },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`worker exited (${code}) before it was ready`)));
    });
    return child;
  }

  beforeAll(async () => {
    pool = await connectOrExplain('PG_URL', async () => {
      const p = new pg.Pool({ connectionString: serviceUrl('PG_URL'), max: 2 });
      await p.query('SELECT 1');
      return p;
    });
    await pool.query(`DROP TABLE IF EXISTS ${target}, ${calls}`);
    await pool.query(`CREATE TABLE ${target} (id text PRIMARY KEY, n integer)`);
    await pool.query(`CREATE TABLE ${calls} (n integer)`);
    // Every row written takes 20 ms and is counted: the load is slow enough to be killed in,
    // and the count shows how often rows were written.
    await pool.query(`CREATE OR REPLACE FUNCTION ${slow}() RETURNS trigger AS $$
      BEGIN PERFORM pg_sleep(0.02); INSERT INTO ${calls} VALUES (NEW.n); RETURN NEW; END $$ LANGUAGE plpgsql`);
    await pool.query(
      `CREATE TRIGGER ${slow} BEFORE INSERT ON ${target} FOR EACH ROW EXECUTE PROCEDURE ${slow}()`,
    );
    pipelines = new Pipelines(config);
  });

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await pipelines?.close();
    await dropJobsState(config);
    await pool?.query(`DROP TABLE IF EXISTS ${target}, ${calls}`);
    await pool?.query(`DROP FUNCTION IF EXISTS ${slow}()`);
    await pool?.end();
  });

  const count = async (table: string) =>
    Number((await pool.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);

  it('runs the task again on a restarted worker and loads every record exactly once', async () => {
    const pipeline = loadPipeline(
      writePipeline(`name: it-crash
tasks:
  numbers:
    kind: extract
    source: { kind: postgres, url: "\${PG_URL}", query: "SELECT g AS n FROM generate_series(1, 300) g" }
    id: string(value.n)
  load:
    kind: load
    needs: [numbers]
    sink:
      kind: postgres
      url: \${PG_URL}
      table: ${target}
      batch: { max_rows: 20 }
`),
    );
    const first = await startWorker();
    const runId = await pipelines.start(pipeline);
    // Killed once some statements of the load are committed, long before all 300 rows are.
    await waitFor('the load to commit its first rows', async () => (await count(target)) > 0, 30_000);
    first.kill('SIGKILL');
    const partial = await count(target);
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(300);

    await startWorker();
    const status = await runOutcome(pipelines, runId, 60_000);
    expect(status.state).toBe('completed');
    expect(status.tasks.map((t) => [t.task, t.state])).toEqual([
      ['numbers', 'completed'],
      ['load', 'completed'],
    ]);
    // The extract had completed: it did not run again.
    expect(status.tasks[0]?.attempts).toBe(1);
    expect(await count(target)).toBe(300);
    const distinct = await pool.query(`SELECT count(DISTINCT id) AS n, sum(n) AS total FROM ${target}`);
    expect(Number(distinct.rows[0].n)).toBe(300);
    expect(Number(distinct.rows[0].total)).toBe((300 * 301) / 2);
    // The rows the killed attempt had committed were written again (upserted), not added twice.
    expect(await count(calls)).toBeGreaterThanOrEqual(300 + partial);
  });
});
