import type { Kafka } from 'kafkajs';
import type { StateEntry, StateStore } from '../core/component.js';
import { TransientError } from '../core/errors.js';
import type { BatchProducer } from './producer.js';

const READ_TIMEOUT_MS = 60_000;

/**
 * A stateful step's state as a compacted Kafka topic: input partition p's entries go to
 * changelog partition p, keyed by the entry key (compaction keeps the last per key; a null
 * value is a tombstone). Restoring reads the partition from its start to its current end.
 */
export class KafkaChangelog implements StateStore {
  private ensured: Promise<void> | undefined;

  constructor(
    private readonly kafka: Kafka,
    readonly topic: string,
    private readonly producer: BatchProducer,
    private readonly partitions: () => Promise<number>,
  ) {}

  /** Creates the topic once (a metadata round trip per checkpoint would dominate its cost). */
  private ensure(): Promise<void> {
    this.ensured ??= this.partitions()
      .then((numPartitions) => this.producer.ensureTopic(this.topic, { numPartitions, compact: true }))
      .catch((err: unknown) => {
        this.ensured = undefined;
        throw err;
      });
    return this.ensured;
  }

  async write(partition: number, entries: StateEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.ensure();
    await this.producer.send(
      this.topic,
      entries.map((e) => ({ key: e.key, value: e.value, partition })),
    );
  }

  async read(partition: number): Promise<StateEntry[]> {
    await this.ensure();
    const admin = this.kafka.admin();
    await admin.connect();
    let end: number;
    try {
      const offsets = await admin.fetchTopicOffsets(this.topic);
      end = Number(offsets.find((o) => o.partition === partition)?.high ?? 0);
    } finally {
      await admin.disconnect();
    }
    if (end === 0) return [];
    const entries: StateEntry[] = [];
    // KafkaJS has no manual assignment: a throwaway group subscribes and keeps one partition.
    const consumer = this.kafka.consumer({
      groupId: `${this.topic}.restore.${process.pid}.${Date.now()}`,
      maxWaitTimeInMs: 100,
    });
    await consumer.connect();
    try {
      await consumer.subscribe({ topics: [this.topic], fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        // A read that cannot finish (the broker unreachable, the consumer crashed for good)
        // fails, and the worker retries it, rather than holding the partition forever.
        const timer = setTimeout(
          () =>
            reject(new TransientError(`reading ${this.topic}[${partition}] took over ${READ_TIMEOUT_MS} ms`)),
          READ_TIMEOUT_MS,
        );
        timer.unref();
        consumer.on(consumer.events.CRASH, ({ payload }) => {
          if (!payload.restart) reject(payload.error);
        });
        consumer
          .run({
            eachBatch: async ({ batch }) => {
              if (batch.partition !== partition) return;
              for (const m of batch.messages) {
                if (Number(m.offset) >= end) break;
                entries.push({ key: m.key?.toString('utf8') ?? '', value: m.value });
              }
              if (Number(batch.lastOffset()) >= end - 1) {
                clearTimeout(timer);
                resolve();
              }
            },
          })
          .catch(reject);
      });
    } finally {
      await consumer.disconnect();
    }
    return entries;
  }

  close(): Promise<void> {
    return this.producer.close();
  }
}
