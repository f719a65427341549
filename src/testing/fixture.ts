import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { parseAndValidate } from '../topology/validate.js';

/**
 * A `flotilla test` fixture (docs/testing.md): the topology it tests, the records fed to its
 * source, and what each sink and the dead-letter topic must receive.
 */

const encodingShape = {
  format: z
    .enum(['json', 'avro'])
    .optional()
    .describe('How `value` is written: json (default) or avro (Confluent wire format, needs `schema`).'),
  schema: z.string().min(1).optional().describe('.avsc file (relative to the fixture) for avro values.'),
};

const inputRecordSchema = z
  .object({
    topic: z.string().min(1).optional().describe('Source topic (default: the source’s only topic).'),
    partition: z.number().int().min(0).max(1023).optional(),
    key: z.string().nullable().default(null),
    timestamp: z
      .union([z.number().int().min(0), z.iso.datetime({ offset: true })])
      .optional()
      .describe('ms since the epoch or an ISO time (default: 2026-01-01T00:00:00Z + 1 s per input).'),
    headers: z.record(z.string(), z.string()).default({}),
    value: z.unknown().optional().describe('The value, encoded per `format`.'),
    raw: z.string().optional().describe('The value bytes as UTF-8 text, as they are (e.g. broken JSON).'),
    hex: z
      .string()
      .regex(/^(?:[0-9a-fA-F]{2}\s*)*$/, 'pairs of hex digits')
      .optional()
      .describe('The value bytes in hex, e.g. "00 00 00 03 e7 02" (a wire-format header for schema id 999).'),
    ...encodingShape,
  })
  .strict();

const outputSchema = z.object({ key: z.string().nullable().optional(), value: z.unknown() }).strict();

const deadLetterSchema = z
  .object({
    input: z.number().int().min(0).optional().describe('Index of the input record that failed.'),
    step: z.string().min(1),
    reason: z.string().min(1),
    error: z.string().optional().describe('A part of the error message.'),
    key: z.string().nullable().optional(),
    value: z.unknown().optional(),
  })
  .strict();

export const fixtureSchema = z
  .object({
    topology: z.string().min(1).describe('The topology file, relative to the fixture.'),
    description: z.string().optional(),
    env: z
      .record(z.string(), z.string())
      .default({})
      .describe('Environment variables for the topology file.'),
    partitions: z.number().int().min(1).max(1024).default(1).describe('Partitions of each source topic.'),
    ...encodingShape,
    input: z.array(inputRecordSchema).min(1, 'at least one input record'),
    expect: z
      .object({ dead_letter: z.array(deadLetterSchema).default([]) })
      .catchall(z.array(outputSchema))
      .default({ dead_letter: [] })
      .describe('Per sink name, the records it receives in order; dead_letter: the dead letters.'),
  })
  .strict()
  .superRefine((fixture, ctx) => {
    fixture.input.forEach((r, i) => {
      const given = (['value', 'raw', 'hex'] as const).filter((k) => k in r);
      if (given.length !== 1) {
        ctx.addIssue({
          code: 'custom',
          path: ['input', i],
          message: `give exactly one of value, raw, hex (found ${given.length ? given.join(', ') : 'none'})`,
        });
      }
      if ((r.format ?? fixture.format) === 'avro' && !(r.schema ?? fixture.schema)) {
        ctx.addIssue({
          code: 'custom',
          path: ['input', i, 'schema'],
          message: 'format avro needs a schema (.avsc) here or at the top of the fixture',
        });
      }
    });
  });

export type FixtureConfig = z.infer<typeof fixtureSchema>;
export type InputRecord = FixtureConfig['input'][number];
export type ExpectedOutput = z.infer<typeof outputSchema>;
export type ExpectedDeadLetter = z.infer<typeof deadLetterSchema>;

export interface Fixture {
  /** Absolute path of the fixture file. */
  file: string;
  config: FixtureConfig;
}

/** `metrics.yaml` → `metrics.test.yaml` beside it, so `flotilla test` also takes a topology file. */
export function fixturePathFor(file: string): string {
  if (/\.test\.ya?ml$/.test(file)) return file;
  const ext = path.extname(file);
  return `${file.slice(0, file.length - ext.length)}.test${ext || '.yaml'}`;
}

/** Reads and validates a fixture; errors name the file, the line and the YAML path. */
export function loadFixture(file: string): Fixture {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([
      { file, path: '', message: `cannot read the fixture: ${(err as Error).message}` },
    ]);
  }
  return { file: path.resolve(file), config: parseAndValidate(text, file, fixtureSchema) };
}

/** The timestamp of input `index` (ms since the epoch). */
export function inputTimestamp(r: InputRecord, index: number): number {
  if (typeof r.timestamp === 'number') return r.timestamp;
  if (typeof r.timestamp === 'string') return Date.parse(r.timestamp);
  return Date.UTC(2026, 0, 1) + index * 1000;
}
