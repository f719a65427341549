import type { Admin, Consumer, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import { z } from 'zod';
import type {
  BatchHandler,
  ComponentContext,
  ComponentDefinition,
  Source,
  SourceEvents,
} from '../core/component.js';
import { FlotillaError } from '../core/errors.js';
import { type FlotillaRecord, RECORD_TIME_HEADER } from '../core/record.js';
import { KafkaChangelog } from '../kafka/changelog.js';
import { kafkaConnectionShape, kafkaFor } from '../kafka/client.js';
import { BatchProducer, producerShape } from '../kafka/producer.js';
import type { Logger } from '../observability/logger.js';
import { metrics } from '../observability/metrics.js';
import { KafkaDeadLetters } from '../runtime/dead-letter.js';
import { InflightBudget } from './inflight.js';

const startSchema = z
  .string()
  .refine(
    (v) =>
      v === 'earliest' || v === 'latest' || (/^\d{4}-\d\d-\d\dT/.test(v) && !Number.isNaN(Date.parse(v))),
    {
      error: (issue) =>
        `expected 'earliest', 'latest' or an ISO-8601 time such as 2026-01-01T00:00:00Z, found '${String(issue.input)}'`,
    },
  );

export const kafkaSourceSchema = z
  .object({
    kind: z.literal('kafka'),
    ...kafkaConnectionShape,
    topics: z.array(z.string().min(1)).min(1).optional().describe('Topics to consume.'),
    pattern: z
      .string()
      .min(1)
      .refine(
        (p) => {
          try {
            new RegExp(p);
            return true;
          } catch {
            return false;
          }
        },
        { message: 'not a valid regular expression' },
      )
      .optional()
      .describe('A regular expression: consume every topic whose name matches (resolved at start).'),
    start: startSchema
      .default('earliest')
      .describe('Where a group with no committed offsets starts: earliest, latest or an ISO time.'),
    max_inflight_records: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        'Records fetched but not yet acknowledged, at most; partitions pause above it. Default: 20,000; ' +
          '200,000 in a topology with stateful steps (windows, dedupe, anomaly), whose batches wait on a ' +
          'checkpoint transaction: what arrives meanwhile is checkpointed together.',
      ),
    max_inflight_bytes: z
      .number()
      .int()
      .min(1024)
      .default(64 * 1024 * 1024)
      .describe('Bytes of records fetched but not yet acknowledged, at most.'),
    concurrency: z
      .number()
      .int()
      .min(1)
      .max(256)
      .default(4)
      .describe('Partitions whose batches are handed over concurrently.'),
    max_bytes_per_partition: z
      .number()
      .int()
      .min(1024)
      .default(1024 * 1024),
    session_timeout_ms: z.number().int().min(1000).default(30_000),
    heartbeat_interval_ms: z.number().int().min(100).default(3000),
    commit_interval_ms: z
      .number()
      .int()
      .min(0)
      .default(1000)
      .describe('Acknowledged offsets are committed this often (and always on drain and rebalance).'),
    stall_timeout_ms: z
      .number()
      .int()
      .min(1000)
      .default(60_000)
      .describe('No progress for this long while lag grows and no sink is retrying: restart the consumer.'),
    dead_letter: z
      .object(producerShape)
      .strict()
      .default({ compression: 'lz4', max_request_bytes: 512 * 1024 })
      .describe('Producer options for the dead-letter topic.'),
  })
  .strict()
  .refine((c) => (c.topics === undefined) !== (c.pattern === undefined), {
    message: "give exactly one of 'topics' or 'pattern'",
  })
  .describe('Consumes Kafka topics in a consumer group, committing only acknowledged offsets.');

export type KafkaSourceConfig = z.infer<typeof kafkaSourceSchema>;

/** A batch handed to the handler and not yet acknowledged. */
interface InFlight {
  /** Offset to commit once this batch and every earlier one are acknowledged. */
  next: number;
  records: number;
  bytes: number;
  /** Acknowledged; a failed batch stays not done, so nothing after it is committed. */
  done: boolean;
}

/** Per assigned partition: batches in flight in offset order and the offset safe to commit. */
export interface PartitionState {
  topic: string;
  partition: number;
  inflight: InFlight[];
  /** Next offset to consume after everything acknowledged (what a commit writes). */
  acked: number | undefined;
  committed: number | undefined;
  /** Next offset after the last record handed to the handler since the partition was assigned. */
  handedOver?: number;
  highWatermark: number;
  lastProgress: number;
}

