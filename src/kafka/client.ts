import { Kafka, logLevel as KafkaLogLevel, type LogEntry } from 'kafkajs';
import { z } from 'zod';
import type { Logger } from '../observability/logger.js';
import { registerLz4Codec } from './lz4-codec.js';

/** Brokers from a comma-separated list (as in KAFKA_BROKERS). */
export function parseBrokers(list: string): string[] {
  return list
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
}

// KafkaJS logs a retried protocol error (e.g. a leader moving) at ERROR; it recovers on its
// own, so those are warnings here. Failures that matter surface as thrown errors.
const levelNames: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [KafkaLogLevel.ERROR]: 'warn',
  [KafkaLogLevel.WARN]: 'warn',
  [KafkaLogLevel.INFO]: 'info',
  [KafkaLogLevel.DEBUG]: 'debug',
};

/**
 * What KafkaJS logs as a problem but is routine here, logged at debug:
 * - right after a transaction commits, the coordinator answers the next one with
 *   CONCURRENT_TRANSACTIONS until its markers are written, and KafkaJS retries at once (every
 *   changelog checkpoint sees it);
 * - the changelog's transactional producers have bounded retries: a send that exhausts them
 *   aborts its transaction (nothing of it is read back), so EoS does not depend on them.
 */
const routine =
  /another concurrent operation on the same transaction|Limiting retries for the idempotent producer/;

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
        const routineRetry = routine.test(String(rest.error ?? message));
        log[routineRetry ? 'debug' : (levelNames[level] ?? 'info')](rest, message);
      },
    retry: { initialRetryTime: 100, retries: 8 },
  });
}

/** Connection options every Kafka component shares. */
export const kafkaConnectionShape = {
  brokers: z
    .string()
    .min(1)
    .optional()
    .describe('Comma-separated bootstrap brokers (default: $KAFKA_BROKERS, else 127.0.0.1:9092).'),
  client_id: z.string().min(1).optional().describe('Kafka client id (default: flotilla-<topology>).'),
};

/** A client for a component's connection options. */
export function kafkaFor(
  config: { brokers?: string | undefined; client_id?: string | undefined },
  ctx: { topology: string; logger: Logger },
): Kafka {
  return createKafka({
    brokers: parseBrokers(config.brokers ?? process.env.KAFKA_BROKERS ?? '127.0.0.1:9092'),
    clientId: config.client_id ?? `flotilla-${ctx.topology}`,
    logger: ctx.logger,
  });
}
