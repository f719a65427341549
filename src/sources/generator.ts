import { z } from 'zod';
import type { BatchHandler, ComponentDefinition, Source } from '../core/component.js';
import { EmbeddedSource, embeddedLogShape } from './embedded.js';
import { type EmbeddedLog, embeddedLog } from './embedded-log.js';
import { syntheticRecords } from './synthetic.js';

export const generatorSourceSchema = z
  .object({
    kind: z.literal('generator'),
    preset: z.enum(['metrics', 'events']).describe('Which example schema to generate.'),
    rate: z.number().positive().max(10_000_000).default(1000).describe('Records per second.'),
    count: z.number().int().positive().optional().describe('Stop after this many records (default: never).'),
    seed: z.number().int().default(1).describe('The same seed gives the same records.'),
    ...embeddedLogShape,
  })
  .strict()
  .describe('Synthetic records at a rate, through the embedded log: for demos and benchmarks.');

export type GeneratorSourceConfig = z.infer<typeof generatorSourceSchema>;

/** Appends synthetic JSON records to an embedded topic at `rate` while an embedded consumer reads it. */
export class GeneratorSource implements Source {
  readonly kind = 'generator';
  private stopping = false;
  private produced = 0;
  private readonly consumer: EmbeddedSource;
  private readonly topic: string;

  constructor(
    readonly config: GeneratorSourceConfig,
    group: string,
    topology: string,
    private readonly log: EmbeddedLog = embeddedLog,
  ) {
    this.topic = `generator.${topology}`;
    this.consumer = new EmbeddedSource(
      {
        kind: 'embedded',
        topic: this.topic,
        partitions: config.partitions,
        start: 'earliest',
        max_batch: config.max_batch,
      },
      group,
      log,
    );
    this.consumer.runUntil(() => this.config.count !== undefined && this.produced >= this.config.count);
  }

  async run(handler: BatchHandler): Promise<void> {
    await Promise.all([this.produce(), this.consumer.run(handler)]);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.consumer.stop();
  }

  private async produce(): Promise<void> {
    const make = syntheticRecords(this.config.preset, this.config.seed);
    const { rate, count = Number.POSITIVE_INFINITY } = this.config;
    const started = performance.now();
    while (!this.stopping && this.produced < count) {
      // Catch up to where the rate says we should be, then sleep a tick.
      const due = Math.min(count, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
      // Bounded: never more than `maxLag` records ahead of the consumer.
      const room = this.maxLag() - this.lag();
      for (
        const end = Math.min(due, this.produced + Math.max(0, room));
        this.produced < end;
        this.produced++
      ) {
        const { key, value } = make(this.produced);
        this.log.append(this.topic, { key, value: Buffer.from(JSON.stringify(value)), timestamp: value.ts });
      }
      this.trimConsumed();
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private maxLag(): number {
    return this.config.max_batch * this.config.partitions * 4;
  }

  private lag(): number {
    let lag = 0;
    for (let p = 0; p < this.config.partitions; p++) {
      lag +=
        this.log.endOffset(this.topic, p) -
        (this.log.committedOffset(this.consumer.group, this.topic, p) ?? 0);
    }
    return lag;
  }

  /** Bounded memory on an endless demo: drop what the consumer has committed. */
  private trimConsumed(): void {
    for (let p = 0; p < this.config.partitions; p++) {
      const committed = this.log.committedOffset(this.consumer.group, this.topic, p);
      if (committed !== undefined) this.log.truncate(this.topic, p, committed);
    }
  }
}

export const generatorSource: ComponentDefinition<typeof generatorSourceSchema, Source> = {
  kind: 'generator',
  description: generatorSourceSchema.description ?? '',
  schema: generatorSourceSchema,
  create: (config, ctx) => new GeneratorSource(config, ctx.group, ctx.topology),
};
