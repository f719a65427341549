import { toEpochMs } from '../steps/quality/fields.js';

/** A timestamp in ms from a number, a numeric string, a Date or ISO-8601; null otherwise. */
export function epochMs(value: unknown): number | null {
  if (typeof value === 'string' && /^-?\d+(\.\d+)?$/.test(value.trim())) return Number(value);
  if (value instanceof Date) return value.getTime();
  return toEpochMs(value);
}
