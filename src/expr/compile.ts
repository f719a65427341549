import { didYouMean } from '../util/suggest.js';
import { ExpressionError, ExpressionRuntimeError, runtimeError, type Site } from './errors.js';
import { BUILTINS, type CompiledArg } from './functions.js';
import { FORBIDDEN_KEYS, KEYWORDS, MAX_DEPTH, type Node, parse } from './parser.js';
import {
  equals,
  type Fn,
  isPlainObject,
  readDynamic,
  readIndex,
  readKey,
  type Scope,
  typeName,
} from './runtime.js';

export const DEFAULT_VARIABLES: readonly string[] = [
  'value',
  'key',
  'timestamp',
  'headers',
  'topic',
  'partition',
  'offset',
];

export interface CompileOptions {
  /** Names an expression may refer to; `evaluate` reads them from its scope. */
  variables?: readonly string[];
}

/** Static type of a non-null result, when known at compile time. */
export type ResultType = 'boolean' | 'number' | 'string' | 'array' | 'object' | 'null' | 'unknown';

export interface CompiledExpression {
  readonly source: string;
  /** Static type of the result when not null (`'unknown'` when it depends on the data). */
  readonly resultType: ResultType;
  /**
   * Evaluates against one record. Missing variables and members are `null`, never `undefined`.
   * Throws `ExpressionRuntimeError` on a type error.
   */
  evaluate(scope: Scope): unknown;
  /**
   * For filters: `true` → true; `false` or `null` → false; anything else throws
   * `ExpressionRuntimeError`.
   */
  test(scope: Scope): boolean;
}

interface Compiled extends CompiledArg {
  type: ResultType;
}

const EMPTY_SCOPE: Scope = Object.freeze(Object.create(null) as Scope);
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

const FUNCTION_TYPES: Record<string, ResultType> = {
  lower: 'string',
  upper: 'string',
  trim: 'string',
  string: 'string',
  len: 'number',
  abs: 'number',
  round: 'number',
  floor: 'number',
  ceil: 'number',
  min: 'number',
  max: 'number',
  sqrt: 'number',
  log: 'number',
  exp: 'number',
  pow: 'number',
  now: 'number',
  number: 'number',
  int: 'number',
  hash: 'number',
  bool: 'boolean',
  startsWith: 'boolean',
  endsWith: 'boolean',
  contains: 'boolean',
  matches: 'boolean',
  keys: 'array',
};

/**
 * Compiles `source` once into a tree of closures. Throws `ExpressionError` (with the column and a
 * caret) on a syntax error, an unknown variable or function, a wrong number of arguments, a
 * forbidden member name or an invalid literal regular expression.
 */
export function compileExpression(source: string, options: CompileOptions = {}): CompiledExpression {
  const variables = options.variables ?? DEFAULT_VARIABLES;
  for (const v of variables) {
    if (!IDENTIFIER.test(v) || KEYWORDS.has(v) || FORBIDDEN_KEYS.has(v)) {
      throw new TypeError(`compileExpression: '${v}' cannot be a variable name`);
    }
  }
  const root = new Compiler(source, new Set(variables)).compile(parse(source), 0);
  const evaluate = root.fn;
  const test = (scope: Scope): boolean => {
    const v = evaluate(scope);
    if (v === true) return true;
    if (v === false || v === null) return false;
    throw new ExpressionRuntimeError(
      `expected the condition to be a boolean but it was ${typeName(v)}`,
      source,
      1,
    );
  };
  return { source, resultType: root.type, evaluate, test };
}

function isPrimitive(v: unknown): v is null | boolean | number | string {
  return v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string';
}

function typeOfValue(v: unknown): ResultType {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  const t = typeof v;
  return t === 'boolean' || t === 'number' || t === 'string' ? t : t === 'object' ? 'object' : 'unknown';
}

