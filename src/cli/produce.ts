import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { FlotillaError } from '../core/errors.js';
import { AvroCodec } from '../kafka/avro.js';
import { createKafka, parseBrokers } from '../kafka/client.js';
import { BatchProducer, producerShape } from '../kafka/producer.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { type Preset, seededRandom, syntheticRecords } from '../sources/synthetic.js';
import type { Command } from './main.js';
import { Progress, type ProgressOptions, type ProgressSummary } from './progress.js';

const schemasDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../schemas');

/** Avro schema file and default topic of each preset. */
const presets: Record<Preset, { schemaFile: string; topic: string }> = {
  metrics: { schemaFile: path.join(schemasDir, 'metric.avsc'), topic: 'metrics' },
  events: { schemaFile: path.join(schemasDir, 'listening-event.avsc'), topic: 'events' },
};

/** Schema id of Avro poison records: a real registry never hands out this one. */
export const UNREGISTERED_SCHEMA_ID = 0x7fffffff;

/** At low rates, batches shrink so that records leave at least this many times a second (smooth, not bursty). */
const MIN_SENDS_PER_SECOND = 50;
/** Time lost to a hiccup (GC, a slow ack) that the rate limiter makes up for by sending faster. */
const CATCH_UP_SECONDS = 0.5;

export type ProduceTarget =
  | { kind: 'kafka'; brokers: string[]; partitions?: number; compression: 'lz4' | 'gzip' | 'none' }
  | { kind: 'redis'; url: string; maxlen?: number };

export interface ProduceOptions {
  preset: Preset;
  /** Records to send; Infinity: until `signal` aborts. */
  count: number;
  /** Records per second; 0: as fast as the target acknowledges. */
  rate: number;
  seed: number;
  /** Event time of the first record (ms); later records are 10 ms apart. */
  startTime?: number;
  format: 'json' | 'avro';
  /** Kafka topic or Redis stream key. */
  topic: string;
  /** Fraction (0-1) of records replaced by poison: not JSON, or an unregistered Avro schema id. */
  poison: number;
  /** Records per request at most. */
  batchSize: number;
  /** At most inFlight × batchSize records await acknowledgement (the memory bound). */
  inFlight: number;
  target: ProduceTarget;
  /** Confluent-compatible schema registry, for `format: 'avro'`. */
  registryUrl?: string;
  progress?: Pick<ProgressOptions, 'stream' | 'tty' | 'logger' | 'logIntervalMs'>;
  /** Stops producing; what is in flight is still awaited. */
  signal?: AbortSignal;
  logger?: Logger;
}

export interface ProduceResult {
  /** Records the target acknowledged (poison included). */
  records: number;
  poison: number;
  seconds: number;
  perSecond: number;
  /** Stopped by the signal before `count`. */
  interrupted: boolean;
}

/**
 * Rate limiter: tokens accrue at `rate` per second, up to `burst`. It starts empty, so n
 * records never take less than n/rate seconds; a hiccup shorter than burst/rate is made up
 * for, and a longer stall never turns into a burst larger than `burst`.
 */
export class TokenBucket {
  private tokens = 0;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.last = clock();
  }

  /** Resolves when `n` (at most `burst`) tokens are taken; rejects with an AbortError if aborted. */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (n > this.burst) throw new FlotillaError(`cannot take ${n} tokens from a bucket of ${this.burst}`);
    for (;;) {
      const now = this.clock();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
      if (this.tokens >= n) {
        this.tokens -= n;
        return;
      }
      await sleep(Math.ceil(((n - this.tokens) / this.rate) * 1000), undefined, { signal });
    }
  }
}

/** Turns values into bytes, and good bytes into a poison record of the same format. */
interface Encoder {
  encode(value: object): Buffer;
  poison(good: Buffer): Buffer;
}

const jsonEncoder: Encoder = {
  encode: (value) => Buffer.from(JSON.stringify(value)),
  // Any strict prefix of a JSON object is invalid JSON.
  poison: (good) => good.subarray(0, good.length >> 1),
};

async function avroEncoder(options: ProduceOptions): Promise<Encoder> {
  if (!options.registryUrl) {
    throw new FlotillaError(
      '--format avro needs a schema registry: pass --registry URL or set SCHEMA_REGISTRY_URL',
    );
  }
  const codec = new AvroCodec(options.registryUrl);
  const id = await codec.register(`${options.topic}-value`, presets[options.preset].schemaFile);
  const writer = await codec.writer(id);
  return {
    encode: (value) => writer.encode(value),
    poison: (good) => {
      const bad = Buffer.from(good);
      bad.writeInt32BE(UNREGISTERED_SCHEMA_ID, 1);
      return bad;
    },
  };
}