/**
 * A partition is stalled when records wait (the high watermark is past what was acknowledged),
 * nothing of it is in flight (so no sink is holding it back), it is not paused or finished on
 * purpose, and it has not moved for `timeoutMs`.
 */
export function isStalled(
  s: Pick<PartitionState, 'inflight' | 'acked' | 'highWatermark' | 'lastProgress'>,
  now: number,
  timeoutMs: number,
  heldOnPurpose: boolean,
): boolean {
  return (
    s.inflight.length === 0 &&
    s.acked !== undefined &&
    s.highWatermark > s.acked &&
    !heldOnPurpose &&
    now - s.lastProgress > timeoutMs
  );
}

/** Default in-flight records: enough to keep fetching while sinks write. */
const INFLIGHT_RECORDS = 20_000;
/**
 * With stateful steps each batch also waits on a changelog transaction (tens of ms, more under
 * load): a larger budget lets batches arrive meanwhile, to be checkpointed together, so there
 * are fewer transactions per record. Measured (`npm run bench -- window --only tumbling
 * --inflight N`): 55k, 87k, 153k and 207k records/s (9.2, 8.1, 7.2 and 5.7 CPU µs/record) for
 * 20k, 50k, 100k and 200k. Memory stays bounded by max_inflight_bytes as well.
 */
const STATEFUL_INFLIGHT_RECORDS = 200_000;

const stateKey = (topic: string, partition: number) => `${topic}\u0000${partition}`;

/** The topics a source config names, or those its pattern matches now (internal `__` topics excluded). */
export async function resolveTopics(
  { topics, pattern }: Pick<KafkaSourceConfig, 'topics' | 'pattern'>,
  admin: Admin,
): Promise<string[]> {
  if (topics) return topics;
  const re = new RegExp(pattern as string);
  const matching = (await admin.listTopics()).filter((t) => re.test(t) && !t.startsWith('__'));
  if (matching.length === 0) {
    throw new FlotillaError(`no topic matches the pattern /${pattern}/ (topics are resolved at start)`);
  }
  return matching;
}

/** Options a program gives a Kafka source (not YAML). */
export interface KafkaSourceOptions {
  /**
   * Bounded mode (replay): topic → partition → the offset to stop before. Records at or past it
   * are not handed over and a partition that reached it is paused; a partition with no entry has
   * nothing to read. `run` resolves once every bounded partition has been read up to its end
   * (or was committed there already), acknowledged and committed.
   */
  stopAt?: ReadonlyMap<string, ReadonlyMap<number, number>>;
}

/**
 * Turns one partition's messages into records, counting their bytes. What the records of a
 * batch share is computed once: the id prefix (one string concatenation per record, not four)
 * and the timestamp, which consecutive messages of a producer's batch usually repeat.
 */
export function toRecords(
  topic: string,
  partition: number,
  messages: KafkaMessage[],
): { records: FlotillaRecord[]; bytes: number } {
  const records: FlotillaRecord[] = new Array(messages.length);
  // The same string as passThroughId(record.source), built once per batch.
  const idPrefix = `${topic}/${partition}/`;
  let bytes = 0;
  let lastTimestamp = '';
  let lastTimestampMs = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as KafkaMessage;
    bytes += (m.value?.length ?? 0) + (m.key?.length ?? 0);
    if (m.timestamp !== lastTimestamp) {
      lastTimestamp = m.timestamp;
      lastTimestampMs = Number(m.timestamp);
    }
    const headers: Record<string, string> = {};
    for (const k in m.headers) {
      const v = m.headers[k];
      if (v !== undefined) headers[k] = Array.isArray(v) ? String(v.at(-1)) : String(v);
    }
    // Written by a Flotilla Kafka sink, whose message timestamp is the time of writing.
    const recordTime = headers[RECORD_TIME_HEADER];
    records[i] = {
      id: idPrefix + m.offset,
      key: m.key === null ? null : m.key.toString('utf8'),
      value: m.value,
      timestamp: recordTime === undefined ? lastTimestampMs : Number(recordTime),
      headers,
      source: { topic, partition, offset: m.offset },
    };
  }
  return { records, bytes };
}

