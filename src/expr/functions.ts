import { ExpressionError, runtimeError, type Site } from './errors.js';
import type { Node } from './parser.js';
import { canonicalJson, equals, type Fn, fnv1a, isPlainObject, typeName } from './runtime.js';

/** A compiled argument: its closure, its node, and its value when known at compile time. */
export interface CompiledArg {
  fn: Fn;
  node: Node;
  constant: boolean;
  value: unknown;
}

export interface Builtin {
  /** Parameter list for docs and arity messages, e.g. `x, digits?`. */
  params: string;
  doc: string;
  min: number;
  max: number;
  /** Result differs between calls with the same arguments (never folded at compile time). */
  impure?: boolean;
  /** Eager implementation of arity up to 3; omitted optional arguments are `undefined`. */
  impl?: (site: Site, a: unknown, b: unknown, c: unknown) => unknown;
  /** Eager implementation taking any number of arguments. */
  variadic?: (site: Site, args: unknown[]) => unknown;
  /** Custom compilation: lazy arguments, compile-time work on literal arguments. */
  compile?: (args: CompiledArg[], site: Site) => Fn;
}

/** Maximum length of a `matches` pattern. */
export const MAX_PATTERN_LENGTH = 200;

const ORDINALS = ['first', 'second', 'third'];

function argError(site: Site, expected: string, got: unknown, index?: number): Error {
  const which = index === undefined ? '' : ` as its ${ORDINALS[index] ?? `#${index + 1}`} argument`;
  return runtimeError(site, `function '${site.name}' expects ${expected}${which} but got ${typeName(got)}`);
}

function numeric(doc: string, f: (x: number) => number): Builtin {
  return {
    params: 'x',
    doc,
    min: 1,
    max: 1,
    impl: (site, x) => {
      if (typeof x === 'number') return f(x);
      if (x === null) return null;
      throw argError(site, 'a number', x);
    },
  };
}

function stringFn(doc: string, f: (s: string) => string): Builtin {
  return {
    params: 's',
    doc,
    min: 1,
    max: 1,
    impl: (site, s) => {
      if (typeof s === 'string') return f(s);
      if (s === null) return null;
      throw argError(site, 'a string', s);
    },
  };
}

function stringPredicate(doc: string, f: (s: string, p: string) => boolean): Builtin {
  return {
    params: 's, prefix',
    doc,
    min: 2,
    max: 2,
    impl: (site, s, p) => {
      if (typeof p !== 'string') throw argError(site, 'a string', p, 1);
      if (typeof s === 'string') return f(s, p);
      if (s === null) return false;
      throw argError(site, 'a string', s, 0);
    },
  };
}

const noNegativeZero = (x: number): number => (x === 0 ? 0 : x);
const roundHalfAwayFromZero = (x: number): number => noNegativeZero(x < 0 ? -Math.round(-x) : Math.round(x));

/** x × 10^digits without binary rounding noise (1.005 stays 1.005, not 1.00499…). */
function shift(x: number, digits: number): number {
  const [mantissa, exponent] = String(x).split('e');
  return Number(`${mantissa}e${Number(exponent ?? 0) + digits}`);
}

function toNumber(x: unknown): number | null {
  switch (typeof x) {
    case 'number':
      return Number.isNaN(x) ? null : x;
    case 'boolean':
      return x ? 1 : 0;
    case 'string': {
      const t = x.trim();
      if (t === '') return null;
      const n = Number(t);
      return Number.isNaN(n) ? null : n;
    }
    default:
      return null;
  }
}

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off', '']);

function extreme(pick: (a: number, b: number) => boolean): (site: Site, args: unknown[]) => unknown {
  return (site, args) => {
    const list = args.length === 1 && Array.isArray(args[0]) ? (args[0] as unknown[]) : args;
    let best: number | null = null;
    for (const v of list) {
      if (v === null || v === undefined) continue;
      if (typeof v !== 'number') throw argError(site, 'numbers (or one array of numbers)', v);
      if (best === null || pick(v, best)) best = v;
    }
    return best;
  };
}

const regexCache = new Map<string, RegExp>();

function makeRegex(pattern: string, flags: string): RegExp | string {
  if (pattern.length > MAX_PATTERN_LENGTH) {
    return `pattern is ${pattern.length} characters long; the limit is ${MAX_PATTERN_LENGTH}`;
  }
  if (!/^[imsu]*$/.test(flags)) return `expected flags made of i, m, s, u but found '${flags}'`;
  try {
    return new RegExp(pattern, flags);
  } catch (e) {
    return `invalid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`;
  }
}

