import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, FlotillaError } from '../core/errors.js';
import { jobsConfigFromEnv } from '../jobs/config.js';
import { loadPipeline, parseParamArgs } from '../jobs/pipeline.js';
import { Pipelines, type RunStatus, type TaskStatus } from '../jobs/runner.js';
import type { Command } from './main.js';
import { formatCount, Progress } from './progress.js';

const USAGE = `Usage:
  flotilla pipeline validate FILE...
  flotilla pipeline run FILE [--param NAME=VALUE]... [--run-id ID] [--wait]
  flotilla pipeline status [RUN] [--wait]

validate  checks pipeline files (schema, needs, cycles, parameters); every problem with file, line and path.
run       starts a run of FILE; the workers of 'flotilla jobs' execute it. With --wait, shows
          progress until it ends (exit 0 if it completed, 1 if it failed). --run-id gives the run
          an id of your choosing: starting the same id again adds nothing (tasks run once).
status    without RUN: the latest runs; with RUN: its tasks, states, timings and errors
          (--wait: a progress bar until the run ends).

Redis and PostgreSQL: REDIS_URL and PG_URL (default: the local services).`;

const POLL_MS = 500;

function seconds(from: Date | null, to: Date | null): string {
  if (!from) return '';
  return `${(((to ?? new Date()).getTime() - from.getTime()) / 1000).toFixed(1)}s`;
}

function time(d: Date | null): string {
  return d
    ? d
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z')
    : '';
}

function rowsOf(t: TaskStatus): string {
  if (t.output) {
    const dead = t.output.deadLetters ? ` (${formatCount(t.output.deadLetters)} dead letters)` : '';
    const version =
      t.output.details?.version !== undefined ? ` → version ${String(t.output.details.version)}` : '';
    return `${formatCount(t.output.rows)}${dead}${version}`;
  }
  return t.progress !== null ? `${formatCount(t.progress)}…` : '';
}

/** A table with columns padded to their widest cell. */
function table(rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function formatStatus(s: RunStatus): string {
  const { run } = s;
  const params = Object.entries(run.params)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ');
  const head = [
    `run ${run.runId}  pipeline ${run.pipeline}  ${s.state}  (${run.trigger})`,
    `started ${time(run.createdAt)}${run.finishedAt ? `  finished ${time(run.finishedAt)}  took ${seconds(run.createdAt, run.finishedAt)}` : ''}${params ? `  params ${params}` : ''}`,
    ...(run.error ? [`error: ${run.error}`] : []),
    '',
  ];
  const rows = [
    ['TASK', 'KIND', 'STATE', 'ATTEMPTS', 'STARTED', 'DURATION', 'ROWS', 'ERROR'],
    ...s.tasks.map((t) => [
      t.task,
      t.kind,
      t.state,
      t.attempts ? String(t.attempts) : '',
      time(t.startedAt),
      seconds(t.startedAt, t.finishedAt),
      rowsOf(t),
      t.error ?? '',
    ]),
  ];
  return `${head.join('\n')}\n${table(rows)}`;
}

/** Polls until the run ends, with a progress bar of finished tasks; returns the final status. */
async function waitForRun(pipelines: Pipelines, runId: string): Promise<RunStatus> {
  let status = await pipelines.status(runId);
  if (!status) throw new FlotillaError(`no run '${runId}'`);
  const progress = new Progress({ label: `run ${runId}`, total: status.tasks.length, unit: 'tasks' });
  try {
    while (status.state === 'running') {
      progress.update(
        status.tasks.filter((t) => ['completed', 'failed', 'skipped'].includes(t.state)).length,
      );
      await sleep(POLL_MS);
      status = (await pipelines.status(runId)) as RunStatus;
    }
    progress.update(status.tasks.filter((t) => t.state === 'completed').length);
  } finally {
    progress.finish();
  }
  return status;
}

async function validateFiles(files: string[]): Promise<number> {
  let failed = 0;
  for (const file of files) {
    try {
      const p = loadPipeline(file);
      const schedule = p.config.schedule
        ? `, schedule '${p.config.schedule.cron}' ${p.config.schedule.tz}`
        : '';
      console.log(`${file}: ok (${p.config.name}: ${p.order.join(' → ')}${schedule})`);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      failed++;
      console.error(err.message);
    }
  }
  return failed ? 1 : 0;
}

async function withPipelines<T>(work: (p: Pipelines) => Promise<T>): Promise<T> {
  const pipelines = new Pipelines(jobsConfigFromEnv());
  try {
    return await work(pipelines);
  } finally {
    await pipelines.close();
  }
}

async function warnWithoutWorkers(pipelines: Pipelines): Promise<void> {
  if ((await pipelines.workerCount()) === 0) {
    console.error("no worker is connected: the run waits until 'flotilla jobs' runs");
  }
}

async function runPipeline(file: string, values: Record<string, unknown>): Promise<number> {
  const pipeline = loadPipeline(file);
  const params = parseParamArgs((values.param as string[] | undefined) ?? []);
  return withPipelines(async (pipelines) => {
    const runId = await pipelines.start(pipeline, params, { runId: values['run-id'] as string | undefined });
    console.log(`run ${runId} started (${pipeline.order.length} tasks)`);
    await warnWithoutWorkers(pipelines);
    if (!values.wait) return 0;
    const status = await waitForRun(pipelines, runId);
    console.log(formatStatus(status));
    return status.state === 'completed' ? 0 : 1;
  });
}

async function showStatus(runId: string | undefined, wait: boolean): Promise<number> {
  return withPipelines(async (pipelines) => {
    if (!runId) {
      const runs = await pipelines.store.recentRuns(20);
      if (runs.length === 0) console.log('no runs yet');
      else
        console.log(
          table([
            ['RUN', 'PIPELINE', 'STATE', 'STARTED', 'DURATION', 'ERROR'],
            ...runs.map((r) => [
              r.runId,
              r.pipeline,
              r.state,
              time(r.createdAt),
              seconds(r.createdAt, r.finishedAt),
              r.error ?? '',
            ]),
          ]),
        );
      return 0;
    }
    const status = wait ? await waitForRun(pipelines, runId) : await pipelines.status(runId);
    if (!status) {
      console.error(`flotilla pipeline status: no run '${runId}'`);
      return 1;
    }
    console.log(formatStatus(status));
    if (status.state === 'running') await warnWithoutWorkers(pipelines);
    return status.state === 'failed' ? 1 : 0;
  });
}

export const pipeline: Command = {
  summary: 'validate pipeline files, start runs, show their status',
  usage: USAGE,
  options: {
    param: { type: 'string', multiple: true, short: 'p' },
    'run-id': { type: 'string' },
    wait: { type: 'boolean', short: 'w' },
  },
  async run({ positionals, values }) {
    const [sub, ...args] = positionals;
    switch (sub) {
      case 'validate':
        if (args.length === 0) break;
        return validateFiles(args);
      case 'run':
        if (args.length !== 1) break;
        return runPipeline(args[0] as string, values);
      case 'status':
        if (args.length > 1) break;
        return showStatus(args[0], values.wait === true);
    }
    console.error(
      `flotilla pipeline: ${sub ? `unexpected arguments for '${sub}'` : 'a subcommand is required'}\n\n${USAGE}`,
    );
    return 2;
  },
};