/**
 * A Kafka consumer-group source. Batches are handed to the handler without waiting for the
 * previous one's acknowledgement (sinks overlap with fetching); what is in flight is bounded
 * by records and bytes, and partitions pause above the bounds. Offsets are committed only up
 * to the last batch whose every predecessor is acknowledged. Before a rebalance gives
 * partitions up, and on stop, in-flight batches are drained and their offsets committed.
 */
export class KafkaSource implements Source {
  readonly kind = 'kafka';
  private consumer: Consumer | undefined;
  private admin: Admin | undefined;
  private handler: BatchHandler | undefined;
  private events: SourceEvents | undefined;
  private readonly partitions = new Map<string, PartitionState>();
  private readonly paused = new Set<string>();
  private readonly budget: InflightBudget;
  private stopping = false;
  private joined = false;
  /** Member id of the latest join; the next join under another one means the group evicted us. */
  private memberId: string | undefined;
  private crashed: Error | undefined;
  private timers: NodeJS.Timeout[] = [];
  private finished: (() => void) | undefined;
  /** Bounded mode: partitions (stateKey) fetched up to their stop offset. */
  private readonly reachedEnd = new Set<string>();
  private readonly kafka: Kafka;
  private readonly log: Logger;

  constructor(
    readonly config: KafkaSourceConfig,
    private readonly ctx: ComponentContext,
    private readonly options: KafkaSourceOptions = {},
  ) {
    this.kafka = kafkaFor(config, ctx);
    this.log = ctx.logger.child({ source: 'kafka' });
    this.budget = new InflightBudget(
      {
        records: config.max_inflight_records ?? (ctx.stateful ? STATEFUL_INFLIGHT_RECORDS : INFLIGHT_RECORDS),
        bytes: config.max_inflight_bytes,
      },
      ctx.topology,
    );
  }

  stateStore(name: string): KafkaChangelog {
    return new KafkaChangelog(this.kafka, name, this.config.dead_letter, () => this.partitionCount());
  }

