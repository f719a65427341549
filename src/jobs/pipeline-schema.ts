import { z } from 'zod';
import { kafkaConnectionShape } from '../kafka/client.js';
import { identifierSchema } from '../sinks/shared/config.js';
import { expressionSchema } from '../steps/expression-step.js';
import { topologySchema } from '../topology/schema.js';
import { durationSchema } from '../util/duration.js';

// The same unions as a topology's steps and sinks: a transform or load task takes any registered kind.
const stepUnion = topologySchema.shape.steps.unwrap().element;
const sinkUnion = topologySchema.shape.sinks.element;

const nameRule = /^[A-Za-z][A-Za-z0-9_-]*$/;
const NAME_MAX = 48;

/** Why a pipeline or task name is not allowed, or undefined if it is. */
export function nameProblem(name: string): string | undefined {
  if (name.length > NAME_MAX) return `expected at most ${NAME_MAX} characters, found '${name}'`;
  if (!nameRule.test(name))
    return `expected letters, digits, "_" and "-", starting with a letter, found '${name}'`;
  return undefined;
}

// A refinement, not `.regex()`: the file/line formatter shows a regex failure as "expected a
// regex", losing the message; a custom issue keeps it.
export const pipelineNameSchema = z.string().superRefine((name, ctx) => {
  const message = nameProblem(name);
  if (message) ctx.addIssue({ code: 'custom', message });
});

/** A query placeholder `{name}` or `{name:ClickHouseType}` naming a pipeline parameter. */
export const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]+))?\}/g;

const querySourceShape = {
  query: z
    .string()
    .min(1)
    .describe(
      'The query. `{param}` (PostgreSQL) or `{param:Type}` (ClickHouse) placeholders are bound to pipeline parameters, never spliced into the text.',
    ),
};

const clickhouseSource = z
  .object({
    kind: z.literal('clickhouse'),
    url: z.string().min(1).optional().describe('HTTP URL of ClickHouse (default: $CLICKHOUSE_URL).'),
    database: z.string().min(1).optional().describe('Database the query runs in (default: the server’s).'),
    ...querySourceShape,
  })
  .strict();

const postgresSource = z
  .object({
    kind: z.literal('postgres'),
    url: z.string().min(1).optional().describe('Connection string (default: $PG_URL).'),
    ...querySourceShape,
  })
  .strict();

/** A time bound: ISO-8601, ms since the epoch, or a `{param}` filled in at run time. */
const timeBound = z.union([z.number().int().min(0), z.string().min(1)]);

const kafkaSource = z
  .object({
    kind: z.literal('kafka'),
    ...kafkaConnectionShape,
    topic: z.string().min(1).describe('Topic to read.'),
    from: timeBound.describe('First record timestamp included (ISO-8601, ms, or `{param}`).'),
    to: timeBound.describe('Records at or after this timestamp are not read (ISO-8601, ms, or `{param}`).'),
  })
  .strict();

const extractSource = z.discriminatedUnion('kind', [clickhouseSource, postgresSource, kafkaSource]);

const taskShape = {
  needs: z.array(z.string()).default([]).describe('Tasks that must finish before this one starts.'),
  retries: z.number().int().min(0).max(50).default(2).describe('Retries after a failed attempt (default 2).'),
  backoff: durationSchema
    .default(5_000)
    .describe('Delay before the first retry; each further retry waits twice as long (default 5s).'),
  on_failure: z
    .enum(['fail', 'ignore'])
    .default('fail')
    .describe(
      'When this task fails for good: fail its dependents and the run, or ignore it (dependents run without its data).',
    ),
};

const extractTask = z
  .object({
    kind: z.literal('extract'),
    ...taskShape,
    source: extractSource.describe('Where the rows come from: clickhouse, postgres or kafka.'),
    id: expressionSchema
      .optional()
      .describe(
        'Expression of a row giving its record id, e.g. value.event_id (default: a hash of the row; Kafka: topic/partition/offset).',
      ),
    key: expressionSchema.optional().describe('Expression giving the record key (default: none).'),
    time: expressionSchema
      .optional()
      .describe('Expression giving the record timestamp, ms or ISO-8601 (default: the run’s start).'),
  })
  .strict()
  .describe('Reads rows from ClickHouse, PostgreSQL or a Kafka topic range into a staging table.');

