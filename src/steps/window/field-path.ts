import { RecordError } from '../../core/errors.js';
import type { FlotillaRecord } from '../../core/record.js';

/** Reads a dotted field path (`host`, `meta.region`, `items.0.id`) from a record value. */
export type FieldReader = (value: unknown) => unknown;

/** A dotted path of non-empty names, as written in YAML. */
export const FIELD_PATH = /^[^.\s]+(?:\.[^.\s]+)*$/;

export function fieldReader(path: string): FieldReader {
  const names = path.split('.');
  if (names.length === 1) {
    const name = names[0] as string;
    return (v) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[name] : undefined);
  }
  return (v) => {
    let at = v;
    for (const name of names) {
      if (at === null || typeof at !== 'object') return undefined;
      at = (at as Record<string, unknown>)[name];
    }
    return at;
  };
}

/** Where a record came from, for error messages. */
export function recordLabel(r: FlotillaRecord): string {
  return `${r.source.topic}/${r.source.partition}@${r.source.offset}`;
}

/** A short description of a field value, for error messages. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing (missing)';
  if (v === null) return 'null';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'object') return Array.isArray(v) ? 'a list' : 'an object';
  return `${typeof v} ${String(v)}`;
}

/**
 * Event time in ms of a record: the record timestamp, or a field holding epoch milliseconds or
 * an ISO-8601 string. Throws a RecordError (reason `window`) naming the field and the record.
 */
export function eventTimeReader(path: string | undefined): (r: FlotillaRecord) => number {
  if (path === undefined) return (r) => r.timestamp;
  const read = fieldReader(path);
  return (r) => {
    const v = read(r.value);
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    if (typeof v === 'string') {
      const ms = Date.parse(v);
      if (!Number.isNaN(ms)) return ms;
    }
    throw new RecordError(
      `event time field '${path}' of record ${recordLabel(r)} is ${describeValue(v)}; expected epoch milliseconds or an ISO-8601 string`,
      'window',
    );
  };
}

/** Group keys a step remembers to avoid rebuilding them (key strings, parsed keys); bounded. */
export const RECENT_KEYS = 10_000;

/** The group key of a record: the JSON list of its group-by field values (missing ones are null). */
export function groupKeyReader(paths: readonly string[]): (value: unknown) => string {
  if (paths.length === 0) return () => '[]';
  const readers = paths.map(fieldReader);
  if (readers.length === 1) {
    const read = readers[0] as FieldReader;
    // Streams repeat their keys: reusing the key string of a recent value saves building and
    // hashing a new one per record. Bounded: emptied when full.
    const recent = new Map<unknown, string>();
    return (value) => {
      const v = read(value);
      let key = recent.get(v);
      if (key === undefined) {
        key = `[${JSON.stringify(v ?? null)}]`;
        if (typeof v === 'string' || typeof v === 'number') {
          if (recent.size >= RECENT_KEYS) recent.clear();
          recent.set(v, key);
        }
      }
      return key;
    };
  }
  return (value) => {
    let key = '[';
    for (let i = 0; i < readers.length; i++) {
      if (i > 0) key += ',';
      key += JSON.stringify((readers[i] as FieldReader)(value) ?? null);
    }
    return `${key}]`;
  };
}
