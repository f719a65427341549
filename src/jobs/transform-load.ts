import path from 'node:path';
import type { ComponentContext, Sink, Step, StepContext } from '../core/component.js';
import { FlotillaError } from '../core/errors.js';
import type { FlotillaRecord } from '../core/record.js';
import { sinkKinds } from '../sinks/index.js';
import { stepKinds } from '../steps/index.js';
import type { LoadTaskConfig, TransformTaskConfig } from './pipeline-schema.js';
import type { TaskOutput } from './store.js';
import { readInputs, type TaskContext, type TaskExecutor } from './task-context.js';

type Definition = { kind: string; create(config: never, ctx: ComponentContext): unknown };

/** A step or sink of a task, made by its kind's registry entry, as a topology's would be. */
async function create<T>(
  kinds: readonly Definition[],
  config: { kind: string },
  ctx: TaskContext,
): Promise<T> {
  const def = kinds.find((k) => k.kind === config.kind);
  if (!def) throw new FlotillaError(`no component of kind '${config.kind}'`);
  const componentContext: ComponentContext = {
    topology: ctx.pipeline.config.name,
    group: `flotilla-pipeline-${ctx.pipeline.config.name}`,
    baseDir: path.dirname(ctx.pipeline.file),
    logger: ctx.logger.child({ task: ctx.task }),
  };
  return (await def.create(config as never, componentContext)) as T;
}

/**
 * Runs the records of the task's inputs through its steps, a page at a time, and stages what
 * comes out. Steps see one partition (the task); records they refuse go to the dead-letter table.
 */
export const runTransform: TaskExecutor<TransformTaskConfig> = async (config, ctx): Promise<TaskOutput> => {
  const steps = await Promise.all(config.steps.map((s) => create<Step>(stepKinds, s, ctx)));
  const writer = await ctx.store.openStaging(ctx.runId, ctx.task);
  const contexts = steps.map(
    (step): StepContext => ({
      topic: `${ctx.pipeline.config.name}.${ctx.task}`,
      partition: 0,
      deadLetter: (record, reason, error) => ctx.deadLetters.add(record, step.name, reason, error),
    }),
  );
  /** Runs records through the steps from `first` on. */
  const through = async (records: FlotillaRecord[], first: number) => {
    for (let i = first; i < steps.length && records.length > 0; i++) {
      records = await (steps[i] as Step).process(records, contexts[i] as StepContext);
    }
    return records;
  };
  let read = 0;
  try {
    for await (const page of readInputs(ctx)) {
      await writer.write(await through(page, 0));
      await ctx.deadLetters.flush();
      read += page.length;
      ctx.progress(read);
    }
    // The input is read to its end: what steps still hold open (windows) comes out now and
    // flows through the steps after them, which may hold some of it in turn.
    for (let i = 0; i < steps.length; i++) {
      const held = (steps[i] as Step).finish?.() ?? [];
      if (held.length > 0) await writer.write(await through(held, i + 1));
    }
    await ctx.deadLetters.flush();
  } finally {
    await Promise.all(steps.map((s) => s.close?.()));
  }
  return { table: writer.table, rows: writer.rows, deadLetters: ctx.deadLetters.count };
};

/**
 * Writes the records of the task's inputs to its sink, a page at a time. Sinks upsert on the
 * record id, so an attempt that repeats pages an earlier one wrote (after a crash) adds nothing.
 */
export const runLoad: TaskExecutor<LoadTaskConfig> = async (config, ctx): Promise<TaskOutput> => {
  const sink = await create<Sink>(sinkKinds, config.sink, ctx);
  let written = 0;
  try {
    for await (const page of readInputs(ctx)) {
      await sink.write(page, {
        reject: (record, error) => ctx.deadLetters.add(record, sink.name, 'sink', error),
      });
      await ctx.deadLetters.flush();
      written += page.length;
      ctx.progress(written);
    }
  } finally {
    await sink.close();
  }
  const deadLetters = ctx.deadLetters.count;
  return { rows: written - deadLetters, deadLetters };
};
