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
  /**
   * The topology checkpoints state (set for its source, which is built after the steps): every
   * batch then waits on a checkpoint, so a source keeps more in flight to stay busy meanwhile.
   */
  stateful?: boolean;
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

/** What a source tells its consumer besides batches. */
export interface SourceEvents {
  /** Partitions given up (rebalance): state kept for them is stale from now on. */
  revoked(topic: string, partitions: number[]): void;
}

export interface Source {
  readonly kind: string;
  /** Where stateful steps checkpoint their state next to this source's data (default: in memory). */
  stateStore?(name: string): StateStore;
  /** Where this source's dead letters go (default: a topic of the embedded log). */
  deadLetterWriter?(topic: string): DeadLetterWriter;
  /** True once the source consumes (joined its group); `/ready` reports it. */
  ready?(): boolean;
  /** Consumes until `stop()`; resolves when stopped and the last acknowledged offsets are committed. */
  run(handler: BatchHandler, events?: SourceEvents): Promise<void>;
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
  /**
   * The input has ended for good (a pipeline task read its last page; never on a stream): emit
   * what the step still holds open, e.g. windows whose end no later record will pass.
   */
  finish?(): FlotillaRecord[];
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
  /**
   * A cheap round trip to the service (SELECT 1, PING), called every few seconds while the worker
   * runs, one call at a time: the next waits until this one settles, so it must settle soon after
   * `signal` aborts. Throws a typed error naming the service when it does not answer. A sink with
   * `healthy()` makes it false after a failed check, until a later check or write succeeds.
   */
  check?(signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/** Writes dead letters; resolves when acknowledged (the partition waits on it). */
export interface DeadLetterWriter {
  write(letters: DeadLetter[]): Promise<void>;
  close(): Promise<void>;
}

/** One state entry: last write per key wins, like a compacted topic; null is a tombstone. */
export interface StateEntry {
  key: string;
  value: Buffer | null;
}

/** Durable state of one stateful step, per input partition (a compacted changelog). */
export interface StateStore {
  /**
   * Takes the partition's state over before reading it, on every assignment: from then on,
   * writes by any earlier owner that has not noticed it lost the partition are refused.
   */
  claim(partition: number): Promise<void>;
  /** Every entry written for the partition, oldest first. */
  read(partition: number): Promise<StateEntry[]>;
  /**
   * Resolves when the entries are durable, all or none of them. Throws StateFencedError when
   * another owner claimed the partition since this one did.
   */
  write(partition: number, entries: StateEntry[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * A step that keeps state per input partition and checkpoints it. The worker, per partition:
 * `restore` before the first batch (records the state already holds are skipped when the
 * source re-delivers them); `process` then at once `snapshot` (entries changed since the last
 * call); sinks acknowledge the results; the snapshot is written to the state store; then the
 * offsets commit. `tick` (on a timer) closes what idle partitions held open; `releasePartition`
 * on revocation.
 */
export interface StatefulStep extends Step {
  tick(nowMs: number): FlotillaRecord[];
  snapshot(partition: number): StateEntry[];
  restore(partition: number, entries: Iterable<StateEntry>): void;
  releasePartition(partition: number): void;
}

export function isStatefulStep(step: Step): step is StatefulStep {
  const s = step as Partial<StatefulStep>;
  return typeof s.snapshot === 'function' && typeof s.restore === 'function' && typeof s.tick === 'function';
}
