import { z } from 'zod';
import { MAX_PATTERN_LENGTH } from '../../expr/functions.js';
import { durationSchema } from '../../util/duration.js';
import { expressionSchema } from '../expression-step.js';
import { fieldPathSchema } from './fields.js';

export const qualityActions = ['dead_letter', 'tag', 'drop'] as const;

/** How often a running quality step logs its field profile by default (5 minutes). */
const PROFILE_LOG_EVERY_MS = 5 * 60_000;
export type QualityAction = (typeof qualityActions)[number];

export const valueTypes = ['string', 'number', 'integer', 'boolean', 'object', 'array', 'timestamp'] as const;
export type ValueType = (typeof valueTypes)[number];

/** Keys every rule has. */
const common = {
  name: z
    .string()
    .min(1)
    .optional()
    .describe('Name in metrics, verdicts and dead letters (default: derived, e.g. range:value).'),
  action: z
    .enum(qualityActions)
    .default('dead_letter')
    .describe(
      'What a failure does: dead_letter (the record goes to the dead-letter topic), tag (it flows on ' +
        'with the verdict in its value) or drop (it is discarded and counted).',
    ),
  weight: z.number().positive().default(1).describe('Weight of the rule in the quality score.'),
  when: expressionSchema
    .optional()
    .describe("Check only records for which this expression holds, e.g. value.metric == 'cpu'."),
};

const field = fieldPathSchema.describe(
  'Path of the checked field in the record value, e.g. host or geo.lat.',
);

/** Cross-key checks run only on an otherwise valid mapping: a typo'd key would make them noise. */
const whenValid = { when: (payload: { issues: unknown[] }) => payload.issues.length === 0 };

/** `min <= max` when both are set, and at least one of them. */
function bounds(label: string) {
  return (v: { min?: number | undefined; max?: number | undefined }, ctx: z.RefinementCtx) => {
    if (v.min === undefined && v.max === undefined)
      ctx.addIssue({ code: 'custom', path: ['min'], message: `${label} needs min, max or both` });
    else if (v.min !== undefined && v.max !== undefined && v.min > v.max)
      ctx.addIssue({ code: 'custom', path: ['max'], message: `max (${v.max}) is below min (${v.min})` });
  };
}

const requiredRule = z
  .object({
    kind: z.literal('required'),
    fields: z.array(fieldPathSchema).min(1).describe('Fields that must be present and not null.'),
    ...common,
  })
  .strict()
  .describe('Fields that must be present and not null.');

const typeRule = z
  .object({
    kind: z.literal('type'),
    field,
    type: z
      .enum(valueTypes)
      .describe('Expected type; timestamp is ms since the epoch or an ISO-8601 date(-time with zone).'),
    ...common,
  })
  .strict()
  .describe('The type of a field, when present.');

const rangeRule = z
  .object({
    kind: z.literal('range'),
    field,
    min: z.number().optional().describe('Smallest allowed value (inclusive).'),
    max: z.number().optional().describe('Largest allowed value (inclusive).'),
    ...common,
  })
  .strict()
  .superRefine(bounds('a range'), whenValid)
  .describe('A numeric field within [min, max], when present; with `when`, e.g. per metric.');

const enumRule = z
  .object({
    kind: z.literal('enum'),
    field,
    values: z
      .array(z.union([z.string(), z.number(), z.boolean()]))
      .min(1)
      .describe('Allowed values (compared strictly: 1 is not "1").'),
    ...common,
  })
  .strict()
  .describe('A field is one of a list of values, when present.');

const patternRule = z
  .object({
    kind: z.literal('pattern'),
    field,
    regex: z
      .string()
      .min(1)
      .max(MAX_PATTERN_LENGTH)
      .describe('JavaScript regular expression, unanchored (use ^ and $ to match the whole string).'),
    flags: z
      .string()
      .regex(/^[imsu]*$/, "flags from 'imsu'")
      .default('')
      .describe('Regular-expression flags from imsu.'),
    ...common,
  })
  .strict()
  .superRefine((v, ctx) => {
    try {
      new RegExp(v.regex, v.flags);
    } catch (err) {
      ctx.addIssue({
        code: 'custom',
        path: ['regex'],
        message: `invalid regular expression: ${(err as Error).message}`,
      });
    }
  }, whenValid)
  .describe('A string field matches a regular expression, when present.');

const lengthRule = z
  .object({
    kind: z.literal('length'),
    field,
    min: z.number().int().min(0).optional().describe('Fewest characters allowed.'),
    max: z.number().int().min(0).optional().describe('Most characters allowed.'),
    ...common,
  })
  .strict()
  .superRefine(bounds('a length'), whenValid)
  .describe('The length of a string field in characters, when present.');

