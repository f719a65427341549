import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { FlotillaRecord } from '../../src/core/record.js';
import { kafkaSink } from '../../src/sinks/kafka.js';
import { createTopic, readTopic, unique, useKafka } from '../support/kafka.js';
import { serviceUrl } from '../support/services.js';

const ctx = { topology: 'it-kafka-sink', group: 'g', baseDir: '.', logger: pino({ level: 'silent' }) };
/** A window result of last January: its own time is long past any 7-day retention. */
const JANUARY = Date.UTC(2026, 0, 1);

function result(n: number): FlotillaRecord {
  return {
    id: `w/${n}`,
    key: null,
    value: { n },
    timestamp: JANUARY + n,
    headers: {},
    source: { topic: 'in', partition: 0, offset: String(n) },
  };
}

describe('kafka sink message timestamps', () => {
  const k = useKafka();

  async function written(timestamp: 'now' | 'record' | undefined) {
    const topic = unique('kafka-sink-ts');
    await createTopic(k.admin, topic, 1);
    const config = kafkaSink.schema.parse({
      kind: 'kafka',
      topic,
      brokers: serviceUrl('KAFKA_BROKERS'),
      ...(timestamp ? { timestamp } : {}),
    });
    const sink = await kafkaSink.create(config, ctx);
    try {
      await sink.write([result(1), result(2)], { reject: (r) => expect.fail(`${r.id} refused`) });
    } finally {
      await sink.close();
    }
    return readTopic(k.kafka, k.admin, topic);
  }

  it('stamps the time of writing by default, so a topic retention cannot delete old results at once', async () => {
    const before = Date.now();
    const messages = await written(undefined);
    expect(messages.map((m) => m.headers['flotilla.id'])).toEqual(['w/1', 'w/2']);
    for (const m of messages) {
      expect(m.timestamp).toBeGreaterThanOrEqual(before - 1000);
      expect(m.timestamp).toBeLessThanOrEqual(Date.now() + 1000);
    }
    // The record's own time travels in a header (replay diff selects by it).
    expect(messages.map((m) => Number(m.headers['flotilla.timestamp']))).toEqual([JANUARY + 1, JANUARY + 2]);
  });

  it("stamps the record's own time with timestamp: record", async () => {
    const messages = await written('record');
    expect(messages.map((m) => m.timestamp)).toEqual([JANUARY + 1, JANUARY + 2]);
    expect(messages.every((m) => m.headers['flotilla.timestamp'] === undefined)).toBe(true);
  });
});
