import type { IHeaders, Message } from 'kafkajs';
import { z } from 'zod';
import type { ComponentDefinition, Sink, SinkContext } from '../core/component.js';
import { type FlotillaRecord, RECORD_TIME_HEADER } from '../core/record.js';
import { kafkaConnectionShape, kafkaFor } from '../kafka/client.js';
import { BatchProducer, producerShape } from '../kafka/producer.js';
import { expressionSchema, scopeOf } from '../steps/expression-step.js';

export const kafkaSinkSchema = z
  .object({
    kind: z.literal('kafka'),
    name: z.string().min(1).optional(),
    topic: z.string().min(1).describe('Topic to write to (created with broker defaults if missing).'),
    ...kafkaConnectionShape,
    key: z
      .union([z.enum(['id', 'source']), expressionSchema])
      .default('id')
      .describe(
        "Message key: 'id' (the record's deterministic id, so a compacted topic or a consumer dedupes re-deliveries), 'source' (the input key), or an expression.",
      ),
    timestamp: z
      .enum(['now', 'record'])
      .default('now')
      .describe(
        "Message timestamp: 'now' (when written; the record's own time is in the flotilla.timestamp header) or 'record' (the record's own time: an input record's timestamp, a window result's end). A topic deletes by time (retention.ms) from the message timestamps: with 'record', the results of old data (a backfill, a replay) can be deleted as soon as they are written.",
      ),
    ...producerShape,
  })
  .strict()
  .describe('Writes records to a Kafka topic as JSON, with the deterministic id in the flotilla.id header.');

export type KafkaSinkConfig = z.infer<typeof kafkaSinkSchema>;

/** JSON of the value (raw bytes pass through untouched). */
function encodeValue(value: unknown): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(JSON.stringify(value) ?? 'null');
}

class KafkaSink implements Sink {
  private readonly keyOf: (r: FlotillaRecord) => string | null;
  private readonly recordTime: boolean;

  constructor(
    readonly name: string,
    private readonly config: KafkaSinkConfig,
    private readonly producer: BatchProducer,
  ) {
    const { key } = config;
    this.recordTime = config.timestamp === 'record';
    this.keyOf =
      key === 'id'
        ? (r) => r.id
        : key === 'source'
          ? (r) => r.key
          : (r) => {
              const k = key.evaluate(scopeOf(r));
              return k === null || k === undefined ? null : String(k);
            };
  }

  async write(records: FlotillaRecord[], ctx: SinkContext): Promise<void> {
    await this.producer.ensureTopic(this.config.topic);
    const messages: Message[] = [];
    for (const r of records) {
      let key: string | null;
      try {
        key = this.keyOf(r);
      } catch (err) {
        ctx.reject(r, err);
        continue;
      }
      const headers: IHeaders = { ...r.headers, 'flotilla.id': r.id };
      // Without a timestamp the producer stamps the time of writing; the record's own time then
      // goes in a header, which the Kafka source and replay diff read back.
      if (!this.recordTime) headers[RECORD_TIME_HEADER] = String(r.timestamp);
      else if (RECORD_TIME_HEADER in headers) delete headers[RECORD_TIME_HEADER]; // an upstream one
      messages.push({
        key,
        value: encodeValue(r.value),
        timestamp: this.recordTime ? String(r.timestamp) : undefined,
        headers,
      });
    }
    await this.producer.send(this.config.topic, messages);
  }

  close(): Promise<void> {
    return this.producer.close();
  }
}

export const kafkaSink: ComponentDefinition<typeof kafkaSinkSchema, Sink> = {
  kind: 'kafka',
  description: kafkaSinkSchema.description ?? '',
  schema: kafkaSinkSchema,
  create: (config, ctx) =>
    new KafkaSink(config.name ?? 'kafka', config, new BatchProducer(kafkaFor(config, ctx), config)),
};
