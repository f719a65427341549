import { type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from '../observability/logger.js';
import type { JobsConfig } from './config.js';
import { type LoadedPipeline, loadPipeline } from './pipeline.js';
import { type Pipelines, scheduledRunId, TRIGGER_QUEUE } from './runner.js';

const SCHEDULER_PREFIX = 'pipeline/';

interface TriggerData {
  file: string;
}

/**
 * Cron schedules of pipelines, as BullMQ job schedulers on the trigger queue: each firing
 * starts a run of the pipeline file as it is then. The run id comes from the scheduled time,
 * so a firing delivered twice starts one run.
 */
export class PipelineScheduler {
  private readonly connection: Redis;
  private readonly queue: Queue<TriggerData>;
  private readonly worker: Worker<TriggerData>;

  constructor(
    config: JobsConfig,
    private readonly pipelines: Pipelines,
    private readonly logger: Logger,
  ) {
    const prefix = config.prefix ?? 'flotilla';
    this.connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    this.queue = new Queue<TriggerData>(TRIGGER_QUEUE, { connection: this.connection, prefix });
    this.worker = new Worker<TriggerData>(TRIGGER_QUEUE, (job) => this.trigger(job), {
      connection: this.connection.duplicate(),
      prefix,
      autorun: false,
    });
    this.worker.on('error', (err) => logger.error({ err }, 'pipeline scheduler error'));
  }

  /**
   * Makes the schedules those of `pipelines`: adds or updates each one's, and removes those of
   * pipelines that are no longer scheduled. Returns the names scheduled.
   */
  async sync(pipelines: readonly LoadedPipeline[]): Promise<string[]> {
    const wanted = new Set<string>();
    for (const p of pipelines) {
      const schedule = p.config.schedule;
      if (!schedule) continue;
      const id = `${SCHEDULER_PREFIX}${p.config.name}`;
      wanted.add(id);
      await this.queue.upsertJobScheduler(
        id,
        { pattern: schedule.cron, tz: schedule.tz },
        { name: p.config.name, data: { file: p.file } },
      );
    }
    for (const s of await this.queue.getJobSchedulers()) {
      if (s.key.startsWith(SCHEDULER_PREFIX) && !wanted.has(s.key))
        await this.queue.removeJobScheduler(s.key);
    }
    return [...wanted].map((id) => id.slice(SCHEDULER_PREFIX.length));
  }

  /** Names of the pipelines that have a schedule in Redis. */
  async scheduled(): Promise<string[]> {
    return (await this.queue.getJobSchedulers())
      .filter((s) => s.key.startsWith(SCHEDULER_PREFIX))
      .map((s) => s.key.slice(SCHEDULER_PREFIX.length));
  }

  async start(): Promise<void> {
    void this.worker.run();
    await this.worker.waitUntilReady();
  }

  private async trigger(job: Job<TriggerData>): Promise<string> {
    const pipeline = loadPipeline(job.data.file);
    const scheduledAt = job.opts.prevMillis ?? job.timestamp;
    const runId = await this.pipelines.start(pipeline, pipeline.config.schedule?.params ?? {}, {
      runId: scheduledRunId(pipeline.config.name, scheduledAt),
      trigger: 'schedule',
    });
    this.logger.info({ pipeline: pipeline.config.name, run: runId }, 'scheduled pipeline run started');
    return runId;
  }

  async close(): Promise<void> {
    await this.worker.close();
    await this.queue.close();
    this.connection.disconnect();
  }
}
