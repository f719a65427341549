/**
 * A `flotilla jobs` worker in a child process, for tests that kill it: `JOBS_CONFIG` (JSON of a
 * JobsConfig) says where its queues and tables are; short locks make a killed worker's task
 * run again within seconds. Prints `ready` once it takes tasks.
 */
import { pino } from 'pino';
import type { JobsConfig } from '../../src/jobs/config.js';
import { PipelineWorkers } from '../../src/jobs/runner.js';

const config = JSON.parse(process.env.JOBS_CONFIG ?? '') as JobsConfig;
const workers = new PipelineWorkers(config, {
  concurrency: 2,
  lockDurationMs: 2_000,
  stalledIntervalMs: 1_000,
  logger: pino({ level: 'warn' }),
});
await workers.start();
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  void workers.close().then(() => process.exit(0));
});
