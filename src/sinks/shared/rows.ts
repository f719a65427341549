import type { FlotillaRecord } from '../../core/record.js';
import type { CompiledExpression } from '../../expr/index.js';
import { scopeOf } from '../../steps/expression-step.js';
import { errorMessage, RowRefusedError, SinkConfigError } from './errors.js';

export type Row = Record<string, unknown>;

/** The names a sink's column expressions and key templates read for one record. */
export function sinkScope(record: FlotillaRecord): Record<string, unknown> {
  return { ...scopeOf(record), id: record.id };
}

function isPlainObject(v: unknown): v is Row {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Maps a record to the fields a sink writes: the declared `columns:` evaluated on the record, or
 * else every top-level field of the value. The sink adds its own id (and version) fields, so a
 * value field with one of those `reserved` names is refused rather than silently overwritten.
 */
export class RowMapper {
  private readonly columns: [string, CompiledExpression][] | undefined;

  constructor(
    columns: Record<string, CompiledExpression> | undefined,
    private readonly reserved: readonly string[],
  ) {
    this.columns = columns && Object.entries(columns);
    const clash = this.columns?.find(([name]) => reserved.includes(name));
    // Validation of the sink's own config: fails at creation, not per record.
    if (clash) throw new SinkConfigError(`column '${clash[0]}' is reserved for the sink's id or version`);
  }

  /** The declared column names, or undefined when every top-level field of the value is one. */
  get declared(): string[] | undefined {
    return this.columns?.map(([name]) => name);
  }

  /** Fields of one record; the returned object may be the record's own value: do not mutate it. */
  map(record: FlotillaRecord): Row {
    if (this.columns) {
      const scope = sinkScope(record);
      const row: Row = {};
      for (const [name, expr] of this.columns) {
        try {
          row[name] = expr.evaluate(scope);
        } catch (err) {
          throw new RowRefusedError(`column '${name}': ${errorMessage(err)}`, { cause: err });
        }
      }
      return row;
    }
    const value = record.value;
    if (!isPlainObject(value)) {
      throw new RowRefusedError(
        `the value is ${Buffer.isBuffer(value) ? 'undecoded bytes (add a decode step)' : `not an object (${value === null ? 'null' : typeof value})`}: declare columns: to map it`,
      );
    }
    for (const name of this.reserved) {
      if (Object.hasOwn(value, name)) {
        throw new RowRefusedError(
          `the value has a field '${name}', which the sink writes itself: rename it with columns:`,
        );
      }
    }
    return value;
  }
}