const transformTask = z
  .object({
    kind: z.literal('transform'),
    ...taskShape,
    steps: z
      .array(stepUnion)
      .min(1)
      .describe('Steps, as in a topology: map, filter, quality, window, code...'),
  })
  .strict()
  .describe('Runs the records of its needs through steps into a staging table.');

const loadTask = z
  .object({
    kind: z.literal('load'),
    ...taskShape,
    sink: sinkUnion.describe('Any sink, as in a topology; it upserts on the record id.'),
  })
  .strict()
  .describe('Writes the records of its needs to a sink.');

const retrainTask = z
  .object({
    kind: z.literal('retrain'),
    ...taskShape,
    model: pipelineNameSchema.describe('Name of the model in the registry (what anomaly steps watch).'),
    topology: z.string().min(1).describe('Topology file with the anomaly step, relative to this file.'),
    step: z
      .string()
      .min(1)
      .optional()
      .describe('Name of the anomaly step in it (default: its only anomaly step).'),
    min_points: z
      .number()
      .int()
      .min(10)
      .default(100)
      .describe('Series with fewer points in the history are left to the step defaults.'),
    max_points: z
      .number()
      .int()
      .min(1)
      .default(5_000_000)
      .describe('Upper bound on history points held in memory while fitting; more fails the task.'),
  })
  .strict()
  .describe(
    'Fits the anomaly step’s per-series models on the records of its needs and publishes a new model version.',
  );

export const taskSchema = z.discriminatedUnion('kind', [extractTask, transformTask, loadTask, retrainTask]);

const paramValue = z.union([z.string(), z.number(), z.boolean()]);

const scheduleSchema = z
  .object({
    cron: z
      .string()
      .refine((c) => [5, 6].includes(c.trim().split(/\s+/).length), {
        message: "a cron expression of 5 or 6 fields, e.g. '0 3 * * *'",
      })
      .describe("When to run, e.g. '0 3 * * *' (03:00 every day)."),
    tz: z.string().min(1).default('UTC').describe('Time zone of the cron expression (default UTC).'),
    params: z.record(z.string(), paramValue).default({}).describe('Parameters of scheduled runs.'),
  })
  .strict();

export const pipelineSchema = z
  .object({
    name: pipelineNameSchema.describe('Unique name of the pipeline (run ids, job ids, metrics).'),
    description: z.string().optional(),
    params: z
      .record(identifierSchema, paramValue.nullable())
      .default({})
      .describe('Parameters and their defaults; null: the parameter must be given.'),
    schedule: z
      .union([z.string().transform((cron) => ({ cron })), scheduleSchema])
      .pipe(scheduleSchema)
      .optional()
      .describe('Cron schedule: a cron string or { cron, tz, params }.'),
    keep_staging: z
      .boolean()
      .default(false)
      .describe('Keep the staging tables of a successful run (they are dropped when it completes).'),
    tasks: z
      // Task names are checked with their file position by parsePipeline (a record key's issue has none).
      .record(z.string(), taskSchema)
      .refine((t) => Object.keys(t).length > 0, { message: 'at least one task' })
      .describe('The tasks, by name.'),
  })
  .strict()
  .describe('A Flotilla pipeline: a DAG of extract, transform, load and retrain tasks.');

export type PipelineConfig = z.infer<typeof pipelineSchema>;
export type TaskConfig = z.infer<typeof taskSchema>;
export type ExtractTaskConfig = z.infer<typeof extractTask>;
export type TransformTaskConfig = z.infer<typeof transformTask>;
export type LoadTaskConfig = z.infer<typeof loadTask>;
export type RetrainTaskConfig = z.infer<typeof retrainTask>;
export type ParamValue = z.infer<typeof paramValue>;

/** Task kinds whose output is records that dependents read. */
export function producesRecords(task: TaskConfig): boolean {
  return task.kind === 'extract' || task.kind === 'transform';
}
