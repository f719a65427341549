import { z } from 'zod';
import { DEFAULT_RELATIVE_ACCURACY } from '../../sketch/ddsketch.js';
import { DEFAULT_PRECISION, MAX_PRECISION, MIN_PRECISION } from '../../sketch/hyperloglog.js';
import { durationSchema } from '../../util/duration.js';
import { FIELD_PATH } from './field-path.js';

/** Most panes a sliding window may be made of (size / gcd(size, slide)). */
export const MAX_PANES_PER_WINDOW = 10_000;

/** Names every result carries; aggregates cannot take them. */
export const RESERVED_OUTPUTS = ['window_start', 'window_end', 'key', 'count', 'revision'] as const;

export const AGGREGATE_OPS = [
  'count',
  'sum',
  'min',
  'max',
  'avg',
  'first',
  'last',
  'distinct',
  'quantiles',
] as const;
export type AggregateOp = (typeof AGGREGATE_OPS)[number];

/** Ops whose field must hold a finite number in every record (others skip a missing field). */
export const NUMERIC_OPS: ReadonlySet<AggregateOp> = new Set(['sum', 'min', 'max', 'avg', 'quantiles']);

const fieldPath = z
  .string()
  .regex(FIELD_PATH, "a field path: dot-separated names in the record value, like 'host' or 'meta.region'");

const aggregateSchema = z
  .object({
    op: z
      .enum(AGGREGATE_OPS)
      .describe(
        'count (records, or records with `field` set), sum, min, max, avg, first and last (by event time), distinct (HyperLogLog) or quantiles (DDSketch).',
      ),
    field: fieldPath
      .optional()
      .describe(
        'Field of the record value the aggregate reads (nested paths allowed); required except for count.',
      ),
    quantiles: z
      .array(z.number().min(0).max(1))
      .min(1)
      .optional()
      .describe(
        'For op quantiles: the quantiles to report, e.g. [0.5, 0.95, 0.99] (output keys p50, p95, p99).',
      ),
    precision: z
      .number()
      .int()
      .min(MIN_PRECISION)
      .max(MAX_PRECISION)
      .optional()
      .describe(
        `For op distinct: HyperLogLog precision p (${MIN_PRECISION}..${MAX_PRECISION}, default ${DEFAULT_PRECISION}); standard error 1.04/sqrt(2^p).`,
      ),
    relative_accuracy: z
      .number()
      .gt(0)
      .lt(1)
      .optional()
      .describe(
        `For op quantiles: DDSketch relative accuracy (default ${DEFAULT_RELATIVE_ACCURACY}): every quantile is within this fraction of the true value.`,
      ),
  })
  .strict()
  .describe('One aggregate of the window; its output has the name it is declared under.');

export type AggregateConfig = z.infer<typeof aggregateSchema>;

const outputName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an aggregate name: letters, digits and _, not starting with a digit');

