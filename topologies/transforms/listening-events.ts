/**
 * The `check` step of topologies/events.yaml: a batch transform (docs/code-step.md) that
 * dead-letters events with a missing or mistyped field, an unknown action or an implausible
 * duration (reason `invalid`, naming the field), and passes the rest on unchanged.
 */
import type { FlotillaRecord, Transform } from '../../src/api.js';

interface Options {
  /** Actions a listening event may have. */
  actions: string[];
  /** Longer durations are implausible. */
  max_duration_ms: number;
}

const STRING_FIELDS = ['tenant', 'user', 'track', 'action'] as const;

const show = (v: unknown) => (v === undefined ? 'nothing' : JSON.stringify(v));

/** What is wrong with an event, or undefined when nothing is. */
function problemOf(value: unknown, actions: ReadonlySet<string>, maxDurationMs: number): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return 'the event is not an object';
  const event = value as Record<string, unknown>;
  if (!Number.isInteger(event.ts))
    return `ts: expected an integer (ms since the epoch), found ${show(event.ts)}`;
  for (const field of STRING_FIELDS) {
    if (typeof event[field] !== 'string' || event[field] === '')
      return `${field}: expected a non-empty string, found ${show(event[field])}`;
  }
  if (!actions.has(event.action as string)) return `action: unknown action '${event.action}'`;
  const duration = event.duration_ms;
  if (typeof duration !== 'number' || !Number.isInteger(duration) || duration < 0 || duration > maxDurationMs)
    return `duration_ms: expected an integer from 0 to ${maxDurationMs}, found ${show(duration)}`;
  return undefined;
}

const checkListeningEvents: Transform<Options> = (records, ctx) => {
  const actions = new Set(ctx.options.actions);
  const valid: FlotillaRecord[] = [];
  for (const record of records) {
    const problem = problemOf(record.value, actions, ctx.options.max_duration_ms);
    if (problem === undefined) valid.push(record);
    else ctx.deadLetter(record, 'invalid', new Error(problem));
  }
  return valid;
};

export default checkListeningEvents;
