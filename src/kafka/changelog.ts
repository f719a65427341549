import { randomUUID } from 'node:crypto';
import { type Kafka, Partitioners, type Producer, type Transaction } from 'kafkajs';
import type { StateEntry, StateStore } from '../core/component.js';
import { FlotillaError, StateFencedError, TransientError } from '../core/errors.js';
import { compressionOf, createTopic, type ProducerOptions, requestsOf } from './producer.js';

const READ_TIMEOUT_MS = 60_000;

/**
 * Right after a commit the coordinator is still writing its markers and answers the next
 * transaction's first request with CONCURRENT_TRANSACTIONS: retry that within milliseconds
 * (the client's 100 ms first backoff would make every checkpoint that slow).
 */
const TRANSACTION_RETRY = { initialRetryTime: 10, retries: 10 };

/** What the broker answers a producer whose transactional id a newer producer took over. */
const FENCED = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED']);

function isFenced(err: unknown): boolean {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) {
    if (FENCED.has((e as { type?: string }).type ?? '')) return true;
  }
  return false;
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * A stateful step's state as a compacted Kafka topic: input partition p's entries go to
 * changelog partition p, keyed by the entry key (compaction keeps the last per key; a null
 * value is a tombstone). Restoring reads the partition from its start to its current end.
 *
 * Writes are transactions of a producer whose transactional id names the changelog partition.
 * Claiming the partition initialises a new producer under that id, which makes the broker
 * refuse every later write of the previous owner's producer and abort what it left open — a
 * worker frozen past its session timeout cannot roll the state back when it wakes — and a
 * checkpoint lands whole or not at all. Restores read committed entries only.
 */
export class KafkaChangelog implements StateStore {
  private ensured: Promise<void> | undefined;
  /** Per partition: the producer of this worker's current claim. */
  private readonly owners = new Map<number, Producer>();

  constructor(
    private readonly kafka: Kafka,
    readonly topic: string,
    private readonly options: ProducerOptions,
    private readonly partitions: () => Promise<number>,
  ) {}

  /** Creates the topic once (a metadata round trip per checkpoint would dominate its cost). */
  private ensure(): Promise<void> {
    this.ensured ??= this.partitions()
      .then((numPartitions) => createTopic(this.kafka, this.topic, { numPartitions, compact: true }))
      .catch((err: unknown) => {
        this.ensured = undefined;
        throw new TransientError(`creating changelog ${this.topic}: ${messageOf(err)}`, { cause: err });
      });
    return this.ensured;
  }

  async claim(partition: number): Promise<void> {
    await this.ensure();
    await this.release(partition);
    const producer = this.kafka.producer({
      transactionalId: `${this.topic}.${partition}`,
      idempotent: true,
      maxInFlightRequests: 1,
      retry: TRANSACTION_RETRY,
      // Entries name their partition; named, so KafkaJS does not warn about its default.
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    try {
      await producer.connect();
      // The first transaction initialises the producer id: the broker bumps the epoch of the
      // transactional id (fencing the previous owner) and aborts any transaction it left open.
      await (await producer.transaction()).abort();
    } catch (err) {
      await producer.disconnect().catch(() => undefined);
      throw new TransientError(`claiming ${this.topic}[${partition}]: ${messageOf(err)}`, { cause: err });
    }
    this.owners.set(partition, producer);
  }

  private async release(partition: number): Promise<void> {
    const producer = this.owners.get(partition);
    this.owners.delete(partition);
    await producer?.disconnect().catch(() => undefined);
  }

  async write(partition: number, entries: StateEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const producer = this.owners.get(partition);
    if (!producer) throw new StateFencedError(this.topic, partition);
    let txn: Transaction | undefined;
    try {
      txn = await producer.transaction();
      const messages = entries.map((e) => ({ key: e.key, value: e.value, partition }));
      // One request at a time: the transaction's sequence numbers must reach the broker in order.
      for (const request of requestsOf(messages, this.options.max_request_bytes)) {
        await txn.send({
          topic: this.topic,
          messages: request,
          acks: -1,
          compression: compressionOf(this.options),
        });
      }
      await txn.commit();
    } catch (err) {
      // Fenced, or claimed again here meanwhile (a revoke and re-assignment): either way this
      // write belongs to an ownership that is over.
      if (isFenced(err) || this.owners.get(partition) !== producer) {
        if (this.owners.get(partition) === producer) await this.release(partition);
        throw new StateFencedError(this.topic, partition, { cause: err });
      }
      if (txn?.isActive()) {
        try {
          await txn.abort();
        } catch (abortErr) {
          // Neither committed nor aborted: only a new claim could write again, and claiming is
          // for a new assignment (a worker that re-claims on its own could fence the owner).
          await this.release(partition);
          throw new FlotillaError(
            `checkpoint to ${this.topic}[${partition}] failed and its transaction could not be aborted: ${messageOf(abortErr)}`,
            { cause: err },
          );
        }
      }
      throw new TransientError(`checkpoint to ${this.topic}[${partition}] failed: ${messageOf(err)}`, {
        cause: err,
      });
    }
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
    // Read committed (KafkaJS's default): entries of aborted transactions are skipped.
    // Its own group per read: restores of several partitions start in the same millisecond, and
    // two reads sharing a group would split the partitions between them (and, committing, each
    // skip what the other read), restoring part of the state.
    const consumer = this.kafka.consumer({
      groupId: `${this.topic}.restore.${randomUUID()}`,
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
        // Progress from the batch events, not from eachBatch: a batch of transaction markers or
        // aborted entries only (the log's tail after a claim) is never handed to eachBatch.
        consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
          if (payload.partition === partition && Number(payload.lastOffset) >= end - 1) {
            clearTimeout(timer);
            resolve();
          }
        });
        consumer
          .run({
            autoCommit: false,
            eachBatch: async ({ batch }) => {
              if (batch.partition !== partition) return;
              for (const m of batch.messages) {
                if (Number(m.offset) >= end) break;
                entries.push({ key: m.key?.toString('utf8') ?? '', value: m.value });
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

  async close(): Promise<void> {
    await Promise.all([...this.owners.keys()].map((p) => this.release(p)));
  }
}
