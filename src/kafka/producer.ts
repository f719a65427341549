import { CompressionTypes, type Kafka, type Message, Partitioners, type Producer } from 'kafkajs';
import { z } from 'zod';

const compressionTypes = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  lz4: CompressionTypes.LZ4,
} as const;

/** Producer options shared by the Kafka sink and the Kafka dead-letter writer. */
export const producerShape = {
  compression: z.enum(['none', 'gzip', 'lz4']).default('lz4').describe('Compression of produced batches.'),
  max_request_bytes: z
    .number()
    .int()
    .min(1024)
    .max(64 * 1024 * 1024)
    .default(512 * 1024)
    .describe("Bytes of messages per produce request, at most (stays below the broker's message.max.bytes)."),
};

export type ProducerOptions = z.infer<z.ZodObject<typeof producerShape>>;

/**
 * Sends batches of messages with acks from all in-sync replicas, split into requests of at
 * most `max_request_bytes` that are sent concurrently. Resolves only when every message is
 * acknowledged; throws (and the caller retries the whole batch) otherwise.
 */
export class BatchProducer {
  private readonly producer: Producer;
  private connected: Promise<void> | undefined;
  private readonly topics = new Map<string, Promise<void>>();

  constructor(
    private readonly kafka: Kafka,
    private readonly options: ProducerOptions,
  ) {
    // The Java-compatible murmur2 partitioner (KafkaJS 2's default), named so it does not warn.
    this.producer = kafka.producer({
      allowAutoTopicCreation: true,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
  }

  private connect(): Promise<void> {
    this.connected ??= this.producer.connect().catch((err: unknown) => {
      this.connected = undefined;
      throw err;
    });
    return this.connected;
  }

  /** Creates the topic (broker defaults unless told) if it does not exist, once per topic. */
  ensureTopic(topic: string, options: { numPartitions?: number; compact?: boolean } = {}): Promise<void> {
    let created = this.topics.get(topic);
    if (!created) {
      created = createTopic(this.kafka, topic, options).catch((err: unknown) => {
        this.topics.delete(topic);
        throw err;
      });
      this.topics.set(topic, created);
    }
    return created;
  }

  async send(topic: string, messages: Message[]): Promise<void> {
    if (messages.length === 0) return;
    await this.connect();
    await Promise.all(
      requestsOf(messages, this.options.max_request_bytes).map((chunk) =>
        this.producer.send({
          topic,
          messages: chunk,
          acks: -1,
          compression: compressionOf(this.options),
        }),
      ),
    );
  }

  async close(): Promise<void> {
    if (this.connected) await this.producer.disconnect();
    this.connected = undefined;
  }
}

/** Creates the topic (broker defaults unless told) unless it exists. */
export async function createTopic(
  kafka: Kafka,
  topic: string,
  options: { numPartitions?: number; compact?: boolean } = {},
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    if ((await admin.listTopics()).includes(topic)) return;
    await admin
      .createTopics({
        topics: [
          {
            topic,
            numPartitions: options.numPartitions ?? -1,
            configEntries: options.compact ? [{ name: 'cleanup.policy', value: 'compact' }] : [],
          },
        ],
        waitForLeaders: true,
      })
      .catch((err: { errors?: { type?: string }[] }) => {
        // Another worker created it meanwhile.
        if (!err.errors?.every((e) => e.type === 'TOPIC_ALREADY_EXISTS')) throw err;
      });
  } finally {
    await admin.disconnect();
  }
}

export const compressionOf = (options: ProducerOptions) => compressionTypes[options.compression];

/** Splits messages, in order, into produce requests of at most `maxBytes` each. */
export function requestsOf(messages: Message[], maxBytes: number): Message[][] {
  const requests: Message[][] = [];
  let chunk: Message[] = [];
  let bytes = 0;
  for (const m of messages) {
    const size = messageBytes(m);
    if (bytes + size > maxBytes && chunk.length > 0) {
      requests.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(m);
    bytes += size;
  }
  if (chunk.length > 0) requests.push(chunk);
  return requests;
}

function messageBytes(m: Message): number {
  let n = 64;
  if (m.value) n += typeof m.value === 'string' ? Buffer.byteLength(m.value) : m.value.length;
  if (m.key) n += typeof m.key === 'string' ? Buffer.byteLength(m.key) : m.key.length;
  if (m.headers) for (const [k, v] of Object.entries(m.headers)) n += k.length + String(v ?? '').length;
  return n;
}
