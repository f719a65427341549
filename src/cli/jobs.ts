import { readdirSync } from 'node:fs';
import path from 'node:path';
import { FlotillaError } from '../core/errors.js';
import { jobsConfigFromEnv } from '../jobs/config.js';
import { loadPipeline } from '../jobs/pipeline.js';
import { Pipelines, PipelineWorkers } from '../jobs/runner.js';
import { PipelineScheduler } from '../jobs/scheduler.js';
import { createLogger } from '../observability/logger.js';
import type { Command } from './main.js';
import { startEndpoints } from './run.js';

/** `pipelines/*.yaml` of the working directory, when no file is named. */
function defaultFiles(): string[] {
  const dir = 'pipelines';
  try {
    return readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f))
      .sort()
      .map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

function parseConcurrency(raw: unknown): number {
  if (raw === undefined) return 4;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new FlotillaError(`--concurrency: expected a whole number > 0, got '${String(raw)}'`);
  return n;
}

/**
 * Runs pipeline tasks and cron schedules until SIGTERM/SIGINT, which lets running tasks finish
 * (a task cut short anyway runs again elsewhere: tasks are idempotent).
 */
export const jobs: Command = {
  summary: 'run the BullMQ workers of pipeline tasks and the cron schedules of pipeline files',
  options: { concurrency: { type: 'string' }, port: { type: 'string' } },
  usage: `Usage: flotilla jobs [--concurrency N] [--port N] [FILE...]

Runs pipeline tasks (started by 'flotilla pipeline run' or by a schedule) and keeps the cron
schedules of the pipeline FILEs (default: pipelines/*.yaml) in Redis. Run as many as you like:
each task runs once, on one of them.

  --concurrency N   tasks this process runs at once (default 4)
  --port N          /metrics (task attempts, durations, runs), /health, /ready; as for
                    'flotilla run': FLOTILLA_HTTP_PORT, else PORT, else 9464 (a free one if
                    taken); 'off' disables

Redis and PostgreSQL: REDIS_URL and PG_URL (default: the local services).`,
  async run({ positionals, values }) {
    const logger = createLogger();
    const config = jobsConfigFromEnv();
    const files = positionals.length ? positionals : defaultFiles();
    const loaded = files.map((f) => loadPipeline(f));
    const server = await startEndpoints({ port: values.port as string | undefined }, logger);
    const workers = new PipelineWorkers(config, {
      concurrency: parseConcurrency(values.concurrency),
      logger,
    });
    const pipelines = new Pipelines(config);
    const scheduler = new PipelineScheduler(config, pipelines, logger);
    const scheduled = await scheduler.sync(loaded);
    await workers.start();
    await scheduler.start();
    logger.info({ pipelines: loaded.map((p) => p.config.name), scheduled }, 'pipeline workers started');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    logger.info('stopping: letting running tasks finish');
    await scheduler.close();
    await workers.close();
    await pipelines.close();
    await server?.stop();
    return 0;
  },
};