interface OutRecord {
  key: string;
  value: Buffer;
}

/** Where records go; `send` resolves when the target has acknowledged the whole batch. */
interface Target {
  readonly name: string;
  send(records: OutRecord[]): Promise<void>;
  close(): Promise<void>;
}

async function kafkaTarget(
  target: Extract<ProduceTarget, { kind: 'kafka' }>,
  topic: string,
  logger: Logger,
): Promise<Target> {
  const kafka = createKafka({ brokers: target.brokers, clientId: 'flotilla-produce', logger });
  const producer = new BatchProducer(
    kafka,
    z.object(producerShape).parse({ compression: target.compression }),
  );
  await producer.ensureTopic(topic, { numPartitions: target.partitions });
  if (target.partitions !== undefined) await warnOnPartitionCount(kafka, topic, target.partitions, logger);
  return {
    name: `kafka:${topic}`,
    send: (records) => producer.send(topic, records),
    close: () => producer.close(),
  };
}

/** An existing topic keeps its partitions; say so when they differ from the ones asked for. */
async function warnOnPartitionCount(
  kafka: ReturnType<typeof createKafka>,
  topic: string,
  wanted: number,
  logger: Logger,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    const actual = topics[0]?.partitions.length;
    if (actual !== wanted) {
      logger.warn(
        { topic, partitions: actual, wanted },
        'topic exists with another partition count; left as is',
      );
    }
  } finally {
    await admin.disconnect();
  }
}

/** XADD with fields `key` and `value`, one pipeline (one round trip) per batch. */
async function redisTarget(
  target: Extract<ProduceTarget, { kind: 'redis' }>,
  stream: string,
): Promise<Target> {
  const redis = new Redis(target.url, { lazyConnect: true, maxRetriesPerRequest: 3 });
  // Connection errors also come as events (ioredis reconnects); a failed XADD reports them.
  let lastError: Error | undefined;
  redis.on('error', (err: Error) => {
    lastError = err;
  });
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    const reason = (lastError ?? (err as Error)).message;
    throw new FlotillaError(`cannot connect to Redis at ${target.url}: ${reason}`, {
      cause: lastError ?? err,
    });
  }
  const trim = target.maxlen === undefined ? [] : ['MAXLEN', '~', target.maxlen];
  return {
    name: `redis:${stream}`,
    async send(records) {
      const pipeline = redis.pipeline();
      for (const r of records) pipeline.xadd(stream, ...trim, '*', 'key', r.key, 'value', r.value);
      const replies = (await pipeline.exec()) ?? [];
      const failed = replies.find(([err]) => err);
      if (failed?.[0]) {
        throw new FlotillaError(`XADD to Redis stream '${stream}' failed: ${failed[0].message}`, {
          cause: failed[0],
        });
      }
    },
    close: async () => {
      await redis.quit();
    },
  };
}

/** Batch size: at low rates small enough for MIN_SENDS_PER_SECOND sends a second. */
export function batchSizeFor(rate: number, maxBatch: number): number {
  return rate > 0 ? Math.max(1, Math.min(maxBatch, Math.ceil(rate / MIN_SENDS_PER_SECOND))) : maxBatch;
}

/**
 * Sends `count` synthetic records of a preset to Kafka or a Redis stream at `rate`. Batches
 * are pipelined: at most inFlight × batchSize records await acknowledgement; the first
 * failed batch stops the run with its error. The same seed gives the same records, and the
 * same records are poison.
 */
