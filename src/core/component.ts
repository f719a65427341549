import type { z } from 'zod';
import type { Logger } from '../observability/logger.js';
import type { DeadLetter, FlotillaRecord } from './record.js';

/** What every component factory gets besides its own config. */
export interface ComponentContext {
  topology: string;
  /** Consumer group of the topology. */
  group: string;
  /** Folder of the topology file: relative paths in its config resolve from here. */
  baseDir: string;
  logger: Logger;
}

/**
 * One kind of source, step or sink: its YAML schema (which is also its TypeScript type)
 * and a factory. Each kind's registry is a list of these.
 */
export interface ComponentDefinition<Schema extends z.ZodObject, Instance> {
  kind: string;
  description: string;
  schema: Schema;
  create(config: z.infer<Schema>, ctx: ComponentContext): Instance | Promise<Instance>;
}

/** A batch of records from one partition, in offset order. */
export interface SourceBatch {
  topic: string;
  partition: number;
  records: FlotillaRecord[];
}

/**
 * Handles one batch: resolves once every effect of the batch is acknowledged. A source
 * commits the batch's offsets only after that. A source may hand over a partition's next
 * batch before the previous one is acknowledged (the handler keeps per-partition order).
 */
export type BatchHandler = (batch: SourceBatch) => Promise<void>;

export interface Source {
  readonly kind: string;
  /** Where this source's dead letters go (default: a topic of the embedded log). */
  deadLetterWriter?(topic: string): DeadLetterWriter;
  /** True once the source consumes (joined its group); `/ready` reports it. */
  ready?(): boolean;
  /** Consumes until `stop()`; resolves when stopped and the last acknowledged offsets are committed. */
  run(handler: BatchHandler): Promise<void>;
  stop(): Promise<void>;
}

/** What a step sees of the batch it processes, and where it sends the records it rejects. */
export interface StepContext {
  /** Topic and partition of the batch: stateful steps keep their state per partition. */
  topic: string;
  partition: number;
  deadLetter(record: FlotillaRecord, reason: string, error: unknown): void;
}

export interface Step {
  readonly name: string;
  /** Processes one batch of one partition, in order, and returns what flows on. */
  process(records: FlotillaRecord[], ctx: StepContext): FlotillaRecord[] | Promise<FlotillaRecord[]>;
  close?(): Promise<void>;
}

/** Where a sink reports the records its database refused for good (type mismatch, constraint). */
export interface SinkContext {
  /** The record goes to the dead-letter topic with reason `sink` and this error. */
  reject(record: FlotillaRecord, error: unknown): void;
}

export interface Sink {
  readonly name: string;
  /**
   * Resolves when the sink has durably acknowledged every record, except those it passed to
   * `ctx.reject` (they are dead-lettered). Throws on a retriable failure: the worker retries
   * the whole batch, so writes must be idempotent on `record.id`.
   */
  write(records: FlotillaRecord[], ctx: SinkContext): Promise<void>;
  /** False while the sink cannot write (e.g. circuit open); `/ready` reports it. */
  healthy?(): boolean;
  close(): Promise<void>;
}

/** Writes dead letters; resolves when acknowledged (the partition waits on it). */
export interface DeadLetterWriter {
  write(letters: DeadLetter[]): Promise<void>;
  close(): Promise<void>;
}