  /** Partitions of the (first) input topic: a changelog has as many. */
  private async partitionCount(): Promise<number> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const [topic] = await resolveTopics(this.config, admin);
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic as string] });
      return topics[0]?.partitions.length ?? 1;
    } finally {
      await admin.disconnect();
    }
  }

  deadLetterWriter(topic: string): KafkaDeadLetters {
    return new KafkaDeadLetters(topic, new BatchProducer(this.kafka, this.config.dead_letter));
  }

  ready(): boolean {
    return this.joined && !this.stopping;
  }

  async run(handler: BatchHandler, events?: SourceEvents): Promise<void> {
    this.handler = handler;
    this.events = events;
    this.admin = this.kafka.admin();
    await this.admin.connect();
    const topics = await resolveTopics(this.config, this.admin);
    await this.seekToStartTime(topics);
    await this.markCommittedAtEnd(topics);
    const done = new Promise<void>((resolve) => {
      this.finished = resolve;
    });
    await this.startConsumer(topics);
    this.timers.push(
      setInterval(() => void this.commitAcked(), Math.max(this.config.commit_interval_ms, 50)),
      setInterval(() => void this.watch(topics), Math.min(5000, this.config.stall_timeout_ms / 2)),
    );
    this.stopIfAllReachedEnd();
    await done;
    if (this.crashed) throw this.crashed;
  }

  /** Stops fetching, drains in-flight batches, commits, leaves the group. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const consumer = this.consumer;
    if (consumer) {
      // A crashed consumer is disconnected already: KafkaJS would throw on pause.
      if (!this.crashed) consumer.pause([...this.topicsAssigned()].map((topic) => ({ topic })));
      await this.budget.drained();
      await this.commitAcked();
      await consumer.disconnect();
    }
    for (const t of this.timers) clearInterval(t);
    await this.admin?.disconnect();
    this.finished?.();
  }

  /** For `start: <time>`: a group with no commits on a topic starts at that time's offsets. */
  private async seekToStartTime(topics: string[]): Promise<void> {
    const { start } = this.config;
    if (start === 'earliest' || start === 'latest' || !this.admin) return;
    const admin = this.admin;
    const committed = await admin.fetchOffsets({ groupId: this.ctx.group, topics });
    for (const { topic, partitions } of committed) {
      if (partitions.some((p) => Number(p.offset) >= 0)) continue;
      const offsets = await admin.fetchTopicOffsetsByTimestamp(topic, Date.parse(start));
      await admin
        .setOffsets({ groupId: this.ctx.group, topic, partitions: offsets })
        // Another worker of the group joined first and set them.
        .catch((err: Error) => this.log.debug({ err, topic }, 'start offsets already set by the group'));
    }
  }

  /** Bounded mode: the stop offset of a partition (0 for one with nothing to read); unbounded: undefined. */
  private stopOffset(topic: string, partition: number): number | undefined {
    const { stopAt } = this.options;
    return stopAt && (stopAt.get(topic)?.get(partition) ?? 0);
  }

  /** Bounded mode: a partition already committed at its end has nothing left to read. */
  private async markCommittedAtEnd(topics: string[]): Promise<void> {
    if (!this.options.stopAt || !this.admin) return;
    for (const { topic, partitions } of await this.admin.fetchOffsets({ groupId: this.ctx.group, topics })) {
      for (const p of partitions) {
        const end = this.stopOffset(topic, p.partition) ?? 0;
        if (Number(p.offset) >= end) this.reachedEnd.add(stateKey(topic, p.partition));
      }
    }
  }

  /** Bounded mode: once every bounded partition reached its end with nothing in flight, stop (drain, commit). */
  private stopIfAllReachedEnd(): void {
    const { stopAt } = this.options;
    if (!stopAt || this.stopping) return;
    for (const [topic, ends] of stopAt) {
      for (const partition of ends.keys()) {
        const key = stateKey(topic, partition);
        if (!this.reachedEnd.has(key) || (this.partitions.get(key)?.inflight.length ?? 0) > 0) return;
      }
    }
    this.log.info('bounded source: every partition read up to its stop offset');
    void this.stop();
  }

  private async startConsumer(topics: string[]): Promise<void> {
    const c = this.config;
    const consumer = this.kafka.consumer({
      groupId: this.ctx.group,
      sessionTimeout: c.session_timeout_ms,
      heartbeatInterval: c.heartbeat_interval_ms,
      rebalanceTimeout: Math.max(c.session_timeout_ms, 60_000),
      maxBytesPerPartition: c.max_bytes_per_partition,
      maxWaitTimeInMs: 500,
      // KafkaJS restarts a consumer that crashed on a retriable error — also one that crashed
      // while we disconnect it on stop, which would keep a stopped worker alive in the group.
      retry: { retries: 5, restartOnFailure: async () => !this.stopping },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) =>
      this.onAssignment(payload.memberAssignment, payload.memberId),
    );
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      // Crashing while being disconnected on stop (a join in progress) is the end we asked for:
      // what was in flight is drained and committed already.
      if (this.stopping) return this.log.warn({ err: payload.error }, 'consumer crashed while stopping');
      metrics.consumerRestarts.inc({ topology: this.ctx.topology, reason: 'crash' });
      this.log.error({ err: payload.error, restart: payload.restart }, 'consumer crashed');
      if (!payload.restart) {
        this.crashed = payload.error;
        void this.stop();
      }
    });
    await consumer.connect();
    await consumer.subscribe({ topics, fromBeginning: c.start !== 'latest' });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: c.concurrency,
      eachBatch: (payload) => this.onBatch(payload),
    });
  }

  /**
   * Forgets revoked partitions: their in-flight batches finish but are never committed by us.
   * A join under a new member id means this consumer was out of the group (evicted when its
   * session expired — a frozen process, a long pause — or restarted after a stall) and other
   * members may have owned its partitions meanwhile: every partition held before counts as
   * revoked, even one assigned again, so that its state is restored afresh and its stale
   * acknowledged offset is never committed over the newer one.
   */
  private onAssignment(assignment: Record<string, number[]>, memberId: string): void {
    this.joined = true;
    const rejoined = this.memberId !== undefined && memberId !== this.memberId;
    this.memberId = memberId;
    const assigned = new Set<string>();
    for (const [topic, parts] of Object.entries(assignment))
      for (const p of parts) assigned.add(stateKey(topic, p));
    if (rejoined && this.partitions.size > 0) {
      this.log.warn(
        { partitions: [...this.partitions.values()].map((s) => `${s.topic}/${s.partition}`) },
        'joined the group as a new member: the partitions held before count as revoked',
      );
    }
    for (const [key, state] of this.partitions) {
      if (rejoined || !assigned.has(key)) {
        this.events?.revoked(state.topic, [state.partition]);
        this.partitions.delete(key);
        // KafkaJS keeps a partition paused until resumed, across assignments: a partition
        // revoked while paused and assigned again later would never be fetched.
        if (this.paused.delete(key)) {
          this.consumer?.resume([{ topic: state.topic, partitions: [state.partition] }]);
        }
        metrics.consumerLag.remove({
          topology: this.ctx.topology,
          topic: state.topic,
          partition: String(state.partition),
        });
      }
    }
    this.log.info({ assignment }, 'partitions assigned');
  }

  private partitionState(topic: string, partition: number): PartitionState {
    const key = stateKey(topic, partition);
    let s = this.partitions.get(key);
    if (!s) {
      s = {
        topic,
        partition,
        inflight: [],
        acked: undefined,
        committed: undefined,
        highWatermark: 0,
        lastProgress: Date.now(),
      };
      this.partitions.set(key, s);
    }
    return s;
  }

  private async onBatch({
    batch,
    resolveOffset,
    heartbeat,
    isRunning,
    isStale,
  }: EachBatchPayload): Promise<void> {
    if (this.stopping || !isRunning() || isStale() || batch.messages.length === 0) return;
    const { topic, partition } = batch;
    const state = this.partitionState(topic, partition);
    state.highWatermark = Number(batch.highWatermark);
    let messages = batch.messages;
    // KafkaJS resumes a partition it keeps across a rebalance from the last committed offset, which
    // is behind what was handed over when its own heartbeat saw the rebalance (no drain and commit
    // ran first). Those records are in the pipeline, and in stateful steps' state, already: handed
    // over again they would count twice.
    const handedOver = state.handedOver;
    if (handedOver !== undefined && Number(messages[0]?.offset) < handedOver) {
      this.log.warn(
        { topic, partition, offset: messages[0]?.offset, handedOver },
        'records delivered again after a rebalance skipped: already handed over',
      );
      messages = messages.filter((m) => Number(m.offset) >= handedOver);
      if (messages.length === 0) {
        resolveOffset(batch.lastOffset());
        return;
      }
    }
    let next = Number(batch.lastOffset()) + 1;
    const end = this.stopOffset(topic, partition);
    if (end !== undefined && next >= end) {
      next = end;
      messages = messages.filter((m) => Number(m.offset) < end);
      this.reachedEnd.add(stateKey(topic, partition));
      this.consumer?.pause([{ topic, partitions: [partition] }]);
      if (messages.length === 0) {
        this.stopIfAllReachedEnd();
        return;
      }
    }
    const { records, bytes } = toRecords(topic, partition, messages);
    const entry: InFlight = {
      next,
      records: records.length,
      bytes,
      done: false,
    };
    state.inflight.push(entry);
    state.handedOver = next;
    this.budget.add(records.length, bytes);
    const handled = (this.handler as BatchHandler)({ topic, partition, records });
    handled.then(
      () => this.settle(state, entry, true),
      (err: unknown) => {
        this.log.warn({ err, topic, partition }, 'batch not acknowledged; it will be re-delivered');
        this.settle(state, entry, false);
      },
    );
    // Resolving only moves KafkaJS's fetch position (autoCommit is off): commits are ours, on ack.
    resolveOffset(batch.lastOffset());
    if (this.budget.full()) this.pause(topic, partition);
    try {
      await heartbeat();
    } catch (err) {
      // A rebalance is starting: give up nothing in flight. Drain, commit, then let KafkaJS rejoin.
      this.log.info('rebalance: draining in-flight batches before giving partitions up');
      await this.budget.drained();
      await this.commitAcked();
      throw err;
    }
  }

  private settle(state: PartitionState, entry: InFlight, acknowledged: boolean): void {
    entry.done = acknowledged;
    while (state.inflight[0]?.done) {
      state.acked = (state.inflight.shift() as InFlight).next;
      state.lastProgress = Date.now();
    }
    this.budget.release(entry.records, entry.bytes);
    if (this.budget.roomToResume()) this.resumeAll();
    if (acknowledged) this.stopIfAllReachedEnd();
  }

  private pause(topic: string, partition: number): void {
    this.consumer?.pause([{ topic, partitions: [partition] }]);
    this.paused.add(stateKey(topic, partition));
    metrics.pausedPartitions.set({ topology: this.ctx.topology }, this.paused.size);
  }

  private resumeAll(): void {
    if (this.paused.size === 0 || this.stopping) return;
    const byTopic = new Map<string, number[]>();
    for (const key of this.paused) {
      const s = this.partitions.get(key);
      // A partition at its stop offset stays paused.
      if (!s || this.reachedEnd.has(key)) continue;
      byTopic.set(s.topic, [...(byTopic.get(s.topic) ?? []), s.partition]);
    }
    this.consumer?.resume([...byTopic].map(([topic, partitions]) => ({ topic, partitions })));
    this.paused.clear();
    metrics.pausedPartitions.set({ topology: this.ctx.topology }, 0);
  }

  private *topicsAssigned(): Iterable<string> {
    yield* new Set([...this.partitions.values()].map((s) => s.topic));
  }

  /** Commits every partition's acknowledged offset that moved since the last commit. */
  private async commitAcked(): Promise<void> {
    const consumer = this.consumer;
    if (!consumer) return;
    // The offsets as sent: `acked` may move on while the commit is awaited.
    const due = [...this.partitions.values()]
      .filter((s) => s.acked !== undefined && s.acked !== s.committed)
      .map((s) => ({ s, offset: s.acked }));
    if (due.length === 0) return;
    const end = metrics.commitSeconds.startTimer({ topology: this.ctx.topology });
    try {
      await consumer.commitOffsets(
        due.map(({ s, offset }) => ({ topic: s.topic, partition: s.partition, offset: String(offset) })),
      );
      for (const { s, offset } of due) s.committed = offset;
      end();
    } catch (err) {
      // During a rebalance the coordinator refuses commits; the next one (or the drain) retries.
      this.log.debug({ err }, 'commit deferred');
    }
  }

  /** Lag per partition, and the stall watchdog: no progress while lag grows and nothing in flight. */
  private async watch(topics: string[]): Promise<void> {
    if (this.stopping || !this.admin) return;
    try {
      for (const topic of topics) {
        for (const o of await this.admin.fetchTopicOffsets(topic)) {
          const s = this.partitions.get(stateKey(topic, o.partition));
          if (!s) continue;
          s.highWatermark = Number(o.high);
          const lag = s.highWatermark - (s.acked ?? s.highWatermark);
          metrics.consumerLag.set(
            { topology: this.ctx.topology, topic, partition: String(o.partition) },
            Math.max(0, lag),
          );
        }
      }
    } catch (err) {
      this.log.warn({ err }, 'cannot read topic offsets for lag');
      return;
    }
    const now = Date.now();
    const stalled = [...this.partitions.values()].filter((s) => {
      const key = stateKey(s.topic, s.partition);
      return isStalled(
        s,
        now,
        this.config.stall_timeout_ms,
        this.paused.has(key) || this.reachedEnd.has(key),
      );
    });
    if (stalled.length > 0) await this.restart(topics, stalled);
  }

  private async restart(topics: string[], stalled: PartitionState[]): Promise<void> {
    metrics.consumerRestarts.inc({ topology: this.ctx.topology, reason: 'stall' });
    this.log.error(
      {
        partitions: stalled.map((s) => `${s.topic}/${s.partition}`),
        lag: stalled.map((s) => s.highWatermark),
      },
      'consumer stalled (no progress while lag grows); restarting it',
    );
    const old = this.consumer;
    await this.budget.drained();
    await this.commitAcked();
    for (const s of stalled) s.lastProgress = Date.now();
    this.joined = false;
    await old?.disconnect();
    if (!this.stopping) await this.startConsumer(topics);
  }
}

export const kafkaSource: ComponentDefinition<typeof kafkaSourceSchema, Source> = {
  kind: 'kafka',
  description: kafkaSourceSchema.description ?? '',
  schema: kafkaSourceSchema,
  create: (config, ctx) => new KafkaSource(config, ctx),
};