function sameType(a: ResultType, b: ResultType): ResultType {
  if (a === b) return a;
  if (a === 'null') return b;
  if (b === 'null') return a;
  return 'unknown';
}

class Compiler {
  constructor(
    private readonly source: string,
    private readonly variables: ReadonlySet<string>,
  ) {}

  private error(message: string, offset: number): ExpressionError {
    return ExpressionError.at(message, this.source, offset);
  }

  private site(name: string, node: Node): Site {
    return { name, source: this.source, offset: node.pos };
  }

  /**
   * Wraps a closure; when every input is known at compile time and evaluating it succeeds with a
   * primitive, the result is folded into a constant. (Arrays and objects are never shared between
   * evaluations, and a failing constant sub-expression fails at runtime only if it is reached.)
   */
  private make(node: Node, fn: Fn, type: ResultType, inputs: Compiled[], pure = true): Compiled {
    if (pure && inputs.every((c) => c.constant)) {
      try {
        const value = fn(EMPTY_SCOPE);
        if (isPrimitive(value)) return this.constant(node, value);
      } catch {
        // Not folded: reported when (and if) evaluated.
      }
    }
    return { fn, node, constant: false, value: undefined, type };
  }

  private constant(node: Node, value: null | boolean | number | string): Compiled {
    return { fn: () => value, node, constant: true, value, type: typeOfValue(value) };
  }

  compile(node: Node, depth: number): Compiled {
    if (depth > MAX_DEPTH) throw this.error(`expression nested more than ${MAX_DEPTH} levels deep`, node.pos);
    const d = depth + 1;
    switch (node.kind) {
      case 'literal':
        return this.constant(node, node.value);
      case 'identifier':
        return this.identifier(node.name, node);
      case 'array': {
        const items = node.items.map((n) => this.compile(n, d));
        const fns = items.map((c) => c.fn);
        const n = fns.length;
        const fn: Fn = (s) => {
          const out = new Array<unknown>(n);
          for (let i = 0; i < n; i++) out[i] = (fns[i] as Fn)(s);
          return out;
        };
        return { fn, node, constant: false, value: undefined, type: 'array' };
      }
      case 'object': {
        const keys = node.entries.map((e) => e.key);
        const fns = node.entries.map((e) => this.compile(e.value, d).fn);
        const n = keys.length;
        // Keys are literal and never `__proto__`/`constructor`/`prototype` (the parser rejects
        // them), so plain assignment only ever creates own data properties.
        const fn: Fn = (s) => {
          const out: Record<string, unknown> = {};
          for (let i = 0; i < n; i++) out[keys[i] as string] = (fns[i] as Fn)(s);
          return out;
        };
        return { fn, node, constant: false, value: undefined, type: 'object' };
      }
      case 'member':
        return this.member(node, d);
      case 'call':
        return this.call(node, d);
      case 'unary':
        return this.unary(node, d);
      case 'binary':
        return this.binary(node, d);
      case 'conditional': {
        const test = this.compile(node.test, d);
        const a = this.compile(node.consequent, d);
        const b = this.compile(node.alternate, d);
        const [t, af, bf] = [test.fn, a.fn, b.fn];
        const site = this.site('?:', node);
        const fn: Fn = (s) => {
          const c = t(s);
          if (c === true) return af(s);
          if (c === false || c === null) return bf(s);
          throw runtimeError(site, `operator '?:' expects a boolean condition but got ${typeName(c)}`);
        };
        return this.make(node, fn, sameType(a.type, b.type), [test, a, b]);
      }
    }
  }