function compileMatches(args: CompiledArg[], site: Site): Fn {
  const [subject, pattern, flagsArg] = args as [CompiledArg, CompiledArg, CompiledArg | undefined];
  const subjectFn = subject.fn;
  let flags = '';
  if (flagsArg) {
    if (!flagsArg.constant || typeof flagsArg.value !== 'string') {
      throw ExpressionError.at(
        "expected the flags of matches() to be a literal string such as 'i'",
        site.source,
        flagsArg.node.start,
      );
    }
    flags = flagsArg.value;
  }
  const test = (s: unknown, re: RegExp): boolean => {
    if (typeof s === 'string') return re.test(s);
    if (s === null) return false;
    throw argError(site, 'a string', s, 0);
  };
  if (pattern.constant) {
    if (typeof pattern.value !== 'string') {
      throw ExpressionError.at(
        `expected the pattern of matches() to be a string but found ${typeName(pattern.value)}`,
        site.source,
        pattern.node.start,
      );
    }
    const re = makeRegex(pattern.value, flags);
    if (typeof re === 'string') throw ExpressionError.at(re, site.source, (flagsArg ?? pattern).node.start);
    return (s) => test(subjectFn(s), re);
  }
  const patternFn = pattern.fn;
  return (s) => {
    const subjectValue = subjectFn(s);
    const p = patternFn(s);
    if (typeof p !== 'string') throw argError(site, 'a string pattern', p, 1);
    const cacheKey = `${flags}/${p}`;
    let re = regexCache.get(cacheKey);
    if (!re) {
      const made = makeRegex(p, flags);
      if (typeof made === 'string') throw runtimeError(site, `function 'matches': ${made}`);
      if (regexCache.size >= 256) regexCache.clear();
      regexCache.set(cacheKey, made);
      re = made;
    }
    return test(subjectValue, re);
  };
}

function conditionError(site: Site, c: unknown): Error {
  return runtimeError(site, `function 'if' expects a boolean condition but got ${typeName(c)}`);
}

