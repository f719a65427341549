import { z } from 'zod';
import { FORBIDDEN_KEYS } from '../../expr/parser.js';
import { readDynamic } from '../../expr/runtime.js';

/** A dotted path into a record value, e.g. `ts` or `payload.items.0.id`. */
export interface FieldPath {
  readonly text: string;
  /** The value at the path, or `null` when any part of it is missing. Reads own properties only. */
  read(value: unknown): unknown;
}

export function compileFieldPath(text: string): FieldPath {
  // Numeric segments index arrays (`items.0`); readDynamic also reads numeric object keys.
  const segments = text.split('.').map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  if (segments.length === 1) {
    const only = segments[0];
    return { text, read: (value) => readDynamic(value, only) };
  }
  return {
    text,
    read(value) {
      let v = value;
      for (const s of segments) {
        v = readDynamic(v, s);
        if (v === null) return null;
      }
      return v;
    },
  };
}

/** A field path in YAML, checked at load time. */
export const fieldPathSchema = z
  .string()
  .regex(/^[^.\s]+(\.[^.\s]+)*$/, 'a field path such as ts or payload.user.id')
  .transform((text, ctx) => {
    const forbidden = text.split('.').find((s) => FORBIDDEN_KEYS.has(s));
    if (forbidden !== undefined) {
      ctx.addIssue({ code: 'custom', message: `'${forbidden}' cannot be part of a field path` });
      return z.NEVER;
    }
    return compileFieldPath(text);
  });

// A date, or a date-time with an explicit zone: a zone-less time would depend on the machine's zone.
const ISO_TIMESTAMP =
  /^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2}))?$/;

/** Milliseconds since the epoch of a timestamp (a number of ms, or an ISO-8601 string), else null. */
export function toEpochMs(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && ISO_TIMESTAMP.test(v)) {
    const ms = Date.parse(v);
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}
