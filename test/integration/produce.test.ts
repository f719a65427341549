import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { type Admin, type Consumer, Kafka, logLevel } from 'kafkajs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  batchSizeFor,
  type ProduceOptions,
  produce,
  produceOptionsFromArgs,
  produceRecords,
  TokenBucket,
  UNREGISTERED_SCHEMA_ID,
} from '../../src/cli/produce.js';
import { RecordError } from '../../src/core/errors.js';
import { AvroCodec } from '../../src/kafka/avro.js';
import { registerLz4Codec } from '../../src/kafka/lz4-codec.js';
import { syntheticRecords } from '../../src/sources/synthetic.js';
import { connectOrExplain, serviceUrl } from '../support/services.js';
import { waitFor } from '../support/wait.js';

const silent = pino({ level: 'silent' });
const run = `${process.pid}-${Date.now()}`;

/** The first `n` values of a preset and seed, as JSON text. */
function expectedJson(preset: 'metrics' | 'events', seed: number, n: number): string[] {
  const make = syntheticRecords(preset, seed);
  return Array.from({ length: n }, (_, i) => JSON.stringify(make(i).value));
}

/** Collects what progress writes; `summary` is the final line. */
function progressSink() {
  const lines: string[] = [];
  return { lines, options: { stream: { write: (s: string) => lines.push(s) }, tty: false } };
}

interface Received {
  partition: number;
  key: string;
  value: Buffer;
}

