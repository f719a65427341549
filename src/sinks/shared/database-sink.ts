import type { ComponentContext, Sink, SinkContext } from '../../core/component.js';
import type { FlotillaRecord } from '../../core/record.js';
import { CircuitBreaker } from './breaker.js';
import { Coalescer } from './coalescer.js';
import type { DatabaseSinkConfig } from './config.js';
import {
  CircuitOpenError,
  type ErrorKind,
  errorMessage,
  RowRefusedError,
  SinkCheckError,
  SinkWriteError,
} from './errors.js';
import { SinkMetrics } from './metrics.js';

/** One record encoded for a statement, with the size that max_bytes counts. */
export interface Encoded<P> {
  record: FlotillaRecord;
  payload: P;
  bytes: number;
}

/** A row of a statement that the database refused on its own while the rest landed. */
export interface RowFailure {
  /** Index in the rows passed to `flush`. */
  index: number;
  error: unknown;
}

export const NO_FAILURES: readonly RowFailure[] = [];

/**
 * Where a tenant-aware driver sends each record: a target (a tenant, or a tenant's schema or
 * database) with its own prepared state. A batch is grouped per target and written one target
 * at a time, each with its own statements.
 */
export interface SinkTargets<T> {
  /** The target of a record; throws RowRefusedError for a record that has none (it is dead-lettered). */
  of(record: FlotillaRecord): string;
  /**
   * The target's state, prepared on first use (schema, database, table, pool); failures are
   * classified and retried like `prepare`. Each acquire is followed by one `release`.
   */
  acquire(target: string): Promise<T>;
  release(target: string): void;
}

/**
 * What differs between databases; batching, bisection, the breaker and metrics are shared.
 * `T` is a target's state for drivers with `targets` (undefined is passed to the others).
 */
export interface SinkDriver<P, T = undefined> {
  /**
   * Connects and reads or creates the table, once; called before every write, so it must be
   * cheap once done and must try again after a failure.
   */
  prepare?(): Promise<void>;
  targets?: SinkTargets<T>;
  /**
   * The row a record writes, when it is more than its id (a tenant column beside the id): of
   * records with one key in a group only the last is written (`lastPerId`). Default: the id.
   */
  rowKey?(record: FlotillaRecord): string;
  /** Encodes one record; throws RowRefusedError for a record that cannot become a row. */
  encode(record: FlotillaRecord, target: T): { payload: P; bytes: number };
  /**
   * Writes one statement's rows (all of one target), idempotently on their ids. Either it throws
   * (nothing or an unknown part landed: the caller classifies the error) or it resolves with the
   * rows the database refused individually (drivers whose protocol reports per row: MongoDB, Redis).
   */
  flush(rows: Encoded<P>[], target: T): Promise<readonly RowFailure[]>;
  classify(err: unknown): ErrorKind;
  /**
   * A cheap round trip to the database (SELECT 1, PING) that touches no table: the health check.
   * Passes `signal` to the client where it takes one; the sink's `timeout` bounds it otherwise.
   */
  ping?(signal?: AbortSignal): Promise<void>;
  /** The index, in the failed statement, of the row a row error names, when the database says. */
  failedRow?(err: unknown): number | undefined;
  close(): Promise<void>;
}

export interface DatabaseSinkOptions {
  kind: string;
  /** The database's name in health check errors: PostgreSQL, ClickHouse... (default: the kind). */
  service?: string;
  /** Upsert sinks keep only the last record of an id in a batch (a statement may not touch a row twice). */
  lastPerId: boolean;
}

/** Counters of what reached the driver, so tests and benchmarks can see statement sizes. */
export interface SinkStats {
  statements: number;
  rows: number;
  bytes: number;
  largestStatementRows: number;
  largestStatementBytes: number;
}

/**
 * A database sink: cuts the worker's batch into statements of at most `batch.max_rows` rows and
 * `batch.max_bytes` bytes (encoding lazily, so at most one statement is held encoded), writes
 * them in order, and when a statement fails on a row error, splits it (at the row the database
 * names, else in halves) until only the refused rows are left; those go to `ctx.reject`, the rest
 * land. Retriable errors throw (the worker retries the batch) and feed the circuit breaker.
 * A driver with `targets` (tenants) gets the batch grouped per target, one target at a time.
 * With a driver that pings, `check` is the health check: it never touches the breaker; its failure
 * makes the sink unhealthy until a later check or a landed write shows the database answers.
 */
