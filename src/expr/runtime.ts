import { FORBIDDEN_KEYS } from './parser.js';

/** What an expression is evaluated against: the record's fields by variable name. */
export type Scope = Record<string, unknown>;
/** A compiled (sub-)expression. Never returns `undefined`: missing values are `null`. */
export type Fn = (scope: Scope) => unknown;

const OBJECT_PROTOTYPE = Object.prototype;

/** Objects whose properties expressions may read: `{}` literals, JSON/Avro decodes, null-prototype maps. */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === OBJECT_PROTOTYPE || proto === null;
}

/** The type name used in error messages. */
export function typeName(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  switch (typeof v) {
    case 'boolean':
    case 'number':
    case 'string':
    case 'bigint':
    case 'function':
      return typeof v;
    case 'object':
      if (Array.isArray(v)) return 'array';
      if (isPlainObject(v)) return 'object';
      if (v instanceof Uint8Array) return 'bytes';
      return `object (${(v as { constructor?: { name?: string } }).constructor?.name ?? 'unknown'})`;
    default:
      return typeof v;
  }
}

/** `base.key`: an own property of a plain object, else `null`. Never throws. */
export function readKey(base: unknown, key: string): unknown {
  if (typeof base !== 'object' || base === null || Array.isArray(base)) return null;
  const proto = Object.getPrototypeOf(base);
  if ((proto !== OBJECT_PROTOTYPE && proto !== null) || !Object.hasOwn(base, key)) return null;
  const v = (base as Record<string, unknown>)[key];
  return v === undefined ? null : v;
}

/** `base[n]`: an array element or string character by non-negative integer index, else `null`. */
export function readIndex(base: unknown, n: number): unknown {
  if (Array.isArray(base)) {
    if (!Number.isInteger(n) || n < 0 || n >= base.length) return null;
    const v: unknown = base[n];
    return v === undefined ? null : v;
  }
  if (typeof base === 'string') {
    return Number.isInteger(n) && n >= 0 && n < base.length ? base.charAt(n) : null;
  }
  // Plain objects with numeric keys: `counts[3]` reads `counts['3']`.
  return Number.isInteger(n) ? readKey(base, String(n)) : null;
}

/** `base[k]` with a key computed at runtime. Keys that could reach a prototype give `null`. */
export function readDynamic(base: unknown, k: unknown): unknown {
  if (typeof k === 'number') return readIndex(base, k);
  if (typeof k === 'string') return FORBIDDEN_KEYS.has(k) ? null : readKey(base, k);
  return null;
}

/** `==`: strict for primitives (no coercion), structural for arrays and plain objects. */
export function equals(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === undefined) return b === null;
  if (b === undefined) return a === null;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!equals(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b) || !isPlainObject(a) || !isPlainObject(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const k of keys) if (!Object.hasOwn(b, k) || !equals(a[k], b[k])) return false;
  return true;
}

/** JSON with object keys sorted, so equal values give equal text whatever their key order. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_key, value: unknown) => {
    if (!isPlainObject(value)) return value;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) sorted[k] = value[k];
    return sorted;
  });
}

/** 32-bit FNV-1a over the UTF-8 bytes of `s`, as an unsigned integer. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const lo = s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      }
    }
    // Lone surrogates encode as U+FFFD, like TextEncoder.
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), 0x01000193);
    } else if (c < 0x10000) {
      h = Math.imul(h ^ (0xe0 | (c >> 12)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193);
    } else {
      h = Math.imul(h ^ (0xf0 | (c >> 18)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193);
    }
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), 0x01000193);
  }
  return h >>> 0;
}
