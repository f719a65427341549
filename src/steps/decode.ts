import { z } from 'zod';
import type { ComponentDefinition, Step } from '../core/component.js';
import { RecordError } from '../core/errors.js';
import type { FlotillaRecord } from '../core/record.js';

export const decodeStepSchema = z
  .object({
    kind: z.literal('decode'),
    name: z.string().min(1).optional(),
    format: z.enum(['json']).describe('Wire format of the record value.'),
  })
  .strict()
  .describe('Turns record bytes into a value (JSON; Avro through the schema registry).');

export type DecodeStepConfig = z.infer<typeof decodeStepSchema>;

function toText(value: unknown): string {
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'string') return value;
  throw new RecordError(
    `expected bytes to decode, found ${value === null ? 'null' : typeof value}`,
    'decode',
  );
}

export class JsonDecodeStep implements Step {
  constructor(readonly name: string) {}

  process(records: FlotillaRecord[], ctx: Parameters<Step['process']>[1]): FlotillaRecord[] {
    const out: FlotillaRecord[] = [];
    for (const r of records) {
      try {
        r.value = JSON.parse(toText(r.value));
        out.push(r);
      } catch (err) {
        ctx.deadLetter(r, 'decode', err);
      }
    }
    return out;
  }
}

export const decodeStep: ComponentDefinition<typeof decodeStepSchema, Step> = {
  kind: 'decode',
  description: decodeStepSchema.description ?? '',
  schema: decodeStepSchema,
  create: (config) => new JsonDecodeStep(config.name ?? 'decode'),
};