export async function produceRecords(options: ProduceOptions): Promise<ProduceResult> {
  const logger = options.logger ?? createLogger({ component: 'produce' });
  const encoder = options.format === 'avro' ? await avroEncoder(options) : jsonEncoder;
  const target =
    options.target.kind === 'kafka'
      ? await kafkaTarget(options.target, options.topic, logger)
      : await redisTarget(options.target, options.topic);

  const make = syntheticRecords(options.preset, options.seed, options.startTime);
  // Its own stream of numbers: which records are poison does not change the good ones.
  const poisonRandom = seededRandom(options.seed ^ 0x5eedbad);
  const batchSize = batchSizeFor(options.rate, options.batchSize);
  const bucket =
    options.rate > 0
      ? new TokenBucket(options.rate, Math.max(batchSize, Math.ceil(options.rate * CATCH_UP_SECONDS)))
      : undefined;
  // Bounded in records, not requests: at low rates batches are small, and more of them may be
  // in flight so that the acknowledgement latency does not cap the rate.
  const maxInflightRecords = options.inFlight * options.batchSize;
  const progress = new Progress({
    label: `${options.preset} → ${target.name}`,
    total: options.count,
    ...options.progress,
  });

  let made = 0;
  let acked = 0;
  let poison = 0;
  let failure: unknown;
  /** Sends awaiting acknowledgement, oldest first, with their record counts. */
  const pending: { done: Promise<void>; records: number }[] = [];
  let inflight = 0;
  let summary: ProgressSummary;
  try {
    while (made < options.count && !options.signal?.aborted && failure === undefined) {
      const n = Math.min(batchSize, options.count - made);
      if (bucket) {
        const taken = await bucket.take(n, options.signal).then(
          () => true,
          () => false, // aborted while waiting
        );
        if (!taken) break;
      }
      const batch: OutRecord[] = new Array(n);
      for (let j = 0; j < n; j++) {
        const { key, value } = make(made + j);
        const bytes = encoder.encode(value);
        const bad = options.poison > 0 && poisonRandom() < options.poison;
        if (bad) poison++;
        batch[j] = { key, value: bad ? encoder.poison(bytes) : bytes };
      }
      made += n;
      inflight += n;
      // Handled at once (no unhandled rejection); the loop checks `failure`.
      const done = target.send(batch).then(
        () => {
          acked += n;
          progress.update(acked);
        },
        (err: unknown) => {
          failure ??= err;
        },
      );
      pending.push({ done, records: n });
      while (inflight + batchSize > maxInflightRecords) {
        const oldest = pending.shift();
        if (!oldest) break;
        await oldest.done;
        inflight -= oldest.records;
      }
    }
    await Promise.all(pending.map((p) => p.done));
  } finally {
    summary = progress.finish();
    await target.close();
  }
  if (failure !== undefined) {
    const reason = failure instanceof Error ? failure.message : String(failure);
    throw new FlotillaError(`producing to ${target.name} failed after ${acked} records: ${reason}`, {
      cause: failure,
    });
  }
  if (poison > 0) logger.info({ poison, records: acked }, `${poison} of the records are poison`);
  return {
    records: acked,
    poison,
    seconds: summary.seconds,
    perSecond: summary.perSecond,
    interrupted: acked < options.count,
  };
}

const number = () =>
  z.coerce.number<string>({
    error: (issue) =>
      issue.code === 'invalid_type'
        ? `expected ${issue.expected === 'int' ? 'an integer' : 'a number'}`
        : undefined,
  });
const positiveInt = number().int().positive();

/** `flotilla produce` options as parseArgs gives them (strings); defaults are the documented ones. */
const argsSchema = z.object({
  preset: z.enum(['metrics', 'events']).default('metrics'),
  count: positiveInt.optional(),
  rate: number().min(0).default(1000),
  seed: number().int().default(1),
  start: z
    .string()
    .refine((s) => s === 'now' || !Number.isNaN(Date.parse(s)), "expected 'now' or an ISO-8601 time")
    .optional(),
  format: z.enum(['json', 'avro']).default('json'),
  topic: z.string().min(1).optional(),
  to: z.enum(['kafka', 'redis']).optional(),
  brokers: z.string().min(1).optional(),
  partitions: positiveInt.optional(),
  compression: z.enum(['lz4', 'gzip', 'none']).default('lz4'),
  redis: z.string().min(1).optional(),
  maxlen: positiveInt.optional(),
  registry: z.string().min(1).optional(),
  poison: number().min(0).max(1).default(0),
  batch: positiveInt.max(100_000).default(1000),
  'in-flight': positiveInt.max(64).default(4),
});

