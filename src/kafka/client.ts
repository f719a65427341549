import { Kafka, logLevel as KafkaLogLevel, type LogEntry } from 'kafkajs';
import type { Logger } from '../observability/logger.js';
import { registerLz4Codec } from './lz4-codec.js';

/** Brokers from a comma-separated list (as in KAFKA_BROKERS). */
export function parseBrokers(list: string): string[] {
  return list
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
}

const levelNames: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [KafkaLogLevel.ERROR]: 'error',
  [KafkaLogLevel.WARN]: 'warn',
  [KafkaLogLevel.INFO]: 'info',
  [KafkaLogLevel.DEBUG]: 'debug',
};

/**
 * A KafkaJS client that logs through pino and can read and write LZ4 batches. KafkaJS's
 * own INFO logs (joins, commits) are chatty: they go to debug; its warnings and errors stay.
 */
export function createKafka(options: { brokers: string[]; clientId: string; logger: Logger }): Kafka {
  registerLz4Codec();
  const log = options.logger.child({ component: 'kafkajs' });
  return new Kafka({
    clientId: options.clientId,
    brokers: options.brokers,
    logLevel: KafkaLogLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        log[levelNames[level] ?? 'info'](rest, message);
      },
    retry: { initialRetryTime: 100, retries: 8 },
  });
}