/** The whitelist of callable functions. A Map, so no name can resolve to an inherited property. */
export const BUILTINS: ReadonlyMap<string, Builtin> = new Map<string, Builtin>([
  ['lower', stringFn('lower-case', (s) => s.toLowerCase())],
  ['upper', stringFn('upper-case', (s) => s.toUpperCase())],
  ['trim', stringFn('strip leading and trailing whitespace', (s) => s.trim())],
  [
    'len',
    {
      params: 'x',
      doc: 'length of a string (UTF-16 units) or array, number of keys of an object',
      min: 1,
      max: 1,
      impl: (site, x) => {
        if (typeof x === 'string' || Array.isArray(x)) return x.length;
        if (x === null) return null;
        if (isPlainObject(x)) return Object.keys(x).length;
        throw argError(site, 'a string, array or object', x);
      },
    },
  ],
  ['abs', numeric('absolute value', Math.abs)],
  [
    'round',
    {
      params: 'x, digits?',
      doc: 'round half away from zero, to `digits` decimals (default 0, may be negative)',
      min: 1,
      max: 2,
      impl: (site, x, digits) => {
        if (x === null) return null;
        if (typeof x !== 'number') throw argError(site, 'a number', x, 0);
        if (digits === undefined || digits === 0) return roundHalfAwayFromZero(x);
        if (typeof digits !== 'number' || !Number.isInteger(digits) || digits < -15 || digits > 15) {
          throw argError(site, 'an integer from -15 to 15', digits, 1);
        }
        if (!Number.isFinite(x)) return x;
        return noNegativeZero(shift(roundHalfAwayFromZero(shift(x, digits)), -digits));
      },
    },
  ],
  ['floor', numeric('largest integer ≤ x', (x) => noNegativeZero(Math.floor(x)))],
  ['ceil', numeric('smallest integer ≥ x', (x) => noNegativeZero(Math.ceil(x)))],
  [
    'min',
    {
      params: 'a, b, ...',
      doc: 'smallest number; nulls are skipped; also min(array)',
      min: 1,
      max: Infinity,
      variadic: extreme((a, b) => a < b),
    },
  ],
  [
    'max',
    {
      params: 'a, b, ...',
      doc: 'largest number; nulls are skipped; also max(array)',
      min: 1,
      max: Infinity,
      variadic: extreme((a, b) => a > b),
    },
  ],
  ['sqrt', numeric('square root (NaN below 0)', Math.sqrt)],
  ['log', numeric('natural logarithm', Math.log)],
  ['exp', numeric('e to the power x', Math.exp)],
  [
    'pow',
    {
      params: 'x, y',
      doc: 'x to the power y',
      min: 2,
      max: 2,
      impl: (site, x, y) => {
        if (x === null || y === null) return null;
        if (typeof x !== 'number') throw argError(site, 'a number', x, 0);
        if (typeof y !== 'number') throw argError(site, 'a number', y, 1);
        return x ** y;
      },
    },
  ],
  [
    'now',
    {
      params: '',
      doc: 'current time, ms since the epoch',
      min: 0,
      max: 0,
      impure: true,
      impl: () => Date.now(),
    },
  ],
  [
    'number',
    {
      params: 'x',
      doc: "parse to a number (JS Number() syntax, trimmed; booleans 1/0); null if it isn't one",
      min: 1,
      max: 1,
      impl: (_site, x) => toNumber(x),
    },
  ],
  [
    'int',
    {
      params: 'x',
      doc: 'number(x) truncated toward zero; null if not a number',
      min: 1,
      max: 1,
      impl: (_site, x) => {
        const n = toNumber(x);
        return n === null ? null : noNegativeZero(Math.trunc(n));
      },
    },
  ],
  [
    'string',
    {
      params: 'x',
      doc: 'text form: strings as-is, numbers/booleans via String(), arrays/objects as JSON; null stays null',
      min: 1,
      max: 1,
      impl: (site, x) => {
        switch (typeof x) {
          case 'string':
            return x;
          case 'number':
          case 'boolean':
          case 'bigint':
            return String(x);
        }
        if (x === null) return null;
        if (Array.isArray(x) || isPlainObject(x)) {
          try {
            return JSON.stringify(x);
          } catch (e) {
            throw runtimeError(
              site,
              `function 'string' cannot serialize its argument: ${(e as Error).message}`,
            );
          }
        }
        throw argError(site, 'a string, number, boolean, array or object', x);
      },
    },
  ],
  [
    'bool',
    {
      params: 'x',
      doc: "null→false; numbers: ≠0; strings: 'true','1','yes','on' / 'false','0','no','off','' (else null); arrays/objects: non-empty",
      min: 1,
      max: 1,
      impl: (_site, x) => {
        if (x === null) return false;
        switch (typeof x) {
          case 'boolean':
            return x;
          case 'number':
            return x !== 0 && !Number.isNaN(x);
          case 'string': {
            const t = x.trim().toLowerCase();
            return TRUE_WORDS.has(t) ? true : FALSE_WORDS.has(t) ? false : null;
          }
        }
        if (Array.isArray(x)) return x.length > 0;
        if (isPlainObject(x)) return Object.keys(x).length > 0;
        return true;
      },
    },
  ],
  ['startsWith', stringPredicate('s starts with prefix (false when s is null)', (s, p) => s.startsWith(p))],
  [
    'endsWith',
    {
      ...stringPredicate('s ends with suffix (false when s is null)', (s, p) => s.endsWith(p)),
      params: 's, suffix',
    },
  ],
  [
    'contains',
    {
      params: 'haystack, needle',
      doc: 'substring of a string, or element of an array (by ==); false when haystack is null',
      min: 2,
      max: 2,
      impl: (site, h, n) => {
        if (typeof h === 'string') {
          if (typeof n !== 'string') throw argError(site, 'a string (to search a string)', n, 1);
          return h.includes(n);
        }
        if (Array.isArray(h)) {
          for (const el of h) if (equals(el, n)) return true;
          return false;
        }
        if (h === null) return false;
        throw argError(site, 'a string or array', h, 0);
      },
    },
  ],
  [
    'matches',
    {
      params: 's, pattern, flags?',
      doc: `JS regular expression test (unanchored; flags from 'imsu'); a literal pattern is compiled once; max ${MAX_PATTERN_LENGTH} chars; false when s is null`,
      min: 2,
      max: 3,
      compile: compileMatches,
    },
  ],
  [
    'coalesce',
    {
      params: 'a, b, ...',
      doc: 'first argument that is not null (later ones are not evaluated)',
      min: 1,
      max: Infinity,
      compile: (args) => {
        const fns = args.map((a) => a.fn);
        if (fns.length === 2) {
          const [a, b] = fns as [Fn, Fn];
          return (s) => {
            const v = a(s);
            return v === null ? b(s) : v;
          };
        }
        return (s) => {
          for (const f of fns) {
            const v = f(s);
            if (v !== null) return v;
          }
          return null;
        };
      },
    },
  ],
  [
    'if',
    {
      params: 'cond, then, else',
      doc: 'like cond ? then : else (only the chosen branch is evaluated)',
      min: 3,
      max: 3,
      compile: (args, site) => {
        const [c, a, b] = args.map((x) => x.fn) as [Fn, Fn, Fn];
        return (s) => {
          const v = c(s);
          if (v === true) return a(s);
          if (v === false || v === null) return b(s);
          throw conditionError(site, v);
        };
      },
    },
  ],
  [
    'keys',
    {
      params: 'obj',
      doc: 'own keys of an object, in insertion order',
      min: 1,
      max: 1,
      impl: (site, x) => {
        if (isPlainObject(x)) return Object.keys(x);
        if (x === null) return null;
        throw argError(site, 'an object', x);
      },
    },
  ],
  [
    'hash',
    {
      params: 'x',
      doc: '32-bit FNV-1a (unsigned) of the UTF-8 of x: strings as-is, anything else as JSON with sorted keys',
      min: 1,
      max: 1,
      impl: (site, x) => {
        if (typeof x === 'string') return fnv1a(x);
        try {
          return fnv1a(canonicalJson(x));
        } catch (e) {
          throw runtimeError(site, `function 'hash' cannot serialize its argument: ${(e as Error).message}`);
        }
      },
    },
  ],
]);
