/** Where a record came from: enough to find it again and to build its deterministic id. */
export interface SourceCoordinates {
  topic: string;
  partition: number;
  offset: string;
}

/**
 * A record as it moves through the steps. `value` starts as the raw bytes and becomes a
 * decoded object after `decode`; `id` is the deterministic id sinks upsert on.
 */
export interface FlotillaRecord {
  id: string;
  key: string | null;
  value: unknown;
  /** Source timestamp (ms since epoch). */
  timestamp: number;
  headers: Record<string, string>;
  source: SourceCoordinates;
}

/** A record that failed a step, on its way to the dead-letter topic. */
export interface DeadLetter {
  record: FlotillaRecord;
  step: string;
  reason: string;
  error: string;
}

/** The id of a pass-through record: (topic, partition, offset). */
export function passThroughId(c: SourceCoordinates): string {
  return `${c.topic}/${c.partition}/${c.offset}`;
}

/**
 * Kafka header with a record's own time (ms since the epoch) when the message timestamp is the
 * time of writing instead (the Kafka sink's default).
 */
export const RECORD_TIME_HEADER = 'flotilla.timestamp';
