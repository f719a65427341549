import { z } from 'zod';
import type { ComponentDefinition, Sink } from '../core/component.js';

export const discardSinkSchema = z
  .object({ kind: z.literal('discard'), name: z.string().min(1).optional() })
  .strict()
  .describe('The null sink: acknowledges every record at once and keeps nothing (benchmarks, dry runs).');

export const discardSink: ComponentDefinition<typeof discardSinkSchema, Sink> = {
  kind: 'discard',
  description: discardSinkSchema.description ?? '',
  schema: discardSinkSchema,
  create: (config) => ({
    name: config.name ?? 'discard',
    write: async () => {},
    close: async () => {},
  }),
};