export class DatabaseSink<P, T = undefined> implements Sink {
  readonly name: string;
  readonly stats: SinkStats = {
    statements: 0,
    rows: 0,
    bytes: 0,
    largestStatementRows: 0,
    largestStatementBytes: 0,
  };
  private readonly breaker: CircuitBreaker;
  /** Batching by time (`batch.linger`), when set. */
  private readonly coalescer: Coalescer | undefined;
  private readonly metrics: SinkMetrics;
  /** Why the last check failed, until a later check or a landed write shows the database answers. */
  private unanswered: SinkCheckError | undefined;
  /** The driver's ping under way: a check that gave up waiting leaves it running, so others join it. */
  private pinging: Promise<void> | undefined;
  /** Present when the driver pings (see `Sink.check`). */
  readonly check?: (signal?: AbortSignal) => Promise<void>;

  constructor(
    private readonly driver: SinkDriver<P, T>,
    private readonly config: DatabaseSinkConfig,
    private readonly options: DatabaseSinkOptions,
    ctx: ComponentContext,
  ) {
    this.name = config.name ?? options.kind;
    const { linger, max_rows } = config.batch;
    this.coalescer =
      linger > 0 ? new Coalescer(linger, max_rows, (records, ctx) => this.writeNow(records, ctx)) : undefined;
    this.metrics = new SinkMetrics(ctx.topology, this.name, options.kind);
    const logger = ctx.logger.child({ sink: this.name, kind: options.kind });
    this.breaker = new CircuitBreaker(this.name, config.circuit, (state, lastError) => {
      this.metrics.circuit(state);
      if (state === 'open') logger.warn({ err: lastError }, 'sink circuit open');
      else logger.info(`sink circuit ${state}`);
    });
    const ping = driver.ping?.bind(driver);
    if (ping) this.check = (signal) => this.checkWith(ping, signal);
  }

  healthy(): boolean {
    return this.breaker.current === 'closed' && this.unanswered === undefined;
  }

