import { FlotillaError } from '../../core/errors.js';

/**
 * What a failed write means. `row`: the database refuses this data for good (type mismatch,
 * constraint) and the row is dead-lettered; every other kind is retriable: the write throws and
 * the worker retries the whole batch. `other` (an error nobody classified, e.g. a missing table)
 * is retried too: a misconfiguration pauses the partition instead of dead-lettering every row.
 */
export type ErrorKind = 'row' | 'connection' | 'timeout' | 'overloaded' | 'other';

/** A row refused before it reached the database (it cannot be mapped to the table or key). */
export class RowRefusedError extends FlotillaError {}

/** A retriable write failure, thrown to the worker (which retries the batch with backoff). */
export class SinkWriteError extends FlotillaError {
  constructor(
    readonly sink: string,
    readonly kind: ErrorKind,
    cause: unknown,
  ) {
    super(`sink '${sink}': ${kind} error: ${errorMessage(cause)}`, { cause });
  }
}

/** Thrown at once while the circuit is open, so the worker backs off without touching the database. */
export class CircuitOpenError extends FlotillaError {
  constructor(
    readonly sink: string,
    readonly retryInMs: number,
    readonly lastError: unknown,
  ) {
    super(
      `sink '${sink}': circuit open, next attempt in ${Math.ceil(retryInMs)} ms (last error: ${errorMessage(lastError)})`,
    );
  }
}

/** A health check (`Sink.check`) the database did not answer; the message names the service. */
export class SinkCheckError extends FlotillaError {
  constructor(
    readonly sink: string,
    readonly service: string,
    readonly kind: ErrorKind,
    cause: unknown,
  ) {
    super(`sink '${sink}': ${service} does not answer (${kind}): ${errorMessage(cause)}`, { cause });
  }
}

/** The client has no connection to the database right now (it keeps reconnecting in the background). */
export class NotConnectedError extends FlotillaError {}

/** A sink configuration the database does not match (no such column, no version column). */
export class SinkConfigError extends FlotillaError {}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ENOTCONN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_SOCKET_CLOSED',
]);
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * The kind of a socket-level failure (refused, reset, timed out), looking through `cause` and
 * AggregateError chains as drivers wrap them; undefined if it is not one.
 */
export function transportErrorKind(err: unknown, depth = 0): ErrorKind | undefined {
  if (!(err instanceof Error) || depth > 5) return undefined;
  if (err instanceof NotConnectedError) return 'connection';
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (CONNECTION_CODES.has(code)) return 'connection';
    if (TIMEOUT_CODES.has(code)) return 'timeout';
  }
  if (err instanceof AggregateError) {
    for (const inner of err.errors) {
      const kind = transportErrorKind(inner, depth + 1);
      if (kind) return kind;
    }
  }
  return transportErrorKind(err.cause, depth + 1);
}