describe('flotilla produce', () => {
  let kafka: Kafka;
  let admin: Admin;
  let redis: Redis;
  const consumers: Consumer[] = [];
  const redisKeys: string[] = [];

  /** Options as the CLI would parse them, for a fresh topic, quiet. */
  const options = (args: Record<string, string>): ProduceOptions => ({
    ...produceOptionsFromArgs({ brokers: serviceUrl('KAFKA_BROKERS'), ...args }),
    logger: silent,
    progress: progressSink().options,
  });

  /** Reads a topic from the start until `n` records arrived; then checks the topic holds exactly `n`. */
  async function readTopic(topic: string, n: number): Promise<Received[]> {
    const consumer = kafka.consumer({ groupId: `it-produce-reader-${topic}`, sessionTimeout: 10_000 });
    consumers.push(consumer);
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const received: Received[] = [];
    await consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          received.push({
            partition: batch.partition,
            key: m.key?.toString() ?? '',
            value: m.value ?? Buffer.alloc(0),
          });
        }
      },
    });
    await waitFor(`${n} records from ${topic}`, () => received.length >= n);
    await consumer.disconnect();
    const offsets = await admin.fetchTopicOffsets(topic);
    expect(offsets.reduce((sum, p) => sum + Number(p.high), 0)).toBe(n);
    expect(received.length).toBe(n);
    return received;
  }

  beforeAll(async () => {
    registerLz4Codec();
    kafka = new Kafka({
      clientId: 'flotilla-it-produce',
      brokers: serviceUrl('KAFKA_BROKERS').split(','),
      logLevel: logLevel.NOTHING,
    });
    admin = await connectOrExplain('KAFKA_BROKERS', async () => {
      const a = kafka.admin();
      await a.connect();
      return a;
    });
    redis = await connectOrExplain('REDIS_URL', async () => {
      const client = new Redis(serviceUrl('REDIS_URL'), { lazyConnect: true, maxRetriesPerRequest: 1 });
      await client.connect();
      return client;
    });
  });

  afterAll(async () => {
    await Promise.all(consumers.map((c) => c.disconnect()));
    await admin?.disconnect();
    if (redisKeys.length > 0) await redis?.del(...redisKeys);
    redis?.disconnect();
  });

  it('sends exactly N keyed JSON metrics to a new 3-partition topic; the same seed sends the same values', async () => {
    const n = 5000;
    const topics = [`it-produce-json-a-${run}`, `it-produce-json-b-${run}`];
    const sink = progressSink();
    const first = await produceRecords({
      ...options({ topic: topics[0] ?? '', count: String(n), rate: '0', partitions: '3', seed: '7' }),
      progress: sink.options,
    });
    expect(first).toMatchObject({ records: n, poison: 0, interrupted: false });
    expect(sink.lines.at(-1)).toMatch(
      new RegExp(
        `^metrics → kafka:${topics[0]}: 5,000 records in \\d+\\.\\d\\d s \\([\\d,]+ records/s\\)\\n$`,
      ),
    );
    const second = await produceRecords(
      options({ topic: topics[1] ?? '', count: String(n), rate: '0', partitions: '3', seed: '7' }),
    );
    expect(second.records).toBe(n);

    const [meta] = (await admin.fetchTopicMetadata({ topics: [topics[0] ?? ''] })).topics;
    expect(meta?.partitions).toHaveLength(3);

    const expected = expectedJson('metrics', 7, n);
    for (const topic of topics) {
      const received = await readTopic(topic, n);
      const values = received.map((r) => r.value.toString());
      expect(values.sort()).toEqual([...expected].sort());
      // The key is the record's tenant/host, so one series stays in one partition.
      for (const r of received) {
        const value = JSON.parse(r.value.toString()) as { tenant: string; host: string };
        expect(r.key).toBe(`${value.tenant}/${value.host}`);
      }
      expect(new Set(received.map((r) => r.partition))).toEqual(new Set([0, 1, 2]));
    }
    // A different seed gives different records.
    expect(expectedJson('metrics', 8, 10)).not.toEqual(expected.slice(0, 10));
  });

  it('replaces a seeded fraction of records by poison that is not JSON', async () => {
    const n = 2000;
    const topic = `it-produce-poison-${run}`;
    const args = { topic, count: String(n), rate: '0', seed: '3', poison: '0.1', preset: 'events' };
    const result = await produceRecords(options(args));
    expect(result.records).toBe(n);
    // 10% of 2000, give or take the randomness of a fixed seed.
    expect(result.poison).toBeGreaterThan(150);
    expect(result.poison).toBeLessThan(250);

    const good = new Set(expectedJson('events', 3, n));
    let bad = 0;
    for (const { value } of await readTopic(topic, n)) {
      const text = value.toString();
      try {
        JSON.parse(text);
      } catch {
        bad++;
        continue;
      }
      expect(good.has(text)).toBe(true);
    }
    expect(bad).toBe(result.poison);

    // The seed decides which records are poison: a second run picks as many.
    const again = await produceRecords(options({ ...args, topic: `${topic}-again` }));
    expect(again.poison).toBe(result.poison);
  });

  it('writes Avro in the Confluent wire format that AvroCodec decodes; poison has an unknown schema id', async () => {
    const n = 500;
    const topic = `it-produce-avro-${run}`;
    const registryUrl = serviceUrl('SCHEMA_REGISTRY_URL');
    const result = await produceRecords(
      options({
        topic,
        count: String(n),
        rate: '0',
        seed: '11',
        preset: 'events',
        format: 'avro',
        poison: '0.05',
        registry: registryUrl,
      }),
    );
    expect(result.records).toBe(n);
    expect(result.poison).toBeGreaterThan(0);

    const codec = new AvroCodec(registryUrl);
    const expected = new Set(expectedJson('events', 11, n));
    const received = await readTopic(topic, n);
    let poison = 0;
    for (const { value } of received) {
      expect(value[0]).toBe(0); // magic byte
      if (value.readInt32BE(1) === UNREGISTERED_SCHEMA_ID) {
        poison++;
        await expect(codec.decode(value)).rejects.toThrow(RecordError);
        continue;
      }
      const decoded = (await codec.decode(value)) as Record<string, unknown>;
      expect(expected.has(JSON.stringify({ ...decoded }))).toBe(true);
    }
    expect(poison).toBe(result.poison);
    // The schema is registered under <topic>-value.
    const subject = await fetch(`${registryUrl}/subjects/${topic}-value/versions/latest`);
    expect(subject.status).toBe(200);
    expect(((await subject.json()) as { id: number }).id).toBe(received[0]?.value.readInt32BE(1));
  });

  it('holds the target rate', async () => {
    for (const [rate, count] of [
      [200, 300],
      [5000, 10_000],
    ] as const) {
      const started = performance.now();
      const result = await produceRecords(
        options({ topic: `it-produce-rate-${rate}-${run}`, count: String(count), rate: String(rate) }),
      );
      const seconds = (performance.now() - started) / 1000;
      expect(result.records).toBe(count);
      // 1.5 s and 2 s: never faster than the rate, and slower only by the last batch's ack.
      expect(result.seconds).toBeGreaterThan((count / rate) * 0.99);
      expect(result.seconds).toBeLessThan((count / rate) * 1.08);
      expect(seconds).toBeGreaterThanOrEqual(result.seconds);
    }
  });

  it('stops at the signal, after the batches in flight are acknowledged', async () => {
    const stop = new AbortController();
    // Includes connecting and creating the topic, so the count sent is only roughly known.
    setTimeout(() => stop.abort(), 1500);
    const result = await produceRecords({
      ...options({ topic: `it-produce-abort-${run}`, count: '1000000', rate: '1000' }),
      signal: stop.signal,
    });
    expect(result.interrupted).toBe(true);
    expect(result.records).toBeGreaterThan(0);
    expect(result.records).toBeLessThanOrEqual(1500);
    const offsets = await admin.fetchTopicOffsets(`it-produce-abort-${run}`);
    expect(offsets.reduce((sum, p) => sum + Number(p.high), 0)).toBe(result.records);
  });

  it('XADDs to a Redis stream through the CLI command, with fields key and value', async () => {
    const stream = `it:produce:${run}:stream`;
    redisKeys.push(stream);
    const code = await produce.run({
      positionals: [],
      values: {
        to: 'redis',
        redis: serviceUrl('REDIS_URL'),
        topic: stream,
        count: '3000',
        rate: '0',
        seed: '5',
      },
    });
    expect(code).toBe(0);
    expect(await redis.xlen(stream)).toBe(3000);
    const entries = await redis.xrange(stream, '-', '+', 'COUNT', 1);
    const first = syntheticRecords('metrics', 5)(0);
    expect(entries[0]?.[1]).toEqual(['key', first.key, 'value', JSON.stringify(first.value)]);
  });

  it('trims the stream with MAXLEN ~', async () => {
    const stream = `it:produce:${run}:capped`;
    redisKeys.push(stream);
    const result = await produceRecords(
      options({
        to: 'redis',
        redis: serviceUrl('REDIS_URL'),
        topic: stream,
        count: '5000',
        rate: '0',
        maxlen: '1000',
      }),
    );
    expect(result.records).toBe(5000);
    const length = await redis.xlen(stream);
    // Approximate trimming keeps whole stream nodes: at least 1000, far fewer than 5000.
    expect(length).toBeGreaterThanOrEqual(1000);
    expect(length).toBeLessThan(1500);
  });

  it('fails with the Redis error when the key is not a stream, and when Redis does not answer', async () => {
    const key = `it:produce:${run}:not-a-stream`;
    redisKeys.push(key);
    await redis.set(key, 'x');
    await expect(
      produceRecords(
        options({ to: 'redis', redis: serviceUrl('REDIS_URL'), topic: key, count: '10', rate: '0' }),
      ),
    ).rejects.toThrow(new RegExp(`producing to redis:${key} failed after 0 records: XADD .* WRONGTYPE`));
    await expect(
      produceRecords(options({ to: 'redis', redis: 'redis://127.0.0.1:1', count: '10' })),
    ).rejects.toThrow('cannot connect to Redis at redis://127.0.0.1:1: connect ECONNREFUSED');
  });
});

