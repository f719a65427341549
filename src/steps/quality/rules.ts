import type { FlotillaRecord } from '../../core/record.js';
import type { CompiledExpression, Scope } from '../../expr/index.js';
import { canonicalJson, isPlainObject } from '../../expr/runtime.js';
import type { DedupeTable } from './dedupe.js';
import type { FieldPath } from './fields.js';
import { toEpochMs } from './fields.js';
import { defaultRuleName, type QualityAction, type QualityRuleConfig, type ValueType } from './schema.js';

/** The rule does not apply to this record (its field is absent, or its `when` is false). */
export const SKIP = Symbol('skip');

/** A record as the rules see it, with what is shared between rules computed once. */
export interface Subject {
  record: FlotillaRecord;
  value: Record<string, unknown>;
  /** The raw event-time field (or the record timestamp); null when absent. */
  eventTimeRaw: unknown;
  /** Wall clock for the batch (ms since the epoch). */
  now: number;
  scope(): Scope;
  /** Dedupe tables of the record's partition, by `dedupeSlot`. */
  dedupe: DedupeTable[];
  /** Keys to remember if the record flows on. */
  pendingKeys: { slot: number; key: string; time: number }[];
}

/** null when the record passes, a description of the failure when not, SKIP when not applicable. */
export type RuleOutcome = string | null | typeof SKIP;

export interface CompiledRule {
  readonly name: string;
  readonly kind: QualityRuleConfig['kind'];
  readonly action: QualityAction;
  readonly weight: number;
  readonly when: CompiledExpression | undefined;
  check(subject: Subject): RuleOutcome;
}

/** A dedupe rule also says which table of the partition it keeps its keys in. */
export interface CompiledDedupeRule extends CompiledRule {
  readonly kind: 'dedupe';
  readonly dedupeSlot: number;
  readonly ttlMs: number;
  readonly maxKeys: number;
}

/** A short, bounded rendering of a value for failure messages. */
export function show(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return `'${v.length > 40 ? `${v.slice(0, 40)}…` : v}'`;
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return String(v);
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))}s`;
}

function isType(v: unknown, type: ValueType): boolean {
  switch (type) {
    case 'string':
    case 'boolean':
      return typeof v === type;
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'integer':
      return Number.isInteger(v);
    case 'object':
      return isPlainObject(v);
    case 'array':
      return Array.isArray(v);
    case 'timestamp':
      return toEpochMs(v) !== null;
  }
}

/** A rule on one field: skipped when the field is absent, so only `required` reports absence. */
function onField(field: FieldPath, test: (v: unknown) => string | null): (s: Subject) => RuleOutcome {
  return (s) => {
    const v = field.read(s.value);
    if (v === null) return SKIP;
    const problem = test(v);
    return problem === null ? null : `${field.text}: ${problem}`;
  };
}

/** A rule on the event time: skipped when there is none, failed when it is not a timestamp. */
function onEventTime(test: (eventMs: number, now: number) => string | null): (s: Subject) => RuleOutcome {
  return (s) => {
    if (s.eventTimeRaw === null) return SKIP;
    const ms = toEpochMs(s.eventTimeRaw);
    if (ms === null) return `event time ${show(s.eventTimeRaw)} is not a timestamp`;
    return test(ms, s.now);
  };
}

function checkOf(rule: QualityRuleConfig, dedupeSlot: number): (s: Subject) => RuleOutcome {
  switch (rule.kind) {
    case 'required': {
      const { fields } = rule;
      return (s) => {
        const missing = fields.filter((f) => f.read(s.value) === null);
        return missing.length === 0 ? null : `missing ${missing.map((f) => f.text).join(', ')}`;
      };
    }
    case 'type':
      return onField(rule.field, (v) =>
        isType(v, rule.type) ? null : `expected ${rule.type}, found ${show(v)}`,
      );
    case 'range': {
      const { min, max } = rule;
      return onField(rule.field, (v) => {
        if (typeof v !== 'number' || Number.isNaN(v)) return `expected a number, found ${show(v)}`;
        if (min !== undefined && !(v >= min)) return `${v} is below min ${min}`;
        if (max !== undefined && !(v <= max)) return `${v} is above max ${max}`;
        return null;
      });
    }
    case 'enum': {
      const allowed = new Set<unknown>(rule.values);
      const list = rule.values.map(String).join(', ');
      return onField(rule.field, (v) => (allowed.has(v) ? null : `${show(v)} is not one of ${list}`));
    }
    case 'pattern': {
      const re = new RegExp(rule.regex, rule.flags);
      return onField(rule.field, (v) => {
        if (typeof v !== 'string') return `expected a string, found ${show(v)}`;
        return re.test(v) ? null : `${show(v)} does not match /${rule.regex}/${rule.flags}`;
      });
    }
    case 'length': {
      const { min, max } = rule;
      return onField(rule.field, (v) => {
        if (typeof v !== 'string') return `expected a string, found ${show(v)}`;
        if (min !== undefined && v.length < min) return `${v.length} characters, fewer than min ${min}`;
        if (max !== undefined && v.length > max) return `${v.length} characters, more than max ${max}`;
        return null;
      });
    }
    case 'freshness':
      return onEventTime((ms, now) =>
        now - ms > rule.max_age
          ? `event time is ${seconds(now - ms)} behind the wall clock (max_age ${seconds(rule.max_age)})`
          : null,
      );
    case 'clock_skew':
      return onEventTime((ms, now) =>
        ms - now > rule.max_ahead
          ? `event time is ${seconds(ms - now)} ahead of the wall clock (max_ahead ${seconds(rule.max_ahead)})`
          : null,
      );
    case 'dedupe': {
      const { key } = rule;
      return (s) => {
        const parts = key.map((f) => f.read(s.value));
        // A record without its whole key cannot be matched; `required` reports missing fields.
        if (parts.includes(null)) return SKIP;
        const table = s.dedupe[dedupeSlot] as DedupeTable;
        // canonicalJson orders object keys; plain JSON is the same text for primitives, and faster.
        const text = parts.some((p) => typeof p === 'object') ? canonicalJson(parts) : JSON.stringify(parts);
        const time = toEpochMs(s.eventTimeRaw) ?? s.record.timestamp;
        if (table.has(text, time)) return `duplicate of key ${text} within ttl ${seconds(table.ttlMs)}`;
        s.pendingKeys.push({ slot: dedupeSlot, key: text, time });
        return null;
      };
    }
    case 'check': {
      const { expr } = rule;
      return (s) => (expr.test(s.scope()) ? null : `${expr.source} is false`);
    }
  }
}

/** Compiles the rules of a validated step config, in order. */
export function compileRules(rules: QualityRuleConfig[]): CompiledRule[] {
  let dedupeSlots = 0;
  return rules.map((rule) => {
    const common = {
      name: rule.name ?? defaultRuleName(rule),
      kind: rule.kind,
      action: rule.action,
      weight: rule.weight,
      when: rule.when,
    };
    if (rule.kind !== 'dedupe') return { ...common, check: checkOf(rule, -1) };
    const slot = dedupeSlots++;
    return {
      ...common,
      dedupeSlot: slot,
      ttlMs: rule.ttl,
      maxKeys: rule.max_keys,
      check: checkOf(rule, slot),
    };
  });
}

export function isDedupeRule(rule: CompiledRule): rule is CompiledDedupeRule {
  return rule.kind === 'dedupe';
}
