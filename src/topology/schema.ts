import { z } from 'zod';
import { sinkKinds } from '../sinks/index.js';
import { sourceKinds } from '../sources/index.js';
import { expressionSchema } from '../steps/expression-step.js';
import { stepKinds } from '../steps/index.js';
import { durationOrNeverSchema } from '../util/duration.js';

type Kinds = readonly { schema: z.ZodObject }[];
// A discriminated union of every registered kind: YAML errors name the kinds there are.
const union = <K extends Kinds>(kinds: K) =>
  z.discriminatedUnion(
    'kind',
    kinds.map((k) => k.schema) as unknown as [K[number]['schema'], ...K[number]['schema'][]],
  );

/**
 * Every sink kind also takes `when:` (which records it gets) and `give_up_after:` (how long an
 * outage of this sink may hold up the others).
 */
const routedSinks = sinkKinds.map((k) => ({
  schema: k.schema.extend({
    when: expressionSchema
      .optional()
      .describe('Only records for which this holds go to the sink, e.g. value.is_anomaly (default: all).'),
    give_up_after: durationOrNeverSchema
      .optional()
      .describe(
        "After retrying a batch this long, dead-letter it for this sink (reason 'sink_unavailable') so the other sinks and the partition move on; 'never' waits as long as it takes. Default: 15m when the topology has several sinks, so one sink's outage cannot hold the others forever; 'never' with one sink.",
      ),
  }),
}));

const name = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]*$/,
    'letters, digits, ".", "_" and "-", starting with a letter or digit',
  );

export const topologySchema = z
  .object({
    name: name.describe('Unique name of the topology (metrics labels, state, ids).'),
    description: z.string().optional(),
    group: name.optional().describe('Consumer group (default: flotilla-<name>).'),
    source: union(sourceKinds),
    steps: z.array(union(stepKinds)).default([]),
    sinks: z.array(union(routedSinks)).min(1, 'at least one sink'),
    dead_letter: z
      .object({
        topic: z.string().min(1).describe('Dead-letter topic (default: <name>.dlq).'),
      })
      .strict()
      .optional(),
  })
  .strict()
  .describe('A Flotilla topology: a source, steps, sinks and a dead-letter topic.');

export type TopologyConfig = z.infer<typeof topologySchema>;

/** The consumer group of a topology: its own, or flotilla-<name>. */
export function groupOf(config: Pick<TopologyConfig, 'group' | 'name'>): string {
  return config.group ?? `flotilla-${config.name}`;
}
export type SourceConfig = TopologyConfig['source'];
export type StepConfig = TopologyConfig['steps'][number];
export type SinkConfig = TopologyConfig['sinks'][number];

/** The topology format as JSON Schema, for editors (yaml-language-server). */
export function topologyJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(topologySchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}