  private identifier(name: string, node: Node): Compiled {
    if (!this.variables.has(name)) {
      if (BUILTINS.has(name)) {
        throw this.error(
          `expected a variable but found function '${name}' (call it: ${name}(...))`,
          node.pos,
        );
      }
      const known = [...this.variables];
      throw this.error(
        `unknown identifier '${name}'${didYouMean(name, known)}; expected one of: ${known.join(', ')}`,
        node.pos,
      );
    }
    // A plain `scope[name]` unless the name also exists on Object.prototype (e.g. `toString`).
    const fn: Fn =
      name in Object.prototype
        ? (s) => (Object.hasOwn(s, name) ? (s[name] ?? null) : null)
        : (s) => {
            const v = s[name];
            return v === undefined ? null : v;
          };
    return { fn, node, constant: false, value: undefined, type: 'unknown' };
  }

  private member(node: Extract<Node, { kind: 'member' }>, d: number): Compiled {
    const object = this.compile(node.object, d);
    const obj = object.fn;
    if (typeof node.property === 'string') {
      const key = node.property;
      return this.make(node, (s) => readKey(obj(s), key), 'unknown', [object]);
    }
    const property = this.compile(node.property, d);
    if (property.constant) {
      const k = property.value;
      if (typeof k === 'string') {
        if (FORBIDDEN_KEYS.has(k)) {
          throw this.error(
            `expected a property name but found forbidden property '${k}'`,
            node.property.start,
          );
        }
        return this.make(node, (s) => readKey(obj(s), k), 'unknown', [object]);
      }
      if (typeof k === 'number') return this.make(node, (s) => readIndex(obj(s), k), 'unknown', [object]);
      throw this.error(
        `expected a string or number inside [ ] but found ${typeName(k)}`,
        node.property.start,
      );
    }
    const prop = property.fn;
    return this.make(node, (s) => readDynamic(obj(s), prop(s)), 'unknown', [object, property]);
  }

  private call(node: Extract<Node, { kind: 'call' }>, d: number): Compiled {
    const def = BUILTINS.get(node.name);
    if (!def) {
      if (this.variables.has(node.name)) {
        throw this.error(
          `expected a function but found variable '${node.name}', which cannot be called`,
          node.pos,
        );
      }
      throw this.error(`unknown function '${node.name}'${didYouMean(node.name, BUILTINS.keys())}`, node.pos);
    }
    const n = node.args.length;
    if (n < def.min || n > def.max) {
      const expected =
        def.min === def.max
          ? `${def.min} argument${def.min === 1 ? '' : 's'}`
          : def.max === Infinity
            ? `at least ${def.min} argument${def.min === 1 ? '' : 's'}`
            : `${def.min}${def.max === def.min + 1 ? ' or ' : ' to '}${def.max} arguments`;
      throw this.error(`expected ${expected} for ${node.name}(${def.params}) but found ${n}`, node.pos);
    }
    const args = node.args.map((a) => this.compile(a, d));
    const site = this.site(node.name, node);
    const type = FUNCTION_TYPES[node.name] ?? 'unknown';
    const fns = args.map((a) => a.fn);
    let fn: Fn;
    if (def.compile) {
      fn = def.compile(args, site);
    } else if (def.variadic) {
      const variadic = def.variadic;
      fn = (s) => {
        const values = new Array<unknown>(n);
        for (let i = 0; i < n; i++) values[i] = (fns[i] as Fn)(s);
        return variadic(site, values);
      };
    } else {
      const impl = def.impl as NonNullable<typeof def.impl>;
      const [a, b, c] = fns;
      if (n === 0) fn = () => impl(site, undefined, undefined, undefined);
      else if (n === 1 && a) fn = (s) => impl(site, a(s), undefined, undefined);
      else if (n === 2 && a && b) fn = (s) => impl(site, a(s), b(s), undefined);
      else if (a && b && c) fn = (s) => impl(site, a(s), b(s), c(s));
      else throw new Error(`unreachable: arity ${n} for ${node.name}`);
    }
    return this.make(node, fn, type, args, !def.impure);
  }

