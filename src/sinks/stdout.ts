import { z } from 'zod';
import type { ComponentDefinition, Sink } from '../core/component.js';
import type { FlotillaRecord } from '../core/record.js';
import { jsonlShape, toJsonLines } from './jsonl.js';

export const stdoutSinkSchema = z
  .object({ kind: z.literal('stdout'), ...jsonlShape })
  .strict()
  .describe('Prints records as JSON lines on standard output.');

class StdoutSink implements Sink {
  constructor(
    readonly name: string,
    private readonly format: 'value' | 'envelope',
  ) {}

  write(records: FlotillaRecord[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    const text = toJsonLines(records, this.format);
    // Acknowledged once the stream has taken it (honours backpressure on a slow pipe).
    return new Promise((resolve, reject) => {
      process.stdout.write(text, (err) => (err ? reject(err) : resolve()));
    });
  }

  async close(): Promise<void> {}
}

export const stdoutSink: ComponentDefinition<typeof stdoutSinkSchema, Sink> = {
  kind: 'stdout',
  description: stdoutSinkSchema.description ?? '',
  schema: stdoutSinkSchema,
  create: (config) => new StdoutSink(config.name ?? 'stdout', config.format),
};