describe('produce options and pacing', () => {
  it('parses CLI values with defaults, and names each bad one', () => {
    const o = produceOptionsFromArgs({ preset: 'events', count: '10' }, { KAFKA_BROKERS: 'a:9092,b:9092' });
    expect(o).toMatchObject({
      preset: 'events',
      topic: 'events',
      count: 10,
      rate: 1000,
      seed: 1,
      format: 'json',
      poison: 0,
      target: { kind: 'kafka', brokers: ['a:9092', 'b:9092'], compression: 'lz4' },
    });
    expect(produceOptionsFromArgs({ redis: 'redis://r:6379' }, {}).target).toEqual({
      kind: 'redis',
      url: 'redis://r:6379',
    });
    expect(produceOptionsFromArgs({}, { KAFKA_BROKERS: 'k:1' }).count).toBe(Number.POSITIVE_INFINITY);
    expect(() => produceOptionsFromArgs({ rate: 'fast', poison: '2', seed: '1.5' }, {})).toThrow(
      "produce: --rate: expected a number (got 'fast'); --seed: expected an integer (got '1.5'); --poison: Too big",
    );
    expect(() => produceOptionsFromArgs({}, {})).toThrow(
      'no Kafka brokers: pass --brokers or set KAFKA_BROKERS',
    );
    expect(() => produceOptionsFromArgs({ start: 'yesterday' }, {})).toThrow(
      "--start: expected 'now' or an ISO-8601 time",
    );
  });

  it('sizes batches so low rates send at least 50 times a second', () => {
    expect(batchSizeFor(0, 1000)).toBe(1000);
    expect(batchSizeFor(10, 1000)).toBe(1);
    expect(batchSizeFor(1000, 1000)).toBe(20);
    expect(batchSizeFor(1_000_000, 1000)).toBe(1000);
  });

  it('token bucket: starts empty, refills at the rate, never bursts beyond its size', async () => {
    const bucket = new TokenBucket(1000, 10);
    const timed = async (work: () => Promise<void>) => {
      const t = performance.now();
      await work();
      return performance.now() - t;
    };
    // 100 tokens at 1000/s from an empty bucket: 100 ms.
    const paced = await timed(async () => {
      for (let i = 0; i < 10; i++) await bucket.take(10);
    });
    expect(paced).toBeGreaterThanOrEqual(95);
    expect(paced).toBeLessThan(160);
    await sleep(200); // a stall accrues one bucket, not 200 tokens
    expect(await timed(() => bucket.take(10))).toBeLessThan(5);
    expect(await timed(() => bucket.take(10))).toBeGreaterThanOrEqual(8);
    await expect(bucket.take(11)).rejects.toThrow('cannot take 11 tokens from a bucket of 10');
  });
});
