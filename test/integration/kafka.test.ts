import { type Admin, CompressionTypes, type Consumer, Kafka, logLevel } from 'kafkajs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { lz4Codec, registerLz4Codec } from '../../src/kafka/lz4-codec.js';
import { connectAdmin } from '../support/kafka.js';
import { serviceUrl } from '../support/services.js';
import { waitFor } from '../support/wait.js';

describe('Kafka (kafkajs)', () => {
  let kafka: Kafka;
  let admin: Admin;
  const run = `${process.pid}-${Date.now()}`;
  const consumers: Consumer[] = [];

  const newConsumer = (groupId: string) => {
    const c = kafka.consumer({
      groupId,
      sessionTimeout: 10_000,
      heartbeatInterval: 500,
      rebalanceTimeout: 10_000,
    });
    consumers.push(c);
    return c;
  };

  beforeAll(async () => {
    registerLz4Codec();
    kafka = new Kafka({
      clientId: 'flotilla-it',
      brokers: serviceUrl('KAFKA_BROKERS').split(','),
      logLevel: logLevel.NOTHING,
      retry: { retries: 3 },
    });
    admin = await connectAdmin(kafka);
  });

  afterEach(async () => {
    await Promise.all(consumers.splice(0).map((c) => c.disconnect()));
  });

  afterAll(async () => {
    await admin?.disconnect();
  });

  it('creates a topic, produces with LZ4, consumes in a group and commits', async () => {
    const topic = `it-lz4-${run}`;
    expect(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true })).toBe(
      true,
    );
    expect(await admin.listTopics()).toContain(topic);

    const compress = vi.spyOn(lz4Codec, 'compress');
    const decompress = vi.spyOn(lz4Codec, 'decompress');
    const producer = kafka.producer();
    await producer.connect();
    const sent = Array.from({ length: 300 }, (_, i) => ({
      key: `k${i % 17}`,
      value: `v${i}-${'x'.repeat(64)}`,
    }));
    await producer.send({ topic, compression: CompressionTypes.LZ4, messages: sent });
    await producer.disconnect();
    expect(compress).toHaveBeenCalled();

    const groupId = `it-lz4-group-${run}`;
    const consumer = newConsumer(groupId);
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const received: string[] = [];
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, resolveOffset }) => {
        for (const m of batch.messages) {
          received.push(m.value?.toString() ?? '');
          resolveOffset(m.offset);
        }
        const last = batch.messages.at(-1);
        if (last) {
          await consumer.commitOffsets([
            { topic, partition: batch.partition, offset: (BigInt(last.offset) + 1n).toString() },
          ]);
        }
      },
    });
    await waitFor('300 records', () => received.length >= 300);
    expect(decompress).toHaveBeenCalled();
    expect(received.sort()).toEqual(sent.map((m) => m.value).sort());

    await waitFor('commits to cover every record', async () => {
      const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
      return (offsets?.partitions ?? []).reduce((n, p) => n + Number(p.offset), 0) === 300;
    });
  });

  it('rebalances partitions between two members of one group', async () => {
    const topic = `it-rebalance-${run}`;
    const groupId = `it-rebalance-group-${run}`;
    await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true });

    const assigned = new Map<string, number[]>();
    const received = new Map<string, number>();
    const start = async (name: string) => {
      const c = newConsumer(groupId);
      c.on(c.events.GROUP_JOIN, (e) => {
        assigned.set(name, (e.payload.memberAssignment[topic] ?? []).slice().sort());
      });
      await c.connect();
      await c.subscribe({ topic, fromBeginning: true });
      await c.run({
        eachMessage: async () => {
          received.set(name, (received.get(name) ?? 0) + 1);
        },
      });
    };

    await start('a');
    await waitFor('member a to own all 4 partitions', () => assigned.get('a')?.length === 4);
    await start('b');
    await waitFor('the group to rebalance across a and b', () => {
      const a = assigned.get('a') ?? [];
      const b = assigned.get('b') ?? [];
      return a.length > 0 && b.length > 0 && a.length + b.length === 4;
    });
    const a = assigned.get('a') ?? [];
    const b = assigned.get('b') ?? [];
    expect([...a, ...b].sort()).toEqual([0, 1, 2, 3]);

    // Records on every partition now reach exactly one member each.
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: Array.from({ length: 40 }, (_, i) => ({ partition: i % 4, value: String(i) })),
    });
    await producer.disconnect();
    await waitFor(
      '40 records across both members',
      () => (received.get('a') ?? 0) + (received.get('b') ?? 0) >= 40,
    );
    expect(received.get('a')).toBe(a.length * 10);
    expect(received.get('b')).toBe(b.length * 10);
  });

  it('seeks a consumer to the offsets of a timestamp', async () => {
    const topic = `it-seek-${run}`;
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    const t0 = Date.now() - 60_000;
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: Array.from({ length: 10 }, (_, i) => ({ value: `m${i}`, timestamp: String(t0 + i * 1000) })),
    });
    await producer.disconnect();

    const [byTime] = await admin.fetchTopicOffsetsByTimestamp(topic, t0 + 5000);
    expect(byTime).toEqual({ partition: 0, offset: '5' });

    const consumer = newConsumer(`it-seek-group-${run}`);
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: false });
    const received: string[] = [];
    await consumer.run({
      eachMessage: async ({ message }) => {
        received.push(message.value?.toString() ?? '');
      },
    });
    consumer.seek({ topic, partition: 0, offset: byTime?.offset ?? '0' });
    await waitFor('records from the seek point', () => received.length >= 5);
    expect(received.slice(0, 5)).toEqual(['m5', 'm6', 'm7', 'm8', 'm9']);
  });
});
