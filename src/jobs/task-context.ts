import { FlotillaError } from '../core/errors.js';
import type { DeadLetter, FlotillaRecord } from '../core/record.js';
import type { Logger } from '../observability/logger.js';
import type { ModelRegistry } from './model-registry.js';
import type { LoadedPipeline } from './pipeline.js';
import type { ParamValue } from './pipeline-schema.js';
import type { JobsStore, TaskOutput } from './store.js';

/** A task that cannot run as configured (no URL, a bad bound, too much data): retrying cannot help. */
export class TaskConfigError extends FlotillaError {}

/** Records read from a staging table per page, and handed to steps and sinks per batch. */
export const PAGE_SIZE = 1000;

/** Records a step or a sink refused during one batch, written to the dead-letter table after it. */
export class DeadLetterBuffer {
  private pending: DeadLetter[] = [];
  private total = 0;

  constructor(
    private readonly store: JobsStore,
    private readonly runId: string,
    private readonly task: string,
  ) {}

  get count(): number {
    return this.total;
  }

  add(record: FlotillaRecord, step: string, reason: string, error: unknown): void {
    this.pending.push({
      record,
      step,
      reason,
      error: error instanceof Error ? error.message : String(error),
    });
    this.total++;
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const letters = this.pending;
    this.pending = [];
    await this.store.deadLetter(this.runId, this.task, letters);
  }
}

/** What a task's code gets: the run, where its inputs are, and where to stage its output. */
export interface TaskContext {
  runId: string;
  task: string;
  pipeline: LoadedPipeline;
  params: Record<string, ParamValue>;
  /** When the run was created (ms): the default timestamp of extracted rows. */
  runStartedAt: number;
  store: JobsStore;
  /** Where retrain tasks publish models. */
  registry: ModelRegistry;
  /** Staging tables of the needs that produced records, in the order of `needs`. */
  inputs: string[];
  logger: Logger;
  /** Reports records handled so far (shown by `flotilla pipeline status`). */
  progress(rows: number): void;
  deadLetters: DeadLetterBuffer;
}

export type TaskExecutor<Config> = (config: Config, ctx: TaskContext) => Promise<TaskOutput>;

/** The records of every input, page by page, in order. */
export async function* readInputs(ctx: TaskContext): AsyncGenerator<FlotillaRecord[]> {
  for (const table of ctx.inputs) yield* ctx.store.readStaging(table, PAGE_SIZE);
}
