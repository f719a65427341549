import { z } from 'zod';
import type { ComponentDefinition, Step } from '../core/component.js';
import { eachRecord, expressionSchema, scopeOf } from './expression-step.js';

export const filterStepSchema = z
  .object({
    kind: z.literal('filter'),
    name: z.string().min(1).optional(),
    expr: expressionSchema.describe(
      "A boolean expression; records for which it is true flow on, e.g. value.value > 0.5 && value.tenant != 'test'.",
    ),
  })
  .strict()
  .describe('Keeps the records an expression holds for; the rest are counted as filtered.');

export const filterStep: ComponentDefinition<typeof filterStepSchema, Step> = {
  kind: 'filter',
  description: filterStepSchema.description ?? '',
  schema: filterStepSchema,
  create: ({ name = 'filter', expr }) => ({
    name,
    process: (records, ctx) =>
      eachRecord(records, ctx, (r, out) => {
        if (expr.test(scopeOf(r))) out.push(r);
      }),
  }),
};
