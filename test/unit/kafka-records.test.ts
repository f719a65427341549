import type { IHeaders, KafkaMessage } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { toRecords } from '../../src/sources/kafka.js';

const message = (offset: number, timestamp: number, headers: IHeaders = {}): KafkaMessage => ({
  key: Buffer.from(`k${offset}`),
  value: Buffer.from('{}'),
  timestamp: String(timestamp),
  attributes: 0,
  offset: String(offset),
  headers,
});

describe('records from Kafka messages', () => {
  it("take the record time a Flotilla Kafka sink put in a header over the message's time of writing", () => {
    const written = Date.UTC(2026, 10, 21);
    const january = Date.UTC(2026, 0, 1);
    const { records, bytes } = toRecords('t', 3, [
      message(7, written),
      message(8, written, { 'flotilla.timestamp': Buffer.from(String(january)), other: Buffer.from('x') }),
    ]);
    expect(records.map((r) => [r.id, r.timestamp])).toEqual([
      ['t/3/7', written],
      ['t/3/8', january],
    ]);
    expect(records[1]?.headers).toEqual({ 'flotilla.timestamp': String(january), other: 'x' });
    expect(bytes).toBe(2 * (2 + 2));
  });
});