  private unary(node: Extract<Node, { kind: 'unary' }>, d: number): Compiled {
    const operand = this.compile(node.operand, d);
    const f = operand.fn;
    const site = this.site(node.op, node);
    if (node.op === '-') {
      const fn: Fn = (s) => {
        const v = f(s);
        if (typeof v === 'number') return -v;
        throw runtimeError(site, `operator '-' expects a number but got ${typeName(v)}`);
      };
      return this.make(node, fn, 'number', [operand]);
    }
    const fn: Fn = (s) => {
      const v = f(s);
      if (v === true) return false;
      if (v === false || v === null) return true;
      throw runtimeError(site, `operator '!' expects a boolean but got ${typeName(v)}`);
    };
    return this.make(node, fn, 'boolean', [operand]);
  }

  private binary(node: Extract<Node, { kind: 'binary' }>, d: number): Compiled {
    const left = this.compile(node.left, d);
    const right = this.compile(node.right, d);
    const L = left.fn;
    const R = right.fn;
    const site = this.site(node.op, node);
    const inputs = [left, right];
    const numeric = (fn: Fn): Compiled => this.make(node, fn, 'number', inputs);
    const boolean = (fn: Fn): Compiled => this.make(node, fn, 'boolean', inputs);
    switch (node.op) {
      case '+': {
        const fn: Fn = (s) => {
          const l = L(s);
          const r = R(s);
          if (typeof l === 'number' && typeof r === 'number') return l + r;
          if (typeof l === 'string' && typeof r === 'string') return l + r;
          throw plusError(site, l, r);
        };
        const type =
          left.type === 'number' && right.type === 'number'
            ? 'number'
            : left.type === 'string' || right.type === 'string'
              ? 'string'
              : 'unknown';
        return this.make(node, fn, type, inputs);
      }
      case '-':
        return numeric((s) => {
          const l = L(s);
          const r = R(s);
          if (typeof l === 'number' && typeof r === 'number') return l - r;
          throw operandError(site, 'two numbers', l, r);
        });
      case '*':
        return numeric((s) => {
          const l = L(s);
          const r = R(s);
          if (typeof l === 'number' && typeof r === 'number') return l * r;
          throw operandError(site, 'two numbers', l, r);
        });
      case '/':
        return numeric((s) => {
          const l = L(s);
          const r = R(s);
          if (typeof l === 'number' && typeof r === 'number' && r !== 0) return l / r;
          throw r === 0
            ? runtimeError(site, "operator '/' divides by zero")
            : operandError(site, 'two numbers', l, r);
        });
      case '%':
        return numeric((s) => {
          const l = L(s);
          const r = R(s);
          if (typeof l === 'number' && typeof r === 'number' && r !== 0) return l % r;
          throw r === 0
            ? runtimeError(site, "operator '%' divides by zero")
            : operandError(site, 'two numbers', l, r);
        });
      case '<':
        return boolean((s) => {
          const l = L(s);
          const r = R(s);
          return typeof l === 'number' && typeof r === 'number' ? l < r : compare(site, l, r);
        });
      case '<=':
        return boolean((s) => {
          const l = L(s);
          const r = R(s);
          return typeof l === 'number' && typeof r === 'number' ? l <= r : compare(site, l, r);
        });
      case '>':
        return boolean((s) => {
          const l = L(s);
          const r = R(s);
          return typeof l === 'number' && typeof r === 'number' ? l > r : compare(site, l, r);
        });
      case '>=':
        return boolean((s) => {
          const l = L(s);
          const r = R(s);
          return typeof l === 'number' && typeof r === 'number' ? l >= r : compare(site, l, r);
        });
      case '==':
      case '!=': {
        const negate = node.op === '!=';
        // Against a primitive constant, `==` is `===` (a record value that is an array or object
        // is never equal to a primitive).
        const constant = right.constant ? right : left.constant ? left : undefined;
        if (constant) {
          const c = constant.value;
          const other = constant === right ? L : R;
          if (c === null) return boolean(negate ? (s) => other(s) !== null : (s) => other(s) === null);
          return boolean(negate ? (s) => other(s) !== c : (s) => other(s) === c);
        }
        return boolean(negate ? (s) => !equals(L(s), R(s)) : (s) => equals(L(s), R(s)));
      }
      case 'in':
        return boolean(this.inOperator(node.right, L, R, site));
      case '&&':
        return boolean((s) => {
          const l = L(s);
          if (l === true) return truth(site, R(s));
          if (l === false || l === null) return false;
          throw logicalError(site, l);
        });
      case '||':
        return boolean((s) => {
          const l = L(s);
          if (l === false || l === null) return truth(site, R(s));
          if (l === true) return true;
          throw logicalError(site, l);
        });
      case '??':
        return this.make(
          node,
          (s) => {
            const l = L(s);
            return l === null ? R(s) : l;
          },
          left.type === 'null' ? right.type : sameType(left.type, right.type),
          inputs,
        );
    }
  }

