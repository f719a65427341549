import { FORBIDDEN_KEYS } from '../../expr/parser.js';
import { readDynamic } from '../../expr/runtime.js';
import { HyperLogLog } from '../../sketch/hyperloglog.js';
import type { FieldPath } from './fields.js';

export const profiledTypes = ['string', 'number', 'boolean', 'object', 'array'] as const;
export type ProfiledType = (typeof profiledTypes)[number];

/** Running statistics of one field, as a plain object. */
export interface FieldProfile {
  /** Records looked at since the field was first profiled. */
  count: number;
  /** Share of those records where the field was missing or null. */
  null_rate: number;
  /** Share of each type among the non-null values (types never seen are left out). */
  types: Partial<Record<ProfiledType, number>>;
  /** Over numeric values; null when there were none. */
  min: number | null;
  max: number | null;
  mean: number | null;
  /** HyperLogLog estimate of distinct non-null primitive values (≈1.6% standard error). */
  distinct: number;
}

export interface QualityProfile {
  /** Records profiled (decoded object values), whether they passed or not. */
  records: number;
  fields: Record<string, FieldProfile>;
}

function typeOf(v: unknown): ProfiledType {
  if (Array.isArray(v)) return 'array';
  const t = typeof v;
  return t === 'string' || t === 'number' || t === 'boolean' ? t : 'object';
}

class FieldStats {
  private count = 0;
  private nulls = 0;
  private readonly types: Record<ProfiledType, number> = {
    string: 0,
    number: 0,
    boolean: 0,
    object: 0,
    array: 0,
  };
  private min = Number.POSITIVE_INFINITY;
  private max = Number.NEGATIVE_INFINITY;
  private sum = 0;
  /** Numbers in min/max/sum: NaN (e.g. from a code step) is counted as a number but would poison them. */
  private ordered = 0;
  // Precision 12: 1.6% standard error in at most 4 KiB per field (sparse while small).
  private readonly distinct = new HyperLogLog(12);

  constructor(readonly read: (value: unknown) => unknown) {}

  observe(v: unknown): void {
    this.count++;
    if (v === null || v === undefined) {
      this.nulls++;
      return;
    }
    const type = typeOf(v);
    this.types[type]++;
    if (type === 'number') {
      const n = v as number;
      this.distinct.add(`n${n}`);
      if (Number.isNaN(n)) return;
      if (n < this.min) this.min = n;
      if (n > this.max) this.max = n;
      this.sum += n;
      this.ordered++;
    } else if (type === 'string') this.distinct.add(`s${v as string}`);
    else if (type === 'boolean') this.distinct.add(`b${v as boolean}`);
  }

  profile(): FieldProfile {
    const present = this.count - this.nulls;
    const types: Partial<Record<ProfiledType, number>> = {};
    for (const t of profiledTypes) if (this.types[t] > 0) types[t] = this.types[t] / present;
    const numbers = this.ordered;
    return {
      count: this.count,
      null_rate: this.count === 0 ? 0 : this.nulls / this.count,
      types,
      min: numbers > 0 ? this.min : null,
      max: numbers > 0 ? this.max : null,
      mean: numbers > 0 ? this.sum / numbers : null,
      distinct: present === 0 ? 0 : this.distinct.estimate(),
    };
  }
}

/**
 * Profiles the listed fields, or else the first `maxFields` top-level fields seen. Memory is
 * bounded: a few numbers and one sketch of at most 4 KiB per field.
 */
export class Profiler {
  private records = 0;
  private readonly fields = new Map<string, FieldStats>();
  private readonly discover: boolean;

  constructor(
    fields: FieldPath[] | undefined,
    private readonly maxFields: number,
  ) {
    this.discover = fields === undefined;
    for (const f of fields ?? []) this.fields.set(f.text, new FieldStats(f.read));
  }

  observe(value: Record<string, unknown>): void {
    this.records++;
    if (this.discover && this.fields.size < this.maxFields) {
      for (const key of Object.keys(value)) {
        if (this.fields.size >= this.maxFields) break;
        // A top-level key is read as is: a '.' in it is not a path.
        if (!this.fields.has(key) && !FORBIDDEN_KEYS.has(key))
          this.fields.set(key, new FieldStats((v) => readDynamic(v, key)));
      }
    }
    for (const stats of this.fields.values()) stats.observe(stats.read(value));
  }

  profile(): QualityProfile {
    const fields: Record<string, FieldProfile> = {};
    for (const [name, stats] of this.fields) fields[name] = stats.profile();
    return { records: this.records, fields };
  }
}

/** A number for people: integers as they are, others to 3 decimals. */
const readable = (x: number) => String(Number.isInteger(x) ? x : Number(x.toFixed(3)));
const percent = (share: number) => `${Number((share * 100).toFixed(1))}%`;

/** A profile as an aligned table, one line per field (`flotilla test --profile`). */
export function formatProfile(profile: QualityProfile): string {
  const rows = [['field', 'null', 'types', 'min', 'max', 'mean', 'distinct']];
  for (const [name, f] of Object.entries(profile.fields)) {
    const types = Object.entries(f.types)
      .sort(([, a], [, b]) => (b as number) - (a as number))
      .map(([type, share]) => `${type} ${percent(share as number)}`);
    const stat = (x: number | null) => (x === null ? '-' : readable(x));
    rows.push([
      name,
      percent(f.null_rate),
      types.join(', ') || '-',
      stat(f.min),
      stat(f.max),
      stat(f.mean),
      `~${Math.round(f.distinct)}`,
    ]);
  }
  const widths = (rows[0] as string[]).map((_, c) => Math.max(...rows.map((r) => (r[c] as string).length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => cell.padEnd(widths[c] as number))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
