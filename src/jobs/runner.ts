import { randomBytes } from 'node:crypto';
import {
  DelayedError,
  type FlowJob,
  FlowProducer,
  Job,
  type JobState,
  Queue,
  UnrecoverableError,
  Worker,
} from 'bullmq';
import { Redis } from 'ioredis';
import { ComponentConfigError, ConfigError } from '../core/errors.js';
import type { Logger } from '../observability/logger.js';
import type { JobsConfig } from './config.js';
import { runExtract } from './extract.js';
import { jobMetrics } from './metrics.js';
import { InvalidModelError, ModelRegistry } from './model-registry.js';
import { type LoadedPipeline, PipelineParamError, parsePipeline, resolveParams } from './pipeline.js';
import { type ParamValue, producesRecords, type TaskConfig } from './pipeline-schema.js';
import { runRetrain } from './retrain.js';
import { JobsStore, type RunRecord, type TaskOutput, type TaskRecord } from './store.js';
import { DeadLetterBuffer, TaskConfigError, type TaskContext, type TaskExecutor } from './task-context.js';
import { runLoad, runTransform } from './transform-load.js';

export const TASK_QUEUE = 'pipeline-tasks';
export const TRIGGER_QUEUE = 'pipeline-triggers';
/** Name of a run's root job, which finishes the run once every task is done. */
const ROOT = '_run';
/** How long a task whose needs (outside its flow subtree) are not done yet waits before looking again. */
const NEED_POLL_MS = 1_000;
/** Finished jobs stay in Redis this long for `pipeline status`; PostgreSQL keeps the runs after that. */
const KEEP_COMPLETED_S = 7 * 86_400;
const KEEP_FAILED_S = 30 * 86_400;

/** A run id given by the caller: it becomes part of BullMQ job ids (no ':', Redis' key separator). */
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** The BullMQ job id of a task of a run: pipeline, run and task, so adding it twice adds it once. */
export function taskJobId(runId: string, task: string): string {
  return `${runId}/${task}`;
}