  private inOperator(rightNode: Node, L: Fn, R: Fn, site: Site): Fn {
    // `x in ['a', 'b', 3]`: a Set lookup (SameValueZero is `===` for the primitives literals make).
    if (rightNode.kind === 'array' && rightNode.items.every((i) => i.kind === 'literal')) {
      const set = new Set<unknown>(rightNode.items.map((i) => (i.kind === 'literal' ? i.value : undefined)));
      return (s) => set.has(L(s));
    }
    return (s) => membership(site, L(s), R(s));
  }
}

function truth(site: Site, v: unknown): boolean {
  if (v === true) return true;
  if (v === false || v === null) return false;
  throw logicalError(site, v);
}

function logicalError(site: Site, v: unknown): ExpressionRuntimeError {
  return runtimeError(site, `operator '${site.name}' expects boolean operands but got ${typeName(v)}`);
}

function operandError(site: Site, expected: string, l: unknown, r: unknown): ExpressionRuntimeError {
  return runtimeError(
    site,
    `operator '${site.name}' expects ${expected} but got ${typeName(l)} and ${typeName(r)}`,
  );
}

function plusError(site: Site, l: unknown, r: unknown): ExpressionRuntimeError {
  const hint = typeof l === 'string' || typeof r === 'string' ? ' (use string(x) to concatenate)' : '';
  return runtimeError(
    site,
    `operator '+' expects two numbers or two strings but got ${typeName(l)} and ${typeName(r)}${hint}`,
  );
}

/** The non-number paths of < <= > >=: two strings compare; with a null operand the result is false. */
function compare(site: Site, l: unknown, r: unknown): boolean {
  if (typeof l === 'string' && typeof r === 'string') {
    switch (site.name) {
      case '<':
        return l < r;
      case '<=':
        return l <= r;
      case '>':
        return l > r;
      default:
        return l >= r;
    }
  }
  if (l === null || r === null) return false;
  throw operandError(site, 'two numbers or two strings', l, r);
}

function membership(site: Site, needle: unknown, haystack: unknown): boolean {
  if (Array.isArray(haystack)) {
    for (const el of haystack) if (equals(el, needle)) return true;
    return false;
  }
  if (haystack === null) return false;
  if (typeof haystack === 'string') {
    if (typeof needle === 'string') return haystack.includes(needle);
    throw runtimeError(
      site,
      `operator 'in' expects a string on the left of a string but got ${typeName(needle)} and string`,
    );
  }
  if (isPlainObject(haystack)) {
    if (typeof needle === 'string') return !FORBIDDEN_KEYS.has(needle) && Object.hasOwn(haystack, needle);
    if (typeof needle === 'number') return Object.hasOwn(haystack, String(needle));
    throw runtimeError(
      site,
      `operator 'in' expects a string key on the left of an object but got ${typeName(needle)} and object`,
    );
  }
  throw runtimeError(
    site,
    `operator 'in' expects an array, object or string on the right but got ${typeName(needle)} and ${typeName(haystack)}`,
  );
}
