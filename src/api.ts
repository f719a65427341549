/**
 * The API for authors of `code` steps: a module a topology names in
 * `{ kind: code, module: ./transforms/x.ts }` exports a Transform (see docs/code-step.md).
 */
import type { StepContext } from './core/component.js';
import type { FlotillaRecord } from './core/record.js';
import type { Logger } from './observability/logger.js';

/** Throw it from a transform waiting on an outage: the batch is retried, not dead-lettered. */
export { TransientError } from './core/errors.js';
export type { FlotillaRecord, SourceCoordinates } from './core/record.js';

/** What a transform sees besides its batch: where the batch is from, its options, where rejects go. */
export interface TransformContext<Options = Record<string, unknown>> extends StepContext {
  /** The step's `options` from the topology file (an empty object when there are none). */
  readonly options: Options;
  /** Name of the step in the topology. */
  readonly step: string;
  readonly topology: string;
  /** Logger with topology and step in context. */
  readonly logger: Logger;
}

/**
 * A batch transform: receives one partition's batch in offset order and returns the records
 * that flow on (changed, dropped, or more than came in). A record it cannot handle goes to
 * `ctx.deadLetter(record, reason, error)`; if it throws, every record of the batch it did not
 * dead-letter itself is dead-lettered with reason `code` and the error.
 */
export type Transform<Options = Record<string, unknown>> = (
  records: FlotillaRecord[],
  ctx: TransformContext<Options>,
) => FlotillaRecord[] | Promise<FlotillaRecord[]>;

/** Types a transform (its records, context and options) without changing it. */
export function defineTransform<Options = Record<string, unknown>>(
  fn: Transform<Options>,
): Transform<Options> {
  return fn;
}
