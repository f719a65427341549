import { type FileHandle, mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { ComponentDefinition, Sink } from '../core/component.js';
import type { FlotillaRecord } from '../core/record.js';
import { jsonlShape, toJsonLines } from './jsonl.js';

export const fileSinkSchema = z
  .object({
    kind: z.literal('file'),
    ...jsonlShape,
    path: z.string().min(1).describe('JSONL file to append to (relative to the topology file).'),
    fsync: z.boolean().default(false).describe('fdatasync after each batch before acknowledging it.'),
  })
  .strict()
  .describe('Appends records as JSON lines to a file.');

class FileSink implements Sink {
  private handle: Promise<FileHandle> | undefined;

  constructor(
    readonly name: string,
    private readonly file: string,
    private readonly format: 'value' | 'envelope',
    private readonly fsync: boolean,
  ) {}

  async write(records: FlotillaRecord[]): Promise<void> {
    if (records.length === 0) return;
    // A failed open is not cached: the next (retried) write tries again.
    this.handle ??= mkdir(path.dirname(this.file), { recursive: true })
      .then(() => open(this.file, 'a'))
      .catch((err: unknown) => {
        this.handle = undefined;
        throw err;
      });
    const fh = await this.handle;
    await fh.write(toJsonLines(records, this.format));
    if (this.fsync) await fh.datasync();
  }

  async close(): Promise<void> {
    const fh = await this.handle?.catch(() => undefined);
    this.handle = undefined;
    await fh?.close();
  }
}

export const fileSink: ComponentDefinition<typeof fileSinkSchema, Sink> = {
  kind: 'file',
  description: fileSinkSchema.description ?? '',
  schema: fileSinkSchema,
  create: (config, ctx) =>
    new FileSink(config.name ?? 'file', path.resolve(ctx.baseDir, config.path), config.format, config.fsync),
};