  write(records: FlotillaRecord[], ctx: SinkContext): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    return this.coalescer ? this.coalescer.submit(records, ctx) : this.writeNow(records, ctx);
  }

  private async writeNow(records: FlotillaRecord[], ctx: SinkContext): Promise<void> {
    let probe: boolean;
    try {
      probe = this.breaker.enter();
    } catch (err) {
      if (err instanceof CircuitOpenError) this.metrics.error('circuit_open');
      throw err;
    }
    try {
      await this.writeTargets(records, ctx);
    } catch (err) {
      this.breaker.failed(err, probe);
      throw err;
    }
    this.breaker.succeeded(probe);
    this.unanswered = undefined;
  }

  /**
   * One ping at a time per sink, whatever the callers: a ping the driver cannot abort (a PostgreSQL
   * query) holds a pooled connection until the sink's timeout, and must not be joined by more.
   */
  private async checkWith(
    ping: (signal?: AbortSignal) => Promise<void>,
    signal?: AbortSignal,
  ): Promise<void> {
    this.pinging ??= ping(signal).finally(() => {
      this.pinging = undefined;
    });
    try {
      await settleBy(this.pinging, signal);
    } catch (err) {
      const kind = signal?.aborted && err === signal.reason ? 'timeout' : this.driver.classify(err);
      // A ping refused for its content (a Redis reply error) says nothing about a row.
      const service = this.options.service ?? this.options.kind;
      this.unanswered = new SinkCheckError(this.name, service, kind === 'row' ? 'other' : kind, err);
      throw this.unanswered;
    }
    this.unanswered = undefined;
  }

  close(): Promise<void> {
    return this.driver.close();
  }

  /** Without targets the batch is one group; with them, one group per target, in first-seen order. */
  private async writeTargets(records: FlotillaRecord[], ctx: SinkContext): Promise<void> {
    const prepare = this.driver.prepare?.bind(this.driver);
    if (prepare) await this.prepared(prepare);
    const { targets } = this.driver;
    if (!targets) {
      await this.writeStatements(records, undefined as T, ctx);
      return;
    }
    for (const [target, group] of this.groupByTarget(records, targets, ctx)) {
      const state = await this.prepared(() => targets.acquire(target));
      try {
        await this.writeStatements(group, state, ctx);
      } finally {
        targets.release(target);
      }
    }
  }

  /** Runs a preparation; its failure is retriable whatever it is (a write failure of the sink). */
  private async prepared<R>(prepare: () => Promise<R>): Promise<R> {
    try {
      return await prepare();
    } catch (err) {
      const kind = this.driver.classify(err);
      this.metrics.error(kind);
      throw new SinkWriteError(this.name, kind, err);
    }
  }

  private groupByTarget(
    records: FlotillaRecord[],
    targets: SinkTargets<T>,
    ctx: SinkContext,
  ): Map<string, FlotillaRecord[]> {
    const groups = new Map<string, FlotillaRecord[]>();
    for (const record of records) {
      let target: string;
      try {
        target = targets.of(record);
      } catch (err) {
        if (!(err instanceof RowRefusedError)) throw err;
        this.reject(ctx, record, err);
        continue;
      }
      const group = groups.get(target);
      if (group) group.push(record);
      else groups.set(target, [record]);
    }
    return groups;
  }

  /** One group's records, cut into statements; ids are unique per target, so last-per-id is per group. */
  private async writeStatements(group: FlotillaRecord[], target: T, ctx: SinkContext): Promise<void> {
    const records = this.options.lastPerId ? lastPerId(group, this.driver.rowKey?.bind(this.driver)) : group;
    const { max_rows: maxRows, max_bytes: maxBytes } = this.config.batch;
    let rows: Encoded<P>[] = [];
    let bytes = 0;
    for (const record of records) {
      let encoded: Encoded<P>;
      try {
        encoded = { record, ...this.driver.encode(record, target) };
      } catch (err) {
        if (!(err instanceof RowRefusedError)) throw err;
        this.reject(ctx, record, err);
        continue;
      }
      if (rows.length > 0 && (rows.length >= maxRows || bytes + encoded.bytes > maxBytes)) {
        await this.flush(rows, bytes, target, ctx);
        rows = [];
        bytes = 0;
      }
      rows.push(encoded);
      bytes += encoded.bytes;
    }
    if (rows.length > 0) await this.flush(rows, bytes, target, ctx);
  }

  private async flush(rows: Encoded<P>[], bytes: number, target: T, ctx: SinkContext): Promise<void> {
    this.count(rows.length, bytes);
    const started = performance.now();
    let failures: readonly RowFailure[];
    try {
      failures = await this.driver.flush(rows, target);
    } catch (err) {
      const kind = this.driver.classify(err);
      this.metrics.error(kind);
      if (kind !== 'row') throw new SinkWriteError(this.name, kind, err);
      if (rows.length === 1) {
        this.reject(ctx, (rows[0] as Encoded<P>).record, err);
        return;
      }
      for (const part of split(rows, this.driver.failedRow?.(err))) {
        await this.flush(part, sumBytes(part), target, ctx);
      }
      return;
    }
    let rejectedBytes = 0;
    for (const { index, error } of failures) {
      const kind = this.driver.classify(error);
      this.metrics.error(kind);
      if (kind !== 'row') throw new SinkWriteError(this.name, kind, error);
      const row = rows[index] as Encoded<P>;
      rejectedBytes += row.bytes;
      this.reject(ctx, row.record, error);
    }
    this.metrics.statement(
      rows.length - failures.length,
      bytes - rejectedBytes,
      (performance.now() - started) / 1000,
    );
  }

  private count(rows: number, bytes: number): void {
    const s = this.stats;
    s.statements++;
    s.rows += rows;
    s.bytes += bytes;
    s.largestStatementRows = Math.max(s.largestStatementRows, rows);
    s.largestStatementBytes = Math.max(s.largestStatementBytes, bytes);
  }

  private reject(ctx: SinkContext, record: FlotillaRecord, error: unknown): void {
    this.metrics.rejected();
    ctx.reject(record, error instanceof Error ? error : new Error(errorMessage(error)));
  }
}

/**
 * Keeps the last record of each id (or row key), in batch order: later records of an id supersede
 * earlier ones.
 */
export function lastPerId(
  records: FlotillaRecord[],
  keyOf: (record: FlotillaRecord) => string = (r) => r.id,
): FlotillaRecord[] {
  const last = new Map<string, number>();
  const keys = records.map(keyOf);
  keys.forEach((key, i) => {
    last.set(key, i);
  });
  return last.size === records.length ? records : records.filter((_, i) => last.get(keys[i] as string) === i);
}

/**
 * The parts to retry a statement that failed on a row error: around the named row when the
 * database names one (that row then goes alone, so the database itself confirms the refusal),
 * else two halves.
 */
function split<T>(rows: T[], at: number | undefined): T[][] {
  if (at !== undefined && Number.isInteger(at) && at >= 0 && at < rows.length) {
    return [rows.slice(0, at), rows.slice(at, at + 1), rows.slice(at + 1)].filter((p) => p.length > 0);
  }
  const mid = Math.ceil(rows.length / 2);
  return [rows.slice(0, mid), rows.slice(mid)];
}

function sumBytes(rows: Encoded<unknown>[]): number {
  let total = 0;
  for (const r of rows) total += r.bytes;
  return total;
}

/** Settles like `work`, or rejects with the signal's reason as soon as it aborts (`work` runs on). */
function settleBy<T>(work: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Memoizes an async initialisation; a failed attempt is forgotten so the next call tries again. */
export function onceUntilDone<T>(init: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    pending ??= init().catch((err: unknown) => {
      pending = undefined;
      throw err;
    });
    return pending;
  };
}
