import { z } from 'zod';
import { FlotillaError } from '../core/errors.js';

/** A duration that is neither a number of milliseconds nor a number with a known unit. */
export class DurationError extends FlotillaError {}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
// One or more `<number><unit>` parts, e.g. `1h30m` or `1.5s`; a bare number is milliseconds.
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;

const EXPECTED =
  "expected milliseconds (a number) or a number with a unit ms, s, m, h or d, e.g. '500ms', '30s', '1m', '1h30m'";

/** Milliseconds in a duration: a number of ms, or a string like '500ms', '30s', '1m', '1h', '1h30m', '2d'. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0)
      throw new DurationError(`invalid duration ${input}: ${EXPECTED}`);
    return input;
  }
  const text = input.trim();
  if (/^\d+(?:\.\d+)?$/.test(text)) return Number(text);
  if (!WHOLE.test(text)) throw new DurationError(`invalid duration '${input}': ${EXPECTED}`);
  let ms = 0;
  for (const [, amount, unit] of text.matchAll(PART))
    ms += Number(amount) * (UNIT_MS[unit as string] as number);
  return Math.round(ms);
}

function durationIssue(value: string | number, ctx: z.RefinementCtx, also = ''): number {
  try {
    return parseDuration(value);
  } catch (err) {
    if (!(err instanceof DurationError)) throw err;
    ctx.addIssue({ code: 'custom', message: `${err.message}${also}` });
    return z.NEVER;
  }
}

/** A duration in YAML (number of ms or '30s'-style string), validated and turned into milliseconds. */
export const durationSchema = z
  .union([z.number(), z.string()])
  .transform((value, ctx) => durationIssue(value, ctx));

/** A duration, or 'never' (kept as is): a bound that can be switched off. */
export const durationOrNeverSchema = z
  .union([z.number(), z.string()])
  .transform((value, ctx) =>
    value === 'never' ? ('never' as const) : durationIssue(value, ctx, ", or 'never'"),
  );
