import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { JobsConfig } from '../../src/jobs/config.js';
import { type Pipelines, type RunStatus, TASK_QUEUE, TRIGGER_QUEUE } from '../../src/jobs/runner.js';
import { quoteIdent } from '../../src/jobs/store.js';
import { serviceUrl } from './services.js';
import { waitFor } from './wait.js';

/** Jobs settings of one test file: its own BullMQ prefix and PostgreSQL schema. */
export function testJobsConfig(name: string): JobsConfig {
  const id = `${name}_${process.pid}`;
  return {
    redisUrl: serviceUrl('REDIS_URL'),
    pgUrl: serviceUrl('PG_URL'),
    prefix: `it-${id}`,
    schema: `it_${id}`,
  };
}

/** Writes a pipeline file into a fresh folder; returns its path. */
export function writePipeline(
  text: string,
  name = 'pipeline.yaml',
  dir = mkdtempSync(path.join(tmpdir(), 'flotilla-pipe-')),
): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Waits until a run is over; returns its status. */
export async function runOutcome(
  pipelines: Pipelines,
  runId: string,
  timeoutMs = 60_000,
): Promise<RunStatus> {
  let status: RunStatus | undefined;
  await waitFor(
    `run ${runId} to end`,
    async () => {
      status = await pipelines.status(runId);
      return status !== undefined && status.state !== 'running';
    },
    timeoutMs,
  );
  return status as RunStatus;
}

/** Removes what a test file left: its queues and its schema. */
export async function dropJobsState(config: JobsConfig): Promise<void> {
  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  for (const name of [TASK_QUEUE, TRIGGER_QUEUE]) {
    const queue = new Queue(name, { connection, prefix: config.prefix });
    await queue.obliterate({ force: true });
    await queue.close();
  }
  connection.disconnect();
  const pool = new pg.Pool({ connectionString: config.pgUrl, max: 1 });
  await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(config.schema as string)} CASCADE`);
  await pool.end();
}
