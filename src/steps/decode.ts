import path from 'node:path';
import { z } from 'zod';
import type { ComponentContext, ComponentDefinition, Step, StepContext } from '../core/component.js';
import { ComponentConfigError, RecordError } from '../core/errors.js';
import type { FlotillaRecord } from '../core/record.js';
import { AvroCodec, type AvroSchema, readAvroSchema } from '../kafka/avro.js';

export const decodeStepSchema = z
  .object({
    kind: z.literal('decode'),
    name: z.string().min(1).optional(),
    format: z.enum(['json', 'avro']).describe('Wire format of the record value.'),
    registry: z
      .object({
        url: z
          .string()
          .min(1)
          .describe('Confluent-compatible schema registry URL, e.g. ${SCHEMA_REGISTRY_URL}.'),
      })
      .strict()
      .optional()
      .describe('Where Avro writer schemas are looked up by id (default: $SCHEMA_REGISTRY_URL).'),
    schema: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Reader schema (.avsc, relative to the topology file): values written with any compatible schema are read as this one.',
      ),
  })
  .strict()
  .superRefine((config, ctx) => {
    if (config.format === 'avro') return;
    for (const key of ['registry', 'schema'] as const) {
      if (config[key] !== undefined)
        ctx.addIssue({ code: 'custom', path: [key], message: `'${key}' applies only to format: avro` });
    }
  })
  .describe('Turns record bytes into a value (JSON; Avro through the schema registry).');

export type DecodeStepConfig = z.infer<typeof decodeStepSchema>;

/**
 * Replaces each record's bytes by its decoded value; a record that cannot be decoded keeps its
 * bytes and goes to the dead-letter topic with reason `decode`.
 */
function decodeEach(
  records: FlotillaRecord[],
  ctx: StepContext,
  decode: (value: unknown) => unknown,
): FlotillaRecord[] {
  const out: FlotillaRecord[] = [];
  for (const r of records) {
    try {
      r.value = decode(r.value);
      out.push(r);
    } catch (err) {
      ctx.deadLetter(r, 'decode', err);
    }
  }
  return out;
}

function parseJson(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return JSON.parse(value.toString('utf8'));
  if (typeof value === 'string') return JSON.parse(value);
  throw new RecordError(
    `expected bytes to decode, found ${value === null ? 'null' : typeof value}`,
    'decode',
  );
}

export class JsonDecodeStep implements Step {
  constructor(readonly name: string) {}

  process(records: FlotillaRecord[], ctx: StepContext): FlotillaRecord[] {
    return decodeEach(records, ctx, parseJson);
  }
}

/**
 * Confluent wire-format Avro. Writer schemas are fetched from the registry once per id; a
 * batch whose ids are all cached is decoded synchronously. A registry that cannot be reached
 * fails the batch (it is retried); a record it cannot decode is dead-lettered.
 */
export class AvroDecodeStep implements Step {
  constructor(
    readonly name: string,
    private readonly codec: AvroCodec,
  ) {}

  process(records: FlotillaRecord[], ctx: StepContext): FlotillaRecord[] | Promise<FlotillaRecord[]> {
    const decode = (value: unknown) => this.codec.decodeLoaded(value);
    const fetching = this.codec.prefetch(records.map((r) => r.value));
    if (!fetching) return decodeEach(records, ctx, decode);
    return fetching.then(() => decodeEach(records, ctx, decode));
  }
}

function createAvroStep(config: DecodeStepConfig, ctx: ComponentContext, name: string): AvroDecodeStep {
  const url = config.registry?.url ?? process.env.SCHEMA_REGISTRY_URL;
  if (!url) {
    throw new ComponentConfigError(
      'registry',
      `step '${name}' (decode, format avro) needs a schema registry: set registry.url in the step or the SCHEMA_REGISTRY_URL environment variable`,
    );
  }
  let readerSchema: AvroSchema | undefined;
  if (config.schema) {
    try {
      readerSchema = readAvroSchema(path.resolve(ctx.baseDir, config.schema));
    } catch (err) {
      throw new ComponentConfigError('schema', `step '${name}' (decode) schema: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  return new AvroDecodeStep(name, new AvroCodec(url, { readerSchema }));
}

export const decodeStep: ComponentDefinition<typeof decodeStepSchema, Step> = {
  kind: 'decode',
  description: decodeStepSchema.description ?? '',
  schema: decodeStepSchema,
  create: (config, ctx) => {
    const name = config.name ?? 'decode';
    return config.format === 'avro' ? createAvroStep(config, ctx, name) : new JsonDecodeStep(name);
  },
};
