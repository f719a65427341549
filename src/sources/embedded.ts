import { z } from 'zod';
import type { BatchHandler, ComponentDefinition, Source } from '../core/component.js';
import type { FlotillaRecord } from '../core/record.js';
import { type EmbeddedLog, embeddedLog } from './embedded-log.js';

/** Options of every source that reads the embedded log. */
export const embeddedLogShape = {
  partitions: z.number().int().min(1).max(1024).default(3).describe('Partitions of the in-process topic.'),
  max_batch: z.number().int().min(1).max(100_000).default(500).describe('Records per batch, at most.'),
};

export const embeddedSourceSchema = z
  .object({
    kind: z.literal('embedded'),
    topic: z.string().min(1).describe('Name of the in-process topic.'),
    start: z
      .enum(['earliest', 'latest'])
      .default('earliest')
      .describe('Where a group with no commits starts.'),
    ...embeddedLogShape,
  })
  .strict()
  .describe('An in-process partitioned log: runs a topology with no Kafka.');

export type EmbeddedSourceConfig = z.infer<typeof embeddedSourceSchema>;

/**
 * Consumes every partition of an embedded topic, one loop per partition, committing a
 * batch's offsets only after the handler (steps + sinks) resolves.
 */
export class EmbeddedSource implements Source {
  readonly kind = 'embedded';
  private stopping = false;
  /** Resolves `run` once every partition is consumed to its end (see `runUntil`). */
  private untilEnd: (() => boolean) | undefined;

  constructor(
    readonly config: EmbeddedSourceConfig,
    readonly group: string,
    readonly log: EmbeddedLog = embeddedLog,
  ) {
    log.ensureTopic(config.topic, config.partitions);
  }

  /** Makes `run` return when `done()` holds and every partition is consumed to its end. */
  runUntil(done: () => boolean): void {
    this.untilEnd = done;
  }

  async run(handler: BatchHandler): Promise<void> {
    await Promise.all(
      Array.from({ length: this.config.partitions }, (_, p) => this.consumePartition(p, handler)),
    );
  }

  async stop(): Promise<void> {
    this.stopping = true;
  }

  private async consumePartition(partition: number, handler: BatchHandler): Promise<void> {
    const { topic, max_batch } = this.config;
    let offset =
      this.log.committedOffset(this.group, topic, partition) ??
      (this.config.start === 'earliest' ? 0 : this.log.endOffset(topic, partition));
    while (!this.stopping) {
      const entries = this.log.read(topic, partition, offset, max_batch);
      if (entries.length === 0) {
        if (this.untilEnd?.() && this.allConsumed()) return;
        await this.log.waitForAppend(50);
        continue;
      }
      const records: FlotillaRecord[] = entries.map((e) => ({
        id: `${topic}/${partition}/${e.offset}`,
        key: e.key,
        value: e.value,
        timestamp: e.timestamp,
        headers: e.headers,
        source: { topic, partition, offset: String(e.offset) },
      }));
      await handler({ topic, partition, records });
      offset = (entries.at(-1)?.offset ?? offset) + 1;
      this.log.commit(this.group, topic, partition, offset);
    }
  }

  private allConsumed(): boolean {
    const { topic, partitions } = this.config;
    for (let p = 0; p < partitions; p++) {
      if ((this.log.committedOffset(this.group, topic, p) ?? 0) < this.log.endOffset(topic, p)) return false;
    }
    return true;
  }
}

export const embeddedSource: ComponentDefinition<typeof embeddedSourceSchema, Source> = {
  kind: 'embedded',
  description: embeddedSourceSchema.description ?? '',
  schema: embeddedSourceSchema,
  create: (config, ctx) => new EmbeddedSource(config, ctx.group),
};
