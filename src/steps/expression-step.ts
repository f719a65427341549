import { z } from 'zod';
import type { StepContext } from '../core/component.js';
import type { FlotillaRecord } from '../core/record.js';
import { type CompiledExpression, compileExpression, ExpressionError } from '../expr/index.js';

/** An expression in YAML, compiled at validation time so a syntax error names its YAML path. */
export const expressionSchema = z.string().transform((source, ctx) => {
  try {
    return compileExpression(source);
  } catch (err) {
    if (!(err instanceof ExpressionError)) throw err;
    ctx.addIssue({ code: 'custom', message: err.message });
    return z.NEVER;
  }
});

/** The names an expression sees for a record. */
export function scopeOf(r: FlotillaRecord): Record<string, unknown> {
  return {
    value: r.value,
    key: r.key,
    timestamp: r.timestamp,
    headers: r.headers,
    topic: r.source.topic,
    partition: r.source.partition,
    offset: r.source.offset,
  };
}

/** Runs `each` per record; a record whose expression throws goes to the dead-letter topic. */
export function eachRecord(
  records: FlotillaRecord[],
  ctx: StepContext,
  each: (r: FlotillaRecord, out: FlotillaRecord[]) => void,
): FlotillaRecord[] {
  const out: FlotillaRecord[] = [];
  for (const r of records) {
    try {
      each(r, out);
    } catch (err) {
      ctx.deadLetter(r, (err as { reason?: string }).reason ?? 'expression', err);
    }
  }
  return out;
}

export type { CompiledExpression };