function compactTime(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/** A new run id: the pipeline, the time and a random suffix (`metrics-20260101T030000Z-3f9a1c`). */
export function newRunId(pipeline: string, now = Date.now()): string {
  return `${pipeline}-${compactTime(now)}-${randomBytes(3).toString('hex')}`;
}

/** The run id of a scheduled run: the same for the same scheduled time, so a trigger fired twice starts one run. */
export function scheduledRunId(pipeline: string, scheduledAt: number): string {
  return `${pipeline}-${compactTime(scheduledAt)}-cron`;
}

function redis(url: string): Redis {
  // BullMQ blocks on its connections: no per-request retry limit.
  return new Redis(url, { maxRetriesPerRequest: null });
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

interface TaskJobData {
  runId: string;
  /** null: the run's root job. */
  task: string | null;
}

export type TaskStatusState =
  | 'pending'
  | 'waiting'
  | 'queued'
  | 'running'
  | 'retrying'
  | 'completed'
  | 'failed'
  | 'skipped';

export interface TaskStatus {
  task: string;
  kind: TaskConfig['kind'];
  needs: string[];
  state: TaskStatusState;
  attempts: number;
  startedAt: Date | null;
  finishedAt: Date | null;
  error: string | null;
  output: TaskOutput | null;
  /** Records handled so far by a running task. */
  progress: number | null;
}

export interface RunStatus {
  run: RunRecord;
  state: 'running' | 'completed' | 'failed';
  tasks: TaskStatus[];
}

/** A task state that no longer changes. */
const finished = (s: TaskStatusState) => s === 'completed' || s === 'failed' || s === 'skipped';

/**
 * Starts pipeline runs and reports their status: the client side (CLI, scheduler). A run is a
 * BullMQ flow whose tree follows the pipeline's DAG (see `flowTree`); `PipelineWorkers` run it.
 */
export class Pipelines {
  readonly store: JobsStore;
  private readonly connection: Redis;
  private readonly flows: FlowProducer;
  readonly queue: Queue;

  constructor(readonly config: JobsConfig) {
    this.store = new JobsStore(config.pgUrl, config.schema);
    this.connection = redis(config.redisUrl);
    const prefix = config.prefix ?? 'flotilla';
    this.flows = new FlowProducer({ connection: this.connection, prefix });
    this.queue = new Queue(TASK_QUEUE, { connection: this.connection, prefix });
  }

  /**
   * Records a run and adds its flow. An existing run id adds nothing new: the jobs keep their
   * ids, so a run started twice (a schedule fired twice, a retried trigger) runs once.
   */
  async start(
    pipeline: LoadedPipeline,
    given: Record<string, ParamValue> = {},
    options: { runId?: string; trigger?: RunRecord['trigger'] } = {},
  ): Promise<string> {
    const { config, tree } = pipeline;
    const params = resolveParams(config, given);
    if (options.runId !== undefined && !RUN_ID.test(options.runId)) {
      throw new PipelineParamError(
        `run id '${options.runId}': expected up to 128 letters, digits, ".", "_" and "-", starting with a letter or digit`,
      );
    }
    const runId = options.runId ?? newRunId(config.name);
    const created = await this.store.createRun({
      runId,
      pipeline: config.name,
      file: pipeline.file,
      definition: pipeline.text,
      params,
      trigger: options.trigger ?? 'manual',
    });
    if (!created) {
      // Job ids are run + task: another pipeline's run of that id would be taken for this one.
      const existing = await this.store.run(runId);
      if (existing && existing.pipeline !== config.name) {
        throw new PipelineParamError(
          `run id '${runId}' is taken by a run of pipeline '${existing.pipeline}'; choose another --run-id`,
        );
      }
    }
    const node = (task: string): FlowJob => {
      const t = config.tasks[task] as TaskConfig;
      return {
        name: task,
        queueName: TASK_QUEUE,
        data: { runId, task } satisfies TaskJobData,
        opts: {
          jobId: taskJobId(runId, task),
          attempts: t.retries + 1,
          backoff: { type: 'exponential', delay: t.backoff },
          failParentOnFailure: t.on_failure === 'fail',
          ignoreDependencyOnFailure: t.on_failure === 'ignore',
          removeOnComplete: { age: KEEP_COMPLETED_S },
          removeOnFail: { age: KEEP_FAILED_S },
        },
        children: (tree.children.get(task) ?? []).map(node),
      };
    };
    await this.flows.add({
      name: ROOT,
      queueName: TASK_QUEUE,
      data: { runId, task: null } satisfies TaskJobData,
      opts: {
        jobId: taskJobId(runId, ROOT),
        removeOnComplete: { age: KEEP_COMPLETED_S },
        removeOnFail: { age: KEEP_FAILED_S },
      },
      children: (tree.children.get(null) ?? []).map(node),
    });
    return runId;
  }

  /** Workers connected to the task queue (none: a run waits until `flotilla jobs` starts). */
  async workerCount(): Promise<number> {
    return (await this.queue.getWorkers()).length;
  }

  async status(runId: string): Promise<RunStatus | undefined> {
    const run = await this.store.run(runId);
    if (!run) return undefined;
    const pipeline = parsePipeline(run.definition, run.file);
    const records = new Map((await this.store.tasks(runId)).map((t) => [t.task, t]));
    const rootState = await this.queue.getJobState(taskJobId(runId, ROOT));
    let state = run.state;
    if (state === 'running' && rootState === 'failed') state = 'failed';
    if (state === 'running' && rootState === 'completed') state = 'completed';
    const tasks: TaskStatus[] = [];
    for (const name of pipeline.order) {
      const config = pipeline.config.tasks[name] as TaskConfig;
      const status = await this.taskStatus(runId, name, config, records.get(name), state !== 'running');
      if (status.state === 'failed' && !records.has(name)) {
        // Failed by BullMQ without running: say which need (listed before it) failed.
        const failed = tasks
          .filter((t) => config.needs.includes(t.task) && t.state === 'failed')
          .map((t) => t.task);
        if (failed.length)
          status.error = `not run: it needs ${failed.map((f) => `'${f}'`).join(', ')}, which failed`;
      }
      tasks.push(status);
    }
    return { run, state, tasks };
  }

  private async taskStatus(
    runId: string,
    task: string,
    config: TaskConfig,
    record: TaskRecord | undefined,
    runOver: boolean,
  ): Promise<TaskStatus> {
    const status: TaskStatus = {
      task,
      kind: config.kind,
      needs: config.needs,
      state: record?.state ?? 'pending',
      attempts: record?.attempts ?? 0,
      startedAt: record?.startedAt ?? null,
      finishedAt: record?.finishedAt ?? null,
      error: record?.error ?? null,
      output: record?.output ?? null,
      progress: null,
    };
    if (record && finished(record.state)) return status;
    const job = await Job.fromId(this.queue, taskJobId(runId, task));
    const jobState: JobState | 'unknown' = job ? await job.getState() : 'unknown';
    if (!record) status.state = fromJobState(jobState, runOver);
    if (status.state === 'running' && typeof job?.progress === 'number') status.progress = job.progress;
    if (jobState === 'failed' && status.state !== 'failed') {
      // Failed by BullMQ without running: a task it needs failed.
      status.state = 'failed';
      status.error ??= job?.failedReason ?? 'failed';
    }
    if (runOver && !finished(status.state)) status.state = 'skipped';
    return status;
  }

  async close(): Promise<void> {
    await this.flows.close();
    await this.queue.close();
    this.connection.disconnect();
    await this.store.close();
  }
}

function fromJobState(state: JobState | 'unknown', runOver: boolean): TaskStatusState {
  switch (state) {
    case 'waiting-children':
    case 'delayed':
      return 'waiting';
    case 'waiting':
    case 'prioritized':
      return 'queued';
    case 'active':
      return 'running';
    case 'completed':
      return 'completed';
    case 'failed':
      return 'failed';
    default:
      return runOver ? 'skipped' : 'pending';
  }
}

export interface WorkerOptions {
  /** Tasks run at once by this process (default 4). */
  concurrency?: number;
  /** How long a task's lock lasts without renewal: a killed worker's task runs again after about this (default 30 s). */
  lockDurationMs?: number;
  /** How often stalled tasks (their worker died) are looked for (default 30 s). */
  stalledIntervalMs?: number;
  logger: Logger;
}

const executors: { [K in TaskConfig['kind']]: TaskExecutor<Extract<TaskConfig, { kind: K }>> } = {
  extract: runExtract,
  transform: runTransform,
  load: runLoad,
  retrain: runRetrain,
};

/**
 * Runs pipeline tasks: the `flotilla jobs` process. A task is idempotent on (run, task): a task
 * recorded as completed is not run again (its job may be re-delivered after a crash), staging
 * tables are emptied before an attempt writes them, and loads upsert on deterministic ids.
 */
export class PipelineWorkers {
  private readonly store: JobsStore;
  private readonly registry: ModelRegistry;
  private readonly connections: Redis[] = [];
  private readonly queue: Queue;
  private readonly worker: Worker<TaskJobData, TaskOutput | null>;
  /** Parsed definitions of recent runs (a run's tasks share one). */
  private readonly runs = new Map<string, { run: RunRecord; pipeline: LoadedPipeline }>();
  private readonly logger: Logger;

  constructor(
    readonly config: JobsConfig,
    options: WorkerOptions,
  ) {
    this.logger = options.logger;
    this.store = new JobsStore(config.pgUrl, config.schema);
    const prefix = config.prefix ?? 'flotilla';
    const connection = this.connect();
    this.registry = new ModelRegistry(this.store.pool, config.schema, connection);
    this.queue = new Queue(TASK_QUEUE, { connection, prefix });
    this.worker = new Worker<TaskJobData, TaskOutput | null>(
      TASK_QUEUE,
      (job, token) => this.process(job, token),
      {
        connection: this.connect(),
        prefix,
        concurrency: options.concurrency ?? 4,
        lockDuration: options.lockDurationMs ?? 30_000,
        stalledInterval: options.stalledIntervalMs ?? 30_000,
        // A crashed worker's task is re-delivered, a few times over, before it counts as failed.
        maxStalledCount: 3,
        autorun: false,
      },
    );
    this.worker.on('error', (err) => this.logger.error({ err }, 'pipeline worker error'));
  }

  private connect(): Redis {
    const c = redis(this.config.redisUrl);
    this.connections.push(c);
    return c;
  }

  /** Processes tasks until `close()`. */
  async start(): Promise<void> {
    await this.store.init();
    await this.registry.init();
    void this.worker.run();
    await this.worker.waitUntilReady();
  }

  private async runOf(runId: string): Promise<{ run: RunRecord; pipeline: LoadedPipeline }> {
    let entry = this.runs.get(runId);
    if (!entry) {
      const run = await this.store.run(runId);
      if (!run) throw new UnrecoverableError(`run '${runId}' is not recorded in PostgreSQL`);
      entry = { run, pipeline: parsePipeline(run.definition, run.file) };
      this.runs.set(runId, entry);
      // A handful of runs are in flight at once; older ones are parsed again if ever needed.
      if (this.runs.size > 32) this.runs.delete(this.runs.keys().next().value as string);
    }
    return entry;
  }

  private async process(job: Job<TaskJobData>, token: string | undefined): Promise<TaskOutput | null> {
    const { runId, task } = job.data;
    const { run, pipeline } = await this.runOf(runId);
    if (task === null) {
      await this.finishRun(run, pipeline);
      return null;
    }
    const done = await this.store.task(runId, task);
    // Completed before a crash that kept BullMQ from hearing of it: not run twice.
    if (done?.state === 'completed') return done.output;
    const config = pipeline.config.tasks[task] as TaskConfig;
    const attempt = job.attemptsMade + 1;
    const labels = { pipeline: pipeline.config.name, task };
    const endTimer = jobMetrics.taskSeconds.startTimer(labels);
    try {
      await this.awaitNeeds(job, token, pipeline, task);
      await this.store.startTask(runId, task, attempt);
      const output = await this.execute(job, run, pipeline, task, config);
      await this.store.completeTask(runId, task, output);
      jobMetrics.tasks.inc({ ...labels, outcome: 'completed' });
      return output;
    } catch (err) {
      if (err instanceof DelayedError) throw err;
      const final = isPermanent(err) || attempt >= (job.opts.attempts ?? 1);
      const message = errorText(err);
      await this.store.failTask(runId, task, final ? 'failed' : 'retrying', message, attempt);
      jobMetrics.tasks.inc({ ...labels, outcome: final ? 'failed' : 'retrying' });
      this.logger.warn({ run: runId, task, attempt, final, err: message }, 'pipeline task failed');
      if (final && failureReachesRoot(pipeline, task)) {
        await this.store.finishRun(runId, 'failed', `task '${task}' failed: ${message}`);
        jobMetrics.runs.inc({ pipeline: pipeline.config.name, outcome: 'failed' });
      }
      // BullMQ retries anything but an UnrecoverableError.
      throw isPermanent(err) && !(err instanceof UnrecoverableError) ? new UnrecoverableError(message) : err;
    } finally {
      endTimer();
    }
  }

  /**
   * Needs outside the task's flow subtree (a task several others need hangs under only one of
   * them): the task waits for them itself, looking again after a delay, without holding a slot.
   */
  private async awaitNeeds(
    job: Job<TaskJobData>,
    token: string | undefined,
    pipeline: LoadedPipeline,
    task: string,
  ): Promise<void> {
    for (const need of pipeline.tree.waitsFor.get(task) ?? []) {
      const state = await this.queue.getJobState(taskJobId(job.data.runId, need));
      if (state === 'completed') continue;
      if (state === 'failed') {
        if (pipeline.config.tasks[need]?.on_failure === 'fail') {
          throw new UnrecoverableError(`it needs task '${need}', which failed`);
        }
        continue;
      }
      await job.moveToDelayed(Date.now() + NEED_POLL_MS, token);
      throw new DelayedError();
    }
  }

  private async execute(
    job: Job<TaskJobData>,
    run: RunRecord,
    pipeline: LoadedPipeline,
    task: string,
    config: TaskConfig,
  ): Promise<TaskOutput> {
    const inputs: string[] = [];
    for (const need of config.needs) {
      const needConfig = pipeline.config.tasks[need] as TaskConfig;
      if (!producesRecords(needConfig)) continue;
      const record = await this.store.task(run.runId, need);
      // A need that failed and is ignored contributes no records.
      if (record?.state === 'completed' && record.output?.table) inputs.push(record.output.table);
    }
    let reported = 0;
    const ctx: TaskContext = {
      runId: run.runId,
      task,
      pipeline,
      params: run.params,
      runStartedAt: run.createdAt.getTime(),
      store: this.store,
      registry: this.registry,
      inputs,
      logger: this.logger.child({ pipeline: pipeline.config.name, run: run.runId, task }),
      // Progress is a Redis write: at most one a second.
      progress: (rows) => {
        const now = Date.now();
        if (now - reported < 1_000) return;
        reported = now;
        void job.updateProgress(rows).catch(() => {});
      },
      deadLetters: new DeadLetterBuffer(this.store, run.runId, task),
    };
    const execute = executors[config.kind] as TaskExecutor<TaskConfig>;
    return execute(config, ctx);
  }

  private async finishRun(run: RunRecord, pipeline: LoadedPipeline): Promise<void> {
    const failed = (await this.store.tasks(run.runId)).filter((t) => t.state === 'failed').map((t) => t.task);
    await this.store.finishRun(
      run.runId,
      'completed',
      failed.length ? `ignored failed tasks: ${failed.join(', ')}` : undefined,
    );
    jobMetrics.runs.inc({ pipeline: pipeline.config.name, outcome: 'completed' });
    if (!pipeline.config.keep_staging) await this.store.dropStaging(run.runId, pipeline.order);
    this.logger.info({ pipeline: pipeline.config.name, run: run.runId }, 'pipeline run completed');
  }

  async close(): Promise<void> {
    await this.worker.close();
    await this.queue.close();
    for (const c of this.connections) c.disconnect();
    await this.store.close();
  }
}

/** A failure no retry can fix: the task's configuration is at fault, not a service. */
function isPermanent(err: unknown): boolean {
  return (
    err instanceof UnrecoverableError ||
    err instanceof TaskConfigError ||
    err instanceof ConfigError ||
    err instanceof ComponentConfigError ||
    // A fit that produced an invalid model produces it again from the same history.
    err instanceof InvalidModelError
  );
}

/** Does a task's failure fail the run: does it fail each task up its flow path to the root? */
function failureReachesRoot(pipeline: LoadedPipeline, task: string): boolean {
  for (let t: string | null | undefined = task; t; t = pipeline.tree.parent.get(t)) {
    if (pipeline.config.tasks[t]?.on_failure === 'ignore') return false;
  }
  return true;
}
