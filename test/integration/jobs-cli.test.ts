import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPipeline } from '../../src/jobs/pipeline.js';
import { Pipelines } from '../../src/jobs/runner.js';
import { dropJobsState, runOutcome, testJobsConfig, writePipeline } from '../support/pipelines.js';
import { repoRoot } from '../support/services.js';
import { waitFor } from '../support/wait.js';

/** A port nobody listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('flotilla jobs (the Procfile process)', () => {
  const config = testJobsConfig('jobscli');
  const pipelines = new Pipelines(config);

  afterAll(async () => {
    await pipelines.close();
    await dropJobsState(config);
  });

  it('runs a pipeline started elsewhere, serves its task metrics, and stops on SIGTERM', async () => {
    const file = writePipeline(`name: it-jobs-cli
tasks:
  numbers:
    kind: extract
    source: { kind: postgres, url: "\${PG_URL}", query: "SELECT g AS n FROM generate_series(1, 10) g" }
    id: string(value.n)
`);
    const port = await freePort();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), 'jobs', '--port', String(port), file],
      {
        cwd: repoRoot,
        env: {
          ...process.env,
          FLOTILLA_JOBS_PREFIX: config.prefix,
          FLOTILLA_JOBS_SCHEMA: config.schema,
          REDIS_URL: config.redisUrl,
          PG_URL: config.pgUrl,
          FLOTILLA_LOG_FORMAT: 'json',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let logs = '';
    child.stderr.on('data', (d: Buffer) => {
      logs += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor('the jobs process to start', () => logs.includes('pipeline workers started'), 30_000);
      const status = await runOutcome(pipelines, await pipelines.start(loadPipeline(file)));
      expect(status.state).toBe('completed');
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(
        /flotilla_pipeline_task_attempts_total\{[^}]*pipeline="it-jobs-cli"[^}]*outcome="completed"[^}]*\} 1/,
      );
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 60_000);
});