/** Turns CLI option values into ProduceOptions; a bad value throws naming the option. */
export function produceOptionsFromArgs(
  values: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): ProduceOptions {
  const parsed = argsSchema.safeParse(values);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const name = String(i.path[0]);
      return `--${name}: ${i.message} (got '${String(values[name])}')`;
    });
    throw new FlotillaError(`produce: ${problems.join('; ')}`);
  }
  const a = parsed.data;
  const kind = a.to ?? (a.redis ? 'redis' : 'kafka');
  if (kind === 'kafka' && (a.redis || a.maxlen)) {
    throw new FlotillaError('produce: --redis and --maxlen are for --to redis');
  }
  let target: ProduceTarget;
  if (kind === 'redis') {
    target = { kind, url: a.redis ?? env.REDIS_URL ?? 'redis://127.0.0.1:6379' };
    if (a.maxlen !== undefined) target.maxlen = a.maxlen;
  } else {
    const brokers = a.brokers ?? env.KAFKA_BROKERS;
    if (!brokers) throw new FlotillaError('produce: no Kafka brokers: pass --brokers or set KAFKA_BROKERS');
    target = { kind, brokers: parseBrokers(brokers), compression: a.compression };
    if (a.partitions !== undefined) target.partitions = a.partitions;
  }
  const options: ProduceOptions = {
    preset: a.preset,
    count: a.count ?? Number.POSITIVE_INFINITY,
    rate: a.rate,
    seed: a.seed,
    format: a.format,
    topic: a.topic ?? presets[a.preset].topic,
    poison: a.poison,
    batchSize: a.batch,
    inFlight: a['in-flight'],
    target,
  };
  if (a.start !== undefined) options.startTime = a.start === 'now' ? Date.now() : Date.parse(a.start);
  const registryUrl = a.registry ?? env.SCHEMA_REGISTRY_URL;
  if (registryUrl) options.registryUrl = registryUrl;
  return options;
}

const usage = `Usage: flotilla produce [options]

Sends synthetic records of an example schema to Kafka (default) or a Redis stream, at a
target rate. The same --seed gives the same records. Progress on stderr: a bar on a
terminal, a log line every 5 s otherwise, and a summary line at the end. Ctrl-C stops
after the batches in flight are acknowledged.

Records:
  --preset metrics|events   system metrics or listening events (default metrics)
  --count N                 records to send (default: until Ctrl-C)
  --rate N                  records per second; 0 = as fast as possible (default 1000)
  --seed N                  seed of the synthetic stream (default 1)
  --start now|TIME          event time of the first record (default 2026-01-01T00:00:00Z)
  --format json|avro        value encoding (default json); avro registers
                            schemas/<metric|listening-event>.avsc as <topic>-value and
                            writes the Confluent wire format
  --poison RATE             fraction 0-1 of records made bad on purpose (truncated JSON,
                            or an unregistered Avro schema id), chosen by the seed
Target:
  --topic NAME              Kafka topic or Redis stream (default: metrics / events)
  --to kafka|redis          (default kafka; redis when --redis is given)
  --brokers LIST            Kafka bootstrap brokers (default $KAFKA_BROKERS)
  --partitions N            create a missing topic with N partitions (default: broker's)
  --compression lz4|gzip|none   (default lz4)
  --redis URL               Redis URL (default $REDIS_URL, else redis://127.0.0.1:6379)
  --maxlen N                trim the stream to about N entries (XADD MAXLEN ~)
  --registry URL            schema registry for avro (default $SCHEMA_REGISTRY_URL)
Throughput:
  --batch N                 records per request at most (default 1000)
  --in-flight N             at most N × --batch records await acknowledgement (default 4)

Examples:
  flotilla produce --count 100000 --rate 0 --partitions 3
  flotilla produce --preset events --format avro --poison 0.01 --rate 500
  flotilla produce --to redis --topic metrics-lane --maxlen 100000`;

const optionNames = [
  'preset',
  'count',
  'rate',
  'seed',
  'start',
  'format',
  'topic',
  'to',
  'brokers',
  'partitions',
  'compression',
  'redis',
  'maxlen',
  'registry',
  'poison',
  'batch',
  'in-flight',
] as const;

export const produce: Command = {
  summary: 'send synthetic metrics or events to Kafka or a Redis stream at a target rate',
  usage,
  options: Object.fromEntries(optionNames.map((name) => [name, { type: 'string' }])),
  async run({ values }) {
    const logger = createLogger({ component: 'produce' });
    const options = produceOptionsFromArgs(values);
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      await produceRecords({
        ...options,
        signal: stop.signal,
        logger,
        // Without a terminal, progress lines are log lines (JSON unless FLOTILLA_LOG_FORMAT says otherwise).
        progress: process.stderr.isTTY ? {} : { logger },
      });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    return 0;
  },
};
