import { z } from 'zod';
import type { ComponentDefinition, Step } from '../core/component.js';
import { eachRecord, expressionSchema, scopeOf } from './expression-step.js';

export const mapStepSchema = z
  .object({
    kind: z.literal('map'),
    name: z.string().min(1).optional(),
    value: expressionSchema.describe('The new value, e.g. { host: value.host, cpu: round(value.value, 1) }.'),
    key: expressionSchema.optional().describe('The new key (a string expression); the old key by default.'),
  })
  .strict()
  .describe('Replaces each record value (and optionally its key) by expressions of the record.');

export const mapStep: ComponentDefinition<typeof mapStepSchema, Step> = {
  kind: 'map',
  description: mapStepSchema.description ?? '',
  schema: mapStepSchema,
  create: ({ name = 'map', value, key }) => ({
    name,
    process: (records, ctx) =>
      eachRecord(records, ctx, (r, out) => {
        const scope = scopeOf(r);
        const newKey = key ? key.evaluate(scope) : r.key;
        out.push({ ...r, value: value.evaluate(scope), key: newKey === null ? null : String(newKey) });
      }),
  }),
};
