/** Comparison of actual and expected fixture values: field by field, ignoring object key order. */

/** One field that differs; `undefined` on a side means the field is missing there. */
export interface FieldDiff {
  path: string;
  expected: unknown;
  actual: unknown;
}

/**
 * A value as a fixture would write it: plain objects, arrays and JSON scalars. Bytes become
 * UTF-8 text when they are valid UTF-8, else `{ hex }`; bigints become strings.
 */
export function toPlain(v: unknown): unknown {
  if (v === undefined || v === null) return null;
  if (Buffer.isBuffer(v)) {
    const text = v.toString('utf8');
    return Buffer.from(text, 'utf8').equals(v) ? text : { hex: v.toString('hex') };
  }
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(toPlain);
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = toPlain(x);
    return out;
  }
  return v;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key)
    ? path
      ? `${path}.${key}`
      : key
    : `${path}[${JSON.stringify(key)}]`;
}

/** Every field where `actual` differs from `expected` (both plain values), with its path. */
export function diffValues(expected: unknown, actual: unknown, path = ''): FieldDiff[] {
  if (Array.isArray(expected) && Array.isArray(actual)) {
    const out: FieldDiff[] = [];
    for (let i = 0; i < Math.max(expected.length, actual.length); i++)
      out.push(...diffValues(expected[i], actual[i], join(path, i)));
    return out;
  }
  if (isObject(expected) && isObject(actual)) {
    const out: FieldDiff[] = [];
    for (const k of new Set([...Object.keys(expected), ...Object.keys(actual)]))
      out.push(...diffValues(expected[k], actual[k], join(path, k)));
    return out;
  }
  return Object.is(expected, actual) || (expected === 0 && actual === 0)
    ? []
    : [{ path: path || '(value)', expected, actual }];
}

/** A value in a diff line: YAML-like scalars, compact JSON for the rest, `(missing)` for none. */
export function show(v: unknown): string {
  if (v === undefined) return '(missing)';
  if (typeof v === 'string') return `'${v}'`;
  const text = JSON.stringify(v);
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}
