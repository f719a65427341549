import { z } from 'zod';
import { DEFAULT_JOBS_SCHEMA } from '../../jobs/config.js';
import { durationSchema } from '../../util/duration.js';
import { fieldPathSchema } from '../quality/fields.js';
import { type DetectorSpec, memberKinds, modelKinds } from './detector.js';

// The defaults are the configuration measured on NAB (docs/anomaly.md): one for every series.
const ewmaParams = z
  .object({
    alpha: z
      .number()
      .gt(0)
      .lte(1)
      .describe('Weight of the newest value; about 2/alpha values are remembered (default 0.01).'),
  })
  .strict();

const madParams = z
  .object({
    window: z
      .number()
      .int()
      .min(3)
      .max(10_000)
      .describe('Values the median and MAD are taken over (default 288).'),
  })
  .strict();

const seasonalParams = z
  .object({
    period: durationSchema.describe("Length of the cycle, e.g. '1d' or '7d' (default '1d')."),
    slots: z
      .number()
      .int()
      .min(1)
      .max(10_080)
      .describe('Equal time slots per cycle, each with its own baseline (default 24: hour of day, UTC).'),
    alpha: z.number().gt(0).lte(1).describe('Weight of the newest value within its slot (default 0.05).'),
  })
  .strict();

const ensembleParams = z
  .object({
    members: z
      .array(z.enum(memberKinds))
      .min(1)
      .describe(
        'Models whose scores are combined (the highest wins); the first that forecasts gives the band.',
      ),
  })
  .strict();

const suppressionParams = z
  .object({
    window: z
      .number()
      .int()
      .min(0)
      .max(10_000)
      .describe('Recent scores compared with (0: no suppression; default 100).'),
    factor: z
      .number()
      .min(0)
      .max(1)
      .describe('Multiplier of a score that does not exceed the recent ones (default 0.8).'),
  })
  .strict();

const tuning = {
  model: z.enum(modelKinds).describe('The model that scores each series (default seasonal).'),
  ewma: ewmaParams.describe('Exponentially weighted mean and variance.'),
  mad: madParams.describe('Rolling median and median absolute deviation.'),
  seasonal: seasonalParams.describe('Mean and variance per time slot of a cycle (e.g. per hour of the day).'),
  ensemble: ensembleParams.describe('Several models at once.'),
  warmup: z
    .number()
    .int()
    .min(1)
    .max(1_000_000)
    .describe('Deviations a model must have seen before it scores anything: the cold start (default 50).'),
  memory: z
    .number()
    .int()
    .min(10)
    .max(10_000_000)
    .describe(
      'How many past deviations the score is relative to, with exponential forgetting (default 4000).',
    ),
  range: z
    .number()
    .min(0)
    .nullable()
    .describe(
      'A value beyond the range of all values seen so far by more than this fraction of it scores 1 (null: off; default 0.05).',
    ),
  band: z
    .number()
    .gt(0)
    .describe('Half-width of the lower/upper band, in standard deviations of the model (default 3).'),
  suppression: suppressionParams.describe(
    'Damps scores that repeat a recent alarm, so one incident raises one flag.',
  ),
};

/** The defaults of every tuning option: the configuration measured on NAB. */
export const defaultSpec: DetectorSpec = {
  model: 'seasonal',
  ewma: { alpha: 0.01 },
  mad: { window: 288 },
  seasonal: { period: 86_400_000, slots: 24, alpha: 0.05 },
  ensemble: { members: ['seasonal', 'ewma'] },
  warmup: 50,
  memory: 4000,
  band: 3,
  range: 0.05,
  suppression: { window: 100, factor: 0.8 },
};

/** Tuning options as given: every one optional, nested ones option by option. */
export const tuningSchema = z
  .object({
    ...tuning,
    ewma: tuning.ewma.partial(),
    mad: tuning.mad.partial(),
    seasonal: tuning.seasonal.partial(),
    ensemble: tuning.ensemble.partial(),
    suppression: tuning.suppression.partial(),
  })
  .partial()
  .strict();

export type Tuning = z.infer<typeof tuningSchema>;

/** `base` with the options `tuning` sets (nested objects merged option by option). */
export function applyTuning(base: DetectorSpec, tuning: Tuning): DetectorSpec {
  return {
    model: tuning.model ?? base.model,
    ewma: { ...base.ewma, ...tuning.ewma },
    mad: { ...base.mad, ...tuning.mad },
    seasonal: { ...base.seasonal, ...tuning.seasonal },
    ensemble: { ...base.ensemble, ...tuning.ensemble },
    warmup: tuning.warmup ?? base.warmup,
    memory: tuning.memory ?? base.memory,
    band: tuning.band ?? base.band,
    range: tuning.range === undefined ? base.range : tuning.range,
    suppression: { ...base.suppression, ...tuning.suppression },
  };
}

const registrySchema = z
  .object({
    model: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9_-]*$/, 'letters, digits, "_" and "-", starting with a letter')
      .describe("Name of the model in the registry (a retrain task's 'model')."),
    poll: durationSchema
      .default(30_000)
      .describe('Looks for a new version this often, besides Redis announcements (default 30s).'),
    postgres: z.string().min(1).optional().describe('Registry database URL (default: $PG_URL).'),
    redis: z.string().min(1).optional().describe('Redis URL of version announcements (default: $REDIS_URL).'),
    schema: z
      .string()
      .min(1)
      .default(DEFAULT_JOBS_SCHEMA)
      .describe('PostgreSQL schema of the registry tables.'),
  })
  .strict()
  .describe(
    'Per-series parameters from the model registry (docs/models.md): the current version at start, then each new one, switched between batches.',
  );

export const anomalyStepSchema = z
  .object({
    kind: z.literal('anomaly'),
    name: z.string().min(1).optional(),
    series_key: z
      .array(fieldPathSchema)
      .max(16)
      .default([])
      .describe('Fields whose values name a series, e.g. [tenant, metric, host]; none: one series.'),
    value: fieldPathSchema.describe('Field holding the number to score, e.g. value or metrics.cpu.'),
    time: fieldPathSchema
      .optional()
      .describe(
        'Field holding the event time (ms since the epoch or ISO-8601); default: the record timestamp.',
      ),
    ...tuningSchema.shape,
    threshold: z
      .number()
      .min(0)
      .max(1)
      .default(0.68)
      .describe('is_anomaly is true when anomaly_score is at least this (default 0.68).'),
    max_series: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(100_000)
      .describe(
        'Series held per partition; beyond it the least recently seen series is dropped (and counted).',
      ),
    registry: registrySchema.optional(),
  })
  .strict()
  .describe(
    'Scores each record of a series online for anomalies (seasonal, EWMA, median/MAD or an ensemble) and adds anomaly_score, is_anomaly, expected, lower and upper to its value.',
  );

export type AnomalyStepConfig = z.infer<typeof anomalyStepSchema>;
