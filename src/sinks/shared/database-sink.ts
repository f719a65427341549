import type { ComponentContext, Sink, SinkContext } from '../../core/component.js';
import type { FlotillaRecord } from '../../core/record.js';
import { CircuitBreaker } from './breaker.js';
import type { DatabaseSinkConfig } from './config.js';
import { CircuitOpenError, type ErrorKind, errorMessage, RowRefusedError, SinkWriteError } from './errors.js';
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

/** What differs between databases; batching, bisection, the breaker and metrics are shared. */
export interface SinkDriver<P> {
  /**
   * Connects and reads or creates the table, once; called before every write, so it must be
   * cheap once done and must try again after a failure.
   */
  prepare?(): Promise<void>;
  /** Encodes one record; throws RowRefusedError for a record that cannot become a row. */
  encode(record: FlotillaRecord): { payload: P; bytes: number };
  /**
   * Writes one statement's rows, idempotently on their ids. Either it throws (nothing or an
   * unknown part landed: the caller classifies the error) or it resolves with the rows the
   * database refused individually (drivers whose protocol reports per row: MongoDB, Redis).
   */
  flush(rows: Encoded<P>[]): Promise<readonly RowFailure[]>;
  classify(err: unknown): ErrorKind;
  /** The index, in the failed statement, of the row a row error names, when the database says. */
  failedRow?(err: unknown): number | undefined;
  close(): Promise<void>;
}

export interface DatabaseSinkOptions {
  kind: string;
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
 */
export class DatabaseSink<P> implements Sink {
  readonly name: string;
  readonly stats: SinkStats = {
    statements: 0,
    rows: 0,
    bytes: 0,
    largestStatementRows: 0,
    largestStatementBytes: 0,
  };
  private readonly breaker: CircuitBreaker;
  private readonly metrics: SinkMetrics;

  constructor(
    private readonly driver: SinkDriver<P>,
    private readonly config: DatabaseSinkConfig,
    private readonly options: DatabaseSinkOptions,
    ctx: ComponentContext,
  ) {
    this.name = config.name ?? options.kind;
    this.metrics = new SinkMetrics(ctx.topology, this.name, options.kind);
    const logger = ctx.logger.child({ sink: this.name, kind: options.kind });
    this.breaker = new CircuitBreaker(this.name, config.circuit, (state, lastError) => {
      this.metrics.circuit(state);
      if (state === 'open') logger.warn({ err: lastError }, 'sink circuit open');
      else logger.info(`sink circuit ${state}`);
    });
  }

  healthy(): boolean {
    return this.breaker.current === 'closed';
  }

  async write(records: FlotillaRecord[], ctx: SinkContext): Promise<void> {
    if (records.length === 0) return;
    let probe: boolean;
    try {
      probe = this.breaker.enter();
    } catch (err) {
      if (err instanceof CircuitOpenError) this.metrics.error('circuit_open');
      throw err;
    }
    try {
      await this.writeStatements(this.options.lastPerId ? lastPerId(records) : records, ctx);
    } catch (err) {
      this.breaker.failed(err, probe);
      throw err;
    }
    this.breaker.succeeded(probe);
  }

  close(): Promise<void> {
    return this.driver.close();
  }

  private async writeStatements(records: FlotillaRecord[], ctx: SinkContext): Promise<void> {
    if (this.driver.prepare) {
      try {
        await this.driver.prepare();
      } catch (err) {
        const kind = this.driver.classify(err);
        this.metrics.error(kind);
        throw new SinkWriteError(this.name, kind, err);
      }
    }
    const { max_rows: maxRows, max_bytes: maxBytes } = this.config.batch;
    let rows: Encoded<P>[] = [];
    let bytes = 0;
    for (const record of records) {
      let encoded: Encoded<P>;
      try {
        encoded = { record, ...this.driver.encode(record) };
      } catch (err) {
        if (!(err instanceof RowRefusedError)) throw err;
        this.reject(ctx, record, err);
        continue;
      }
      if (rows.length > 0 && (rows.length >= maxRows || bytes + encoded.bytes > maxBytes)) {
        await this.flush(rows, bytes, ctx);
        rows = [];
        bytes = 0;
      }
      rows.push(encoded);
      bytes += encoded.bytes;
    }
    if (rows.length > 0) await this.flush(rows, bytes, ctx);
  }

  private async flush(rows: Encoded<P>[], bytes: number, ctx: SinkContext): Promise<void> {
    this.count(rows.length, bytes);
    const started = performance.now();
    let failures: readonly RowFailure[];
    try {
      failures = await this.driver.flush(rows);
    } catch (err) {
      const kind = this.driver.classify(err);
      this.metrics.error(kind);
      if (kind !== 'row') throw new SinkWriteError(this.name, kind, err);
      if (rows.length === 1) {
        this.reject(ctx, (rows[0] as Encoded<P>).record, err);
        return;
      }
      for (const part of split(rows, this.driver.failedRow?.(err))) {
        await this.flush(part, sumBytes(part), ctx);
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

/** Keeps the last record of each id, in batch order: later records of an id supersede earlier ones. */
export function lastPerId(records: FlotillaRecord[]): FlotillaRecord[] {
  const last = new Map<string, number>();
  records.forEach((r, i) => {
    last.set(r.id, i);
  });
  return last.size === records.length ? records : records.filter((r, i) => last.get(r.id) === i);
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