const freshnessRule = z
  .object({
    kind: z.literal('freshness'),
    max_age: durationSchema.describe('How far event time may lag the wall clock, e.g. 5m.'),
    ...common,
  })
  .strict()
  .describe('Event time is not older than max_age by the wall clock.');

const clockSkewRule = z
  .object({
    kind: z.literal('clock_skew'),
    max_ahead: durationSchema.describe('How far event time may be ahead of the wall clock, e.g. 30s.'),
    ...common,
  })
  .strict()
  .describe('Event time is not further than max_ahead in the future.');

const dedupeRule = z
  .object({
    kind: z.literal('dedupe'),
    key: z.array(fieldPathSchema).min(1).describe('Fields whose values together identify a record.'),
    ttl: durationSchema.describe('How long, in event time, a key is remembered, e.g. 10m.'),
    max_keys: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(100_000)
      .describe('Keys remembered per partition at most; the oldest are evicted (and counted) beyond it.'),
    ...common,
  })
  .strict()
  .describe('A record whose key was seen within ttl (event time) in its partition is a duplicate.');

const checkRule = z
  .object({
    kind: z.literal('check'),
    expr: expressionSchema.describe('A condition across fields that must hold, e.g. value.min <= value.max.'),
    ...common,
  })
  .strict()
  .describe('An expression over the record that must be true.');

export const qualityRuleSchema = z.discriminatedUnion('kind', [
  requiredRule,
  typeRule,
  rangeRule,
  enumRule,
  patternRule,
  lengthRule,
  freshnessRule,
  clockSkewRule,
  dedupeRule,
  checkRule,
]);

export type QualityRuleConfig = z.infer<typeof qualityRuleSchema>;

/** The name a rule gets when the YAML does not give one, e.g. `range:value`, `required:ts,host`. */
export function defaultRuleName(rule: QualityRuleConfig): string {
  switch (rule.kind) {
    case 'required':
      return `required:${rule.fields.map((f) => f.text).join(',')}`;
    case 'dedupe':
      return `dedupe:${rule.key.map((f) => f.text).join(',')}`;
    case 'freshness':
    case 'clock_skew':
      return rule.kind;
    case 'check':
      return `check:${rule.expr.source}`;
    default:
      return `${rule.kind}:${rule.field.text}`;
  }
}

export const qualityStepSchema = z
  .object({
    kind: z.literal('quality'),
    name: z.string().min(1).optional(),
    rules: z.array(qualityRuleSchema).min(1, 'at least one rule').describe('The checks, in order.'),
    event_time: fieldPathSchema
      .optional()
      .describe(
        'Field holding the event time (ms since the epoch or ISO-8601); default: the record timestamp.',
      ),
    tenant_field: fieldPathSchema
      .prefault('tenant')
      .describe("Field naming the tenant in metrics ('none' if absent)."),
    max_tenants: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(100)
      .describe("Distinct tenant labels per step; later tenants are counted as 'other'."),
    tag_field: z
      .string()
      .min(1)
      .default('_quality')
      .describe('Field of the value that tagged records carry.'),
    tag_all: z
      .boolean()
      .default(false)
      .describe('Tag every record that flows on, passing or not (default: only those failing a tag rule).'),
    profile: z
      .object({
        enabled: z.boolean().default(true),
        fields: z
          .array(fieldPathSchema)
          .min(1)
          .optional()
          .describe('Fields to profile (default: the first max_fields top-level fields seen).'),
        max_fields: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(20)
          .describe('Top-level fields profiled at most.'),
        log_every: durationSchema
          .default(PROFILE_LOG_EVERY_MS)
          .describe(
            "Logs the profile at info level this often, e.g. '5m' (0: never); and when the step stops.",
          ),
      })
      .strict()
      .default({ enabled: true, max_fields: 20, log_every: PROFILE_LOG_EVERY_MS })
      .describe('Running statistics per field: null rate, type mix, min/max/mean, distinct estimate.'),
  })
  .strict()
  .superRefine((step, ctx) => {
    const seen = new Map<string, number>();
    step.rules.forEach((rule, i) => {
      const name = rule.name ?? defaultRuleName(rule);
      const first = seen.get(name);
      if (first === undefined) seen.set(name, i);
      else
        ctx.addIssue({
          code: 'custom',
          path: ['rules', i, 'name'],
          message: `rule name '${name}' is already used by rules[${first}]; give this rule its own name:`,
        });
    });
  }, whenValid)
  .describe(
    'Checks records against declared rules, gives each a verdict and a quality score, and profiles fields.',
  );

export type QualityStepConfig = z.infer<typeof qualityStepSchema>;