export const windowStepSchema = z
  .object({
    kind: z.literal('window'),
    name: z.string().min(1).optional().describe('Step name (result ids, metrics, state); default "window".'),
    type: z
      .enum(['tumbling', 'sliding', 'session'])
      .describe('tumbling (size), sliding/hopping (size + slide) or session (gap) windows on event time.'),
    size: durationSchema.optional().describe("Window length for tumbling and sliding windows, e.g. '1m'."),
    slide: durationSchema
      .optional()
      .describe("For sliding windows: how far each window starts after the previous, e.g. '1m'."),
    gap: durationSchema
      .optional()
      .describe("For session windows: inactivity that ends a session, e.g. '30m'."),
    time: z
      .object({
        field: fieldPath
          .optional()
          .describe(
            'Field with the event time (epoch ms or ISO-8601 string); default: the record timestamp.',
          ),
      })
      .strict()
      .default({})
      .describe('Where the event time of a record comes from.'),
    group_by: z
      .array(fieldPath)
      .default([])
      .describe('Fields whose values make the group key (nested paths allowed); none: one group.'),
    aggregates: z
      .record(outputName, aggregateSchema)
      .default({})
      .describe('Aggregates by output name; every result also has `count` (records in the window).'),
    grace: durationSchema
      .default(0)
      .describe(
        'How long after its end a window still takes records (on the watermark); later ones are late.',
      ),
    allowed_lateness: durationSchema
      .default(0)
      .describe(
        'The watermark trails the highest event time of a partition by this much (out-of-order tolerance).',
      ),
    idle_timeout: durationSchema
      .default(30_000)
      .describe(
        'A partition without records for this long (wall clock) stops holding the step watermark back; its windows close on the others.',
      ),
    emit: z
      .enum(['on_close', 'on_update'])
      .default('on_close')
      .describe(
        'on_close: one final result per window; on_update: a result (with a revision) each time a batch changes a window.',
      ),
    late: z
      .union([
        z.literal('dead_letter'),
        z.object({ topic: z.string().min(1).describe('Topic for late records.') }).strict(),
      ])
      .default('dead_letter')
      .describe('Where late records go: the dead-letter topic (reason `late`), or a named topic.'),
  })
  .strict()
  .superRefine((c, ctx) => {
    const problem = (path: (string | number)[], message: string) =>
      ctx.addIssue({ code: 'custom', path, message });
    const positiveMs = (key: 'size' | 'slide' | 'gap') => {
      const v = c[key];
      if (v === undefined) problem([key], `a ${c.type} window needs ${key}`);
      else if (!(Number.isInteger(v) && v > 0))
        problem([key], `${key} must be a whole number of milliseconds above 0, got ${v}`);
    };
    const forbid = (key: 'size' | 'slide' | 'gap', only: string) => {
      if (c[key] !== undefined) problem([key], `${key} is only for ${only} windows, not ${c.type}`);
    };
    if (c.type === 'tumbling') {
      positiveMs('size');
      forbid('slide', 'sliding');
      forbid('gap', 'session');
    } else if (c.type === 'sliding') {
      positiveMs('size');
      positiveMs('slide');
      forbid('gap', 'session');
      const { size, slide } = c;
      if (size !== undefined && slide !== undefined && Number.isInteger(size) && Number.isInteger(slide)) {
        if (slide > size) problem(['slide'], `slide (${slide} ms) must not exceed size (${size} ms)`);
        const pane = gcd(size, slide);
        if (size / pane > MAX_PANES_PER_WINDOW) {
          problem(
            ['slide'],
            `size ${size} ms and slide ${slide} ms make windows of ${size / pane} panes of gcd(size, slide) = ${pane} ms (at most ${MAX_PANES_PER_WINDOW}); choose a slide that divides the size`,
          );
        }
      }
    } else {
      positiveMs('gap');
      forbid('size', 'tumbling and sliding');
      forbid('slide', 'sliding');
    }
    for (const [name, a] of Object.entries(c.aggregates)) {
      const at = (key?: string) => (key ? ['aggregates', name, key] : ['aggregates', name]);
      if ((RESERVED_OUTPUTS as readonly string[]).includes(name)) {
        problem(
          at(),
          `'${name}' is a name every result already has (${RESERVED_OUTPUTS.join(', ')}); pick another`,
        );
      }
      if (a.op !== 'count' && a.field === undefined) problem(at('field'), `op ${a.op} needs a field to read`);
      if (a.op === 'quantiles') {
        if (a.quantiles === undefined)
          problem(at('quantiles'), 'op quantiles needs a list of quantiles, e.g. [0.5, 0.95, 0.99]');
        else if (new Set(a.quantiles.map(quantileName)).size !== a.quantiles.length) {
          problem(at('quantiles'), 'each quantile may be listed once');
        }
      } else if (a.quantiles !== undefined)
        problem(at('quantiles'), `quantiles is only for op quantiles, not ${a.op}`);
      if (a.relative_accuracy !== undefined && a.op !== 'quantiles') {
        problem(at('relative_accuracy'), `relative_accuracy is only for op quantiles, not ${a.op}`);
      }
      if (a.precision !== undefined && a.op !== 'distinct') {
        problem(at('precision'), `precision is only for op distinct, not ${a.op}`);
      }
    }
  })
  .describe(
    'Aggregates records over event-time windows (tumbling, sliding, session) per group key, with a per-partition watermark, grace and late-record output.',
  );

export type WindowStepConfig = z.infer<typeof windowStepSchema>;

export function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Output key of a quantile: 0.5 → p50, 0.999 → p99.9. */
export function quantileName(q: number): string {
  return `p${Number((q * 100).toFixed(6))}`;
}
