import type { DeadLetterWriter } from '../core/component.js';
import type { DeadLetter } from '../core/record.js';
import type { BatchProducer } from '../kafka/producer.js';
import { type EmbeddedLog, embeddedLog } from '../sources/embedded-log.js';

/** The headers every dead letter carries, whatever the transport. */
export function deadLetterHeaders(letter: DeadLetter, now = Date.now()): Record<string, string> {
  const { source } = letter.record;
  return {
    ...letter.record.headers,
    'flotilla.error': letter.error,
    'flotilla.reason': letter.reason,
    'flotilla.step': letter.step,
    'flotilla.source.topic': source.topic,
    'flotilla.source.partition': String(source.partition),
    'flotilla.source.offset': source.offset,
    'flotilla.time': new Date(now).toISOString(),
  };
}

/** The original bytes when the record was never decoded, else its value as JSON. */
export function deadLetterValue(letter: DeadLetter): Buffer {
  const v = letter.record.value;
  return Buffer.isBuffer(v) ? v : Buffer.from(JSON.stringify(v) ?? 'null');
}

/** Dead letters to a topic of the embedded log (embedded mode and `flotilla test`). */
export class EmbeddedDeadLetters implements DeadLetterWriter {
  constructor(
    readonly topic: string,
    private readonly log: EmbeddedLog = embeddedLog,
  ) {
    log.ensureTopic(topic, 1);
  }

  async write(letters: DeadLetter[]): Promise<void> {
    for (const l of letters) {
      this.log.append(
        this.topic,
        { key: l.record.key, value: deadLetterValue(l), headers: deadLetterHeaders(l) },
        0,
      );
    }
  }

  async close(): Promise<void> {}
}

/** Dead letters to a Kafka topic; the partition waits until the broker acknowledges them. */
export class KafkaDeadLetters implements DeadLetterWriter {
  constructor(
    readonly topic: string,
    private readonly producer: BatchProducer,
  ) {}

  async write(letters: DeadLetter[]): Promise<void> {
    await this.producer.ensureTopic(this.topic);
    await this.producer.send(
      this.topic,
      letters.map((l) => ({ key: l.record.key, value: deadLetterValue(l), headers: deadLetterHeaders(l) })),
    );
  }

  close(): Promise<void> {
    return this.producer.close();
  }
}
