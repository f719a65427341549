import { afterEach, describe, expect, it, vi } from 'vitest';
import { RecordError } from '../../src/core/errors.js';
import {
  compileExpression,
  describeExpressionSyntax,
  ExpressionError,
  ExpressionRuntimeError,
} from '../../src/expr/index.js';
import { seededRandom } from '../../src/sources/synthetic.js';

type Scope = Record<string, unknown>;

const ev = (source: string, value?: unknown, extra: Scope = {}): unknown =>
  compileExpression(source).evaluate({ value, key: 'k1', topic: 'orders', partition: 3, ...extra });

function compileError(source: string, options?: { variables?: string[] }): ExpressionError {
  try {
    compileExpression(source, options);
  } catch (e) {
    expect(e).toBeInstanceOf(ExpressionError);
    return e as ExpressionError;
  }
  throw new Error(`expected a compile error for ${source}`);
}

function runtimeError(source: string, value?: unknown): ExpressionRuntimeError {
  const compiled = compileExpression(source);
  try {
    compiled.evaluate({ value });
  } catch (e) {
    expect(e).toBeInstanceOf(ExpressionRuntimeError);
    return e as ExpressionRuntimeError;
  }
  throw new Error(`expected a runtime error for ${source}`);
}

describe('literals', () => {
  it.each([
    ['42', 42],
    ['1.5', 1.5],
    ['1e3', 1000],
    ['2.5E-2', 0.025],
    ['6.02e+23', 6.02e23],
    ['-3', -3],
    ['- 3', -3],
    ['--3', 3],
    ['-(2)', -2],
    ["'single'", 'single'],
    ['"double"', 'double'],
    ["'it\\'s'", "it's"],
    ['"say \\"hi\\""', 'say "hi"'],
    ["'a\\nb\\tc\\\\d\\/'", 'a\nb\tc\\d/'],
    ["'\\u0041\\u{1F600}'", 'A😀'],
    ['"it\'s"', "it's"],
    ["''", ''],
    ['true', true],
    ['false', false],
    ['null', null],
  ])('%s', (source, expected) => {
    expect(ev(source)).toBe(expected);
  });

  it('arrays and objects, nested, with trailing commas', () => {
    expect(ev("[1, 'a', [true, null], ]")).toEqual([1, 'a', [true, null]]);
    expect(ev('[]')).toEqual([]);
    expect(ev('{}')).toEqual({});
    expect(ev('{ a: 1, \'b c\': [2], "d": { e: null }, }')).toEqual({ a: 1, 'b c': [2], d: { e: null } });
    expect(ev('{ in: 1, null: 2, true: 3 }')).toEqual({ in: 1, null: 2, true: 3 });
  });

  it('whitespace and newlines between tokens are ignored', () => {
    expect(ev('\n  1 +\n\t2  \r\n')).toBe(3);
  });
});

describe('precedence and associativity', () => {
  it.each([
    ['1 + 2 * 3', 7],
    ['(1 + 2) * 3', 9],
    ['10 - 4 - 3', 3],
    ['100 / 10 / 5', 2],
    ['2 * 3 % 4', 2],
    ['7 % 4 * 2', 6],
    ['-2 * 3', -6],
    ['-2 + 3', 1],
    ['1 + 2 == 3', true],
    ['1 + 2 == 3 && 2 < 3', true],
    ['true || false && false', true],
    ['false && true || true', true],
    ['(true || false) && false', false],
    ['!true == false', true],
    ['!false && false', false],
    ['!(false && false)', true],
    ['1 < 2 == true', true],
    ['2 in [1, 2] == true', true],
    ['true ? 1 : false ? 2 : 3', 1],
    ['false ? 1 : false ? 2 : 3', 3],
    ['false ? 1 : true ? 2 : 3', 2],
    ['true ? false ? 1 : 2 : 3', 2],
    ['1 + 1 == 2 ? 10 + 1 : 20', 11],
    ['null ?? 1 + 1', 2],
    ['null ?? null ?? 3', 3],
    ['(null ?? false) || true', true],
    ['null ?? (false || true)', true],
    ["'a' + 'b' + 'c'", 'abc'],
  ])('%s → %j', (source, expected) => {
    expect(ev(source)).toBe(expected);
  });

  it('member access binds tighter than unary minus and not', () => {
    expect(ev('-value.n', { n: 4 })).toBe(-4);
    expect(ev('!value.ok', { ok: false })).toBe(true);
    expect(ev('-value.list[1] * 2', { list: [1, 5] })).toBe(-10);
  });
});

describe('short-circuit evaluation', () => {
  const value = { s: 'text', ok: true, no: false, n: 1 };
  it.each([
    ['value.no && value.s - 1 > 0', false],
    ['value.ok || value.s - 1 > 0', true],
    ['null && value.s - 1 > 0', false],
    ['value.n ?? value.s - 1', 1],
    ['value.ok ? 1 : value.s - 1', 1],
    ['value.no ? value.s - 1 : 2', 2],
    ['coalesce(1, value.s - 1)', 1],
    ['if(value.ok, 1, value.s - 1)', 1],
    ['if(value.no, value.s - 1, 2)', 2],
  ])('%s does not evaluate the failing side', (source, expected) => {
    expect(ev(source, value)).toBe(expected);
  });

  it('evaluates the right side when needed', () => {
    expect(() => ev('value.ok && value.s - 1 > 0', value)).toThrow(ExpressionRuntimeError);
    expect(() => ev('value.no || value.s - 1 > 0', value)).toThrow(ExpressionRuntimeError);
    expect(() => ev('value.missing ?? value.s - 1', value)).toThrow(ExpressionRuntimeError);
  });

  it('a failing constant sub-expression only fails when reached', () => {
    const e = compileExpression("value.ok && 'a' - 1 == 0");
    expect(e.evaluate({ value: { ok: false } })).toBe(false);
    expect(() => e.evaluate({ value: { ok: true } })).toThrow(
      /operator '-' expects two numbers but got string and number/,
    );
  });
});

describe('variables and member access', () => {
  const value = {
    a: { b: { c: 7 } },
    list: [10, 20, { x: 'deep' }],
    s: 'hello',
    counts: { '3': 'three' },
    'with space': 1,
    k: 'a',
    undef: undefined,
    date: new Date(0),
    map: new Map([['x', 1]]),
  };

  it.each([
    ['value.a.b.c', 7],
    ["value['a']['b'].c", 7],
    ['value.list[0]', 10],
    ['value.list[2].x', 'deep'],
    ["value['with space']", 1],
    ['value[value.k].b.c', 7],
    ['value.counts[3]', 'three'],
    ["value.counts['3']", 'three'],
    ['value.s[1]', 'e'],
    ['value.list[1 + 1].x', 'deep'],
  ])('%s', (source, expected) => {
    expect(ev(source, value)).toBe(expected);
  });

  it.each([
    'value.missing',
    'value.missing.deeper.still',
    'value.a.b.c.d',
    'value.list[3]',
    'value.list[-1]',
    'value.list[1.5]',
    "value.list['0']",
    'value.list.length',
    'value.s.length',
    'value.s[99]',
    'value.undef',
    'value.undef.x',
    'value.date.x',
    'value.map.x',
    'value.toString',
    'value.hasOwnProperty',
    'value.a.valueOf',
    'value[value.missing]',
    'value[value.a.b.c > 1]',
    'value.list[value.missing]',
    'headers.x',
    'offset',
  ])('%s → null, never undefined, never throws', (source) => {
    expect(ev(source, value)).toBeNull();
  });

  it('member access on a null or missing base is null', () => {
    expect(ev('value.a.b', null)).toBeNull();
    expect(ev('value.a.b', undefined)).toBeNull();
    expect(compileExpression('value.a').evaluate({})).toBeNull();
    expect(ev('value.a[0]', 5)).toBeNull();
    expect(ev('value.a', 'str')).toBeNull();
  });

  it('reads the default variables from the scope', () => {
    const scope = {
      value: 1,
      key: 'k',
      timestamp: 2,
      headers: { h: 'v' },
      topic: 't',
      partition: 0,
      offset: '9',
    };
    const e = compileExpression('[value, key, timestamp, headers.h, topic, partition, offset]');
    expect(e.evaluate(scope)).toEqual([1, 'k', 2, 'v', 't', 0, '9']);
  });

  it('accepts custom variable names', () => {
    const e = compileExpression('record.x + toString', { variables: ['record', 'toString'] });
    expect(e.evaluate({ record: { x: 1 }, toString: 2 })).toBe(3);
    expect(compileExpression('toString', { variables: ['toString'] }).evaluate({})).toBeNull();
    expect(compileError('value', { variables: ['record'] }).detail).toContain("unknown identifier 'value'");
    expect(() => compileExpression('x', { variables: ['__proto__'] })).toThrow(TypeError);
    expect(() => compileExpression('x', { variables: ['a-b'] })).toThrow(TypeError);
    expect(() => compileExpression('x', { variables: ['null'] })).toThrow(TypeError);
  });
});

describe('security', () => {
  it.each([
    ['value.__proto__', 7],
    ['value.constructor', 7],
    ['value.a.prototype', 9],
    ["value['__proto__']", 7],
    ["value['constr' + 'uctor']", 7],
    ['{ __proto__: 1 }', 3],
    ["{ 'constructor': 1 }", 3],
    ['{ "prototype": 1 }', 3],
  ])('%s is rejected at compile time', (source, column) => {
    const e = compileError(source);
    expect(e.detail).toMatch(/forbidden (property|key) '(__proto__|constructor|prototype)'/);
    expect(e.column).toBe(column);
  });

  it('computed keys that hit a forbidden name give null', () => {
    for (const k of ['__proto__', 'constructor', 'prototype']) {
      expect(ev('value.o[value.k]', { o: {}, k })).toBeNull();
      expect(ev('value.k in value.o', { o: {}, k })).toBe(false);
    }
    expect(ev('value.f[value.k]', { f: () => 1, k: 'prototype' })).toBeNull();
  });

  it('object literals create own data properties only and never pollute prototypes', () => {
    const out = ev("{ toString: 1, hasOwnProperty: 'x', valueOf: value }", 3) as Record<string, unknown>;
    expect(Object.keys(out)).toEqual(['toString', 'hasOwnProperty', 'valueOf']);
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).toString).toBe(Object.prototype.toString);
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('does not read properties of functions or class instances', () => {
    class Secret {
      token = 'x';
    }
    expect(ev('value.s.token', { s: new Secret() })).toBeNull();
    expect(ev('value.f.name', { f: function named() {} })).toBeNull();
    expect(ev('len(value.s)', { s: 'abc' })).toBe(3);
  });

  it('does not accept calls on values, only whitelisted functions', () => {
    expect(compileError('value.toString()').detail).toContain('only built-in functions can be called');
    expect(compileError('eval(value)').detail).toContain("unknown function 'eval'");
    expect(compileError('constructor(1)').detail).toContain("unknown function 'constructor'");
    expect(compileError('toString(1)').detail).toContain("unknown function 'toString'");
  });

  it('rejects absurd nesting instead of overflowing the stack', () => {
    expect(compileError(`${'('.repeat(300)}1${')'.repeat(300)}`).detail).toMatch(/nested more than/);
    expect(compileError(`${'-'.repeat(300)}value`).detail).toMatch(/nested more than/);
    expect(compileError(Array.from({ length: 300 }, () => '1').join(' + ')).detail).toMatch(
      /nested more than/,
    );
    expect(ev(Array.from({ length: 100 }, () => 'value').join(' + '), 1)).toBe(100);
  });
});

describe('operators', () => {
  it('arithmetic', () => {
    expect(ev('value.a + value.b', { a: 1.5, b: 2 })).toBe(3.5);
    expect(ev("value.s + '-' + value.t", { s: 'x', t: 'y' })).toBe('x-y');
    expect(ev('-7 % 3')).toBe(-1);
    expect(ev('7 / 2')).toBe(3.5);
    expect(ev('0.1 + 0.2')).toBe(0.1 + 0.2);
  });

  it.each([
    ['1 == 1', true],
    ["1 == '1'", false],
    ["'1' == 1", false],
    ['0 == false', false],
    ['null == false', false],
    ['null == null', true],
    ['value.missing == null', true],
    ['value.missing != null', false],
    ['value.n == 5', true],
    ["value.n == '5'", false],
    ["value.n != '5'", true],
    ['[1, [2, 3]] == [1, [2, 3]]', true],
    ['[1, 2] == [2, 1]', false],
    ['{ a: 1, b: [2] } == { b: [2], a: 1 }', true],
    ['{ a: 1 } == { a: 1, b: 2 }', false],
    ['value.obj == { x: 1 }', true],
    ['value.obj != { x: 2 }', true],
    ['value.arr == [1, 2]', true],
    ['value.arr == value.arr2', true],
    ['value.obj == 1', false],
  ])('equality: %s → %j', (source, expected) => {
    expect(ev(source, { n: 5, obj: { x: 1 }, arr: [1, 2], arr2: [1, 2] })).toBe(expected);
  });

  it.each([
    ["'a' < 'b'", true],
    ["'b' <= 'a'", false],
    ["'abc' >= 'abc'", true],
    ['2 > 1', true],
    ['value.missing > 3', false],
    ['value.missing < 3', false],
    ['value.missing <= 3', false],
    ['3 >= null', false],
    ['!(value.missing > 3)', true],
    ['(value.missing ?? 0) < 3', true],
  ])('ordering: %s → %j', (source, expected) => {
    expect(ev(source, {})).toBe(expected);
  });

  it.each([
    ["value.t in ['a', 'b']", true],
    ["value.t in ['x', 'y']", false],
    ['value.n in [1, 2, 3]', true],
    ["value.n in ['1', '2']", false],
    ['value.missing in [null]', true],
    ['value.missing in [1]', false],
    ['value.obj in [1]', false],
    ['value.t in value.tags', true],
    ['value.n in value.tags', false],
    ['[1] in [[1], [2]]', true],
    ['{ a: 1 } in [{ a: 1 }]', true],
    ["'x' in value.obj", true],
    ["'y' in value.obj", false],
    ["'toString' in value.obj", false],
    ['1 in value.numbered', true],
    ["'ell' in 'hello'", true],
    ["'z' in 'hello'", false],
    ['value.t in value.missing', false],
    ["value.t in [value.t + 'x', value.t]", true],
  ])('in: %s → %j', (source, expected) => {
    expect(ev(source, { t: 'a', n: 2, tags: ['b', 'a'], obj: { x: 1 }, numbered: { '1': true } })).toBe(
      expected,
    );
  });

  it('logical operators accept booleans and null (as false) and return booleans', () => {
    expect(ev('null || true')).toBe(true);
    expect(ev('null || null')).toBe(false);
    expect(ev('true && null')).toBe(false);
    expect(ev('!null')).toBe(true);
    expect(ev('null ? 1 : 2')).toBe(2);
  });

  it('?? keeps false and 0 and empty strings', () => {
    expect(ev('value.f ?? true', { f: false })).toBe(false);
    expect(ev('value.z ?? 1', { z: 0 })).toBe(0);
    expect(ev("value.e ?? 'x'", { e: '' })).toBe('');
  });
});

describe('object literals for map', () => {
  const scope = {
    value: { id: 7, user: { name: '  Ada ', email: 'ADA@EXAMPLE.COM' }, amount: 1234.567, tags: ['a', 'b'] },
    key: 'k7',
    timestamp: 1_700_000_000_000,
    headers: { source: 'web' },
    topic: 'orders',
    partition: 2,
    offset: '42',
  };

  it('builds a new value from the record', () => {
    const e = compileExpression(`{
      id: value.id,
      name: trim(value.user.name),
      email: lower(value.user.email),
      amount: round(value.amount, 2),
      big: value.amount >= 1000,
      firstTag: value.tags[0],
      tagCount: len(value.tags),
      country: value.user.country ?? 'unknown',
      'source header': headers.source,
      origin: topic + '/' + string(partition) + '/' + offset,
      nested: { ts: timestamp, key: key },
      list: [value.id, key],
    }`);
    expect(e.resultType).toBe('object');
    expect(e.evaluate(scope)).toEqual({
      id: 7,
      name: 'Ada',
      email: 'ada@example.com',
      amount: 1234.57,
      big: true,
      firstTag: 'a',
      tagCount: 2,
      country: 'unknown',
      'source header': 'web',
      origin: 'orders/2/42',
      nested: { ts: 1_700_000_000_000, key: 'k7' },
      list: [7, 'k7'],
    });
  });

  it('returns a fresh object on every evaluation', () => {
    const e = compileExpression("{ a: [1, 2], b: { c: 'd' } }");
    const first = e.evaluate({}) as { a: number[]; b: { c: string } };
    first.a.push(3);
    first.b.c = 'changed';
    expect(e.evaluate({})).toEqual({ a: [1, 2], b: { c: 'd' } });
  });

  it('passes record values through by reference', () => {
    const value = { inner: { x: 1 } };
    expect((ev('{ copy: value.inner }', value) as { copy: unknown }).copy).toBe(value.inner);
  });
});

describe('functions', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it.each([
    ["lower('AbC')", 'abc'],
    ["upper('AbC')", 'ABC'],
    ["trim('  a b  ')", 'a b'],
    ['lower(null)', null],
    ["len('héllo')", 5],
    ['len([1, 2, 3])', 3],
    ['len({ a: 1, b: 2 })', 2],
    ['len(null)', null],
    ['abs(-3.5)', 3.5],
    ['abs(null)', null],
    ['round(2.5)', 3],
    ['round(-2.5)', -3],
    ['round(2.4)', 2],
    ['round(1.005, 2)', 1.01],
    ['round(1234.5678, 1)', 1234.6],
    ['round(1234.5678, -2)', 1200],
    ['round(-0.4)', 0],
    ['round(1e-7, 3)', 0],
    ['round(null, 2)', null],
    ['floor(-1.5)', -2],
    ['ceil(1.2)', 2],
    ['floor(null)', null],
    ['min(3, 1, 2)', 1],
    ['max(3, 1, 2)', 3],
    ['min(null, 4, 5)', 4],
    ['max([4, 9, 2])', 9],
    ['max([])', null],
    ['min(null)', null],
    ['sqrt(16)', 4],
    ['log(1)', 0],
    ['exp(0)', 1],
    ['pow(2, 10)', 1024],
    ['pow(null, 2)', null],
    ["number('42')", 42],
    ["number(' 4.5e1 ')", 45],
    ["number('abc')", null],
    ["number('')", null],
    ['number(true)', 1],
    ['number(null)', null],
    ['number([1])', null],
    ['number(7)', 7],
    ["int('12.9')", 12],
    ['int(-12.9)', -12],
    ["int('x')", null],
    ["string('s')", 's'],
    ['string(1.5)', '1.5'],
    ['string(true)', 'true'],
    ['string(null)', null],
    ["string([1, 'a'])", '[1,"a"]'],
    ['string({ a: 1 })', '{"a":1}'],
    ['bool(true)', true],
    ['bool(null)', false],
    ['bool(0)', false],
    ['bool(2)', true],
    ["bool('TRUE')", true],
    ["bool('yes')", true],
    ["bool('0')", false],
    ["bool('')", false],
    ["bool('maybe')", null],
    ['bool([])', false],
    ['bool({ a: 1 })', true],
    ["startsWith('hello', 'he')", true],
    ["startsWith('hello', 'lo')", false],
    ["startsWith(null, 'he')", false],
    ["endsWith('hello', 'lo')", true],
    ["endsWith(null, 'lo')", false],
    ["contains('hello', 'ell')", true],
    ["contains('hello', 'xyz')", false],
    ["contains(['a', 'b'], 'b')", true],
    ['contains([[1]], [1])', true],
    ['contains([1], 2)', false],
    ["contains(null, 'a')", false],
    ["matches('order-123', '^order-[0-9]+$')", true],
    ["matches('ORDER-1', '^order', 'i')", true],
    ["matches('ORDER-1', '^order')", false],
    ["matches(null, 'x')", false],
    ['coalesce(null, null, 3, 4)', 3],
    ['coalesce(null)', null],
    ['coalesce(null, false)', false],
    ["if(1 > 2, 'a', 'b')", 'b'],
    ["if(null, 'a', 'b')", 'b'],
    ["hash('')", 2166136261],
    ["hash('a')", 0xe40c292c],
    ["hash('foobar')", 0xbf9cf968],
  ])('%s → %j', (source, expected) => {
    expect(ev(source)).toBe(expected);
  });

  it('keys', () => {
    expect(ev('keys(value)', { b: 1, a: 2 })).toEqual(['b', 'a']);
    expect(ev('keys(null)')).toBeNull();
    expect(() => ev('keys([1])')).toThrow(/function 'keys' expects an object but got array/);
  });

  it('hash is FNV-1a over UTF-8, stable across key order, and suits sampling', () => {
    const reference = (s: string): number => {
      let h = 0x811c9dc5;
      for (const b of new TextEncoder().encode(s)) h = Math.imul(h ^ b, 0x01000193);
      return h >>> 0;
    };
    for (const s of ['héllo', '日本語', 'emoji 😀 ok', 'lone \ud800 surrogate', 'x'.repeat(1000)]) {
      expect(ev('hash(value)', s)).toBe(reference(s));
    }
    expect(ev('hash(42)')).toBe(reference('42'));
    expect(ev('hash(null)')).toBe(reference('null'));
    expect(ev('hash(true)')).toBe(reference('true'));
    expect(ev('hash({ b: 1, a: [2] })')).toBe(reference('{"a":[2],"b":1}'));
    expect(ev('hash({ a: [2], b: 1 })')).toBe(ev('hash({ b: 1, a: [2] })'));
    const sample = compileExpression('hash(key) % 100 < 10');
    let kept = 0;
    for (let i = 0; i < 10_000; i++) if (sample.test({ key: `key-${i}` })) kept++;
    expect(kept).toBeGreaterThan(800);
    expect(kept).toBeLessThan(1200);
  });

  it('now() is evaluated per record, not folded at compile time', () => {
    vi.useFakeTimers();
    vi.setSystemTime(1_000);
    const e = compileExpression('now() - timestamp');
    expect(e.evaluate({ timestamp: 400 })).toBe(600);
    vi.setSystemTime(5_000);
    expect(e.evaluate({ timestamp: 400 })).toBe(4_600);
  });

  it('matches with a pattern computed at runtime', () => {
    const e = compileExpression('matches(value.s, value.p)');
    expect(e.evaluate({ value: { s: 'abc', p: '^a' } })).toBe(true);
    expect(e.evaluate({ value: { s: 'abc', p: 'z' } })).toBe(false);
    expect(() => e.evaluate({ value: { s: 'abc', p: '(' } })).toThrow(/invalid regular expression/);
    expect(() => e.evaluate({ value: { s: 'abc', p: 'a'.repeat(201) } })).toThrow(/limit is 200/);
    expect(() => e.evaluate({ value: { s: 'abc', p: 1 } })).toThrow(/expects a string pattern/);
  });

  it('matches rejects bad literal patterns and flags at compile time', () => {
    const bad = compileError("matches(value.s, '(unclosed')");
    expect(bad.detail).toMatch(/invalid regular expression/);
    expect(bad.column).toBe(18);
    expect(compileError(`matches(value.s, '${'a'.repeat(201)}')`).detail).toMatch(
      /201 characters long; the limit is 200/,
    );
    expect(() => compileExpression(`matches(value.s, '${'a'.repeat(200)}')`)).not.toThrow();
    expect(compileError("matches(value.s, 'a', 'g')").detail).toMatch(/flags made of i, m, s, u/);
    expect(compileError('matches(value.s, "a", value.f)').detail).toMatch(/literal string/);
    expect(compileError('matches(value.s, 1)').detail).toMatch(/pattern of matches\(\) to be a string/);
  });

  it('rejects arguments of the wrong type at runtime, naming the function and the type', () => {
    expect(() => ev('lower(value)', 1)).toThrow(/function 'lower' expects a string but got number/);
    expect(() => ev('len(value)', 1)).toThrow(
      /function 'len' expects a string, array or object but got number/,
    );
    expect(() => ev('abs(value)', 'x')).toThrow(/function 'abs' expects a number but got string/);
    expect(() => ev('round(1.5, value)', 1.5)).toThrow(/integer from -15 to 15 as its second argument/);
    expect(() => ev('pow(2, value)', 'x')).toThrow(
      /function 'pow' expects a number as its second argument but got string/,
    );
    expect(() => ev("max(1, 'a')")).toThrow(/function 'max' expects numbers/);
    expect(() => ev("startsWith(value, 'a')", 1)).toThrow(/as its first argument but got number/);
    expect(() => ev("startsWith('a', value)", 1)).toThrow(/as its second argument but got number/);
    expect(() => ev('contains(value, 1)', 'abc')).toThrow(/function 'contains' expects a string/);
    expect(() => ev('contains(value, 1)', 5)).toThrow(
      /expects a string or array as its first argument but got number/,
    );
    expect(() => ev("matches(value, 'a')", 5)).toThrow(/function 'matches' expects a string/);
    expect(() => ev('if(value, 1, 2)', 5)).toThrow(
      /function 'if' expects a boolean condition but got number/,
    );
    expect(() => ev('string(value)', new Date(0))).toThrow(
      /function 'string' expects .* but got object \(Date\)/,
    );
  });

  it('every documented function has a row in describeExpressionSyntax()', () => {
    const text = describeExpressionSyntax();
    for (const name of [
      'lower',
      'upper',
      'trim',
      'len',
      'abs',
      'round',
      'floor',
      'ceil',
      'min',
      'max',
      'sqrt',
      'log',
      'exp',
      'pow',
      'now',
      'number',
      'string',
      'bool',
      'startsWith',
      'endsWith',
      'contains',
      'matches',
      'coalesce',
      'if',
      'keys',
      'hash',
      'int',
    ]) {
      expect(text).toContain(`${name}(`);
    }
    expect(text).toContain('??');
  });
});

describe('compile errors', () => {
  it.each([
    ['value.x > (3', "expected ')' to close the '(' at column 11 but found end of expression", 13],
    ['(value.x > 3))', "expected an operator or end of expression but found unbalanced ')'", 14],
    [')', "expected an expression but found ')'", 1],
    ["value.s == 'abc", "unterminated string: expected a closing ' but found end of expression", 12],
    ['value.s == "abc\ndef"', 'unterminated string: expected a closing " but found end of line', 12],
    ['valeu.x > 3', "unknown identifier 'valeu' (did you mean 'value'?)", 1],
    ['value.x > limit', "unknown identifier 'limit'", 11],
    ['lowr(value.s)', "unknown function 'lowr' (did you mean 'lower'?)", 1],
    ['round(1, 2, 3)', 'expected 1 or 2 arguments for round(x, digits?) but found 3', 1],
    ['now(1)', 'expected 0 arguments for now() but found 1', 1],
    ['pow(2)', 'expected 2 arguments for pow(x, y) but found 1', 1],
    ['max()', 'expected at least 1 argument for max(a, b, ...) but found 0', 1],
    ['value.x 3', 'expected an operator or end of expression but found number 3', 9],
    ['value.x > 3 foo', "expected an operator or end of expression but found identifier 'foo'", 13],
    ['value.__proto__', "forbidden property '__proto__'", 7],
    ['value.x = 3', "expected '==' but found '='", 9],
    ['value.x === 3', "'===' is not an operator; '==' already compares strictly", 9],
    ['a & b', "expected '&&' but found '&'", 3],
    ['value.x and value.y', "found identifier 'and' (write '&&')", 9],
    ['not value.x', "found identifier 'not' (write '!')", 1],
    ['2 ** 3', "'**' is not an operator; use pow(x, y)", 3],
    ['value?.x', "'?.' is not needed", 6],
    ['1 +', 'expected an expression but found end of expression', 4],
    ['', 'expected an expression but found end of expression', 1],
    ['[1, 2', "expected ',' or ']' in array (opened at column 1) but found end of expression", 6],
    [
      'lower(value.s',
      "expected ',' or ')' in function arguments (opened at column 6) but found end of expression",
      14,
    ],
    ['{ a: 1, b }', "expected ':' after key 'b' but found '}' (shorthand properties are not supported", 11],
    ['{ a: 1 b: 2 }', "expected ',' or '}' in object (opened at column 1) but found identifier 'b'", 8],
    ['{ 1: 2 }', 'expected a property name (identifier or quoted string) but found number 1', 3],
    ['{ a: 1, a: 2 }', "duplicate key 'a' in object literal", 9],
    ['value.', "expected a property name after '.' but found end of expression", 7],
    ['value[0', "expected ']' to close the '[' at column 6 but found end of expression", 8],
    [
      'true ? 1',
      "expected ':' to continue the 'c ? a : b' started at column 6 but found end of expression",
      9,
    ],
    ['1 < 2 < 3', "expected '&&' between comparisons", 7],
    ['value.a ?? value.b || true', "expected parentheses to mix '||' with '??'", 20],
    ['value.a && value.b ?? true', "expected parentheses to mix '??' with '&&'", 20],
    ['value.f()', "expected an operator but found '('", 8],
    ['value(1)', "expected a function but found variable 'value'", 1],
    ['lower', "expected a variable but found function 'lower'", 1],
    ["'\\q'", "expected an escape sequence (\\n \\t \\r \\\\ \\' \\\" \\uXXXX) but found '\\q'", 2],
    ["'\\u12'", "expected 4 hex digits or {hex} after '\\u'", 2],
    ['1e', 'expected digits after the exponent but found end of expression', 3],
    ['12abc', "invalid number '12abc'", 1],
    ['value.x # comment', "unexpected character '#'", 9],
    ['in', "expected an expression but found 'in'", 1],
    ['value[true]', 'expected a string or number inside [ ] but found boolean', 7],
  ])('%j', (source, message, column) => {
    const e = compileError(source);
    expect(e.detail).toContain(message);
    expect(e.column).toBe(column);
    expect(e.line).toBe(1);
    expect(e.expression).toBe(source);
    expect(e.name).toBe('ExpressionError');
    expect(e).toBeInstanceOf(Error);
  });

  it('the message says what was expected and found, where, and shows a caret', () => {
    const e = compileError('value.x > (3');
    expect(e.message).toBe(
      "expected ')' to close the '(' at column 11 but found end of expression at column 13\n" +
        '  value.x > (3\n' +
        '              ^',
    );
  });

  it('reports line and column within multi-line expressions', () => {
    const e = compileError('{\n  a: value.a,\n  b: valeu.b\n}');
    expect(e.line).toBe(3);
    expect(e.column).toBe(6);
    expect(e.message).toBe(
      "unknown identifier 'valeu' (did you mean 'value'?); expected one of: value, key, timestamp, headers, topic, partition, offset at line 3, column 6\n" +
        '    b: valeu.b\n' +
        '       ^',
    );
  });

  it('windows very long lines around the caret', () => {
    const source = `${'value.a + '.repeat(30)}valeu`;
    const [, line, caret] = compileError(source).message.split('\n') as [string, string, string];
    expect(line.length).toBeLessThan(110);
    expect(line.endsWith('valeu')).toBe(true);
    expect(caret.indexOf('^')).toBe(line.indexOf('valeu'));
  });
});

describe('runtime type errors', () => {
  it.each([
    ['value.s - 1', "operator '-' expects two numbers but got string and number", 9],
    ['value.o < 3', "operator '<' expects two numbers or two strings but got object and number", 9],
    ["value.n < 'a'", "operator '<' expects two numbers or two strings but got number and string", 9],
    ['value.b >= value.b', "operator '>=' expects two numbers or two strings but got boolean and boolean", 9],
    [
      "value.n + 'x'",
      "operator '+' expects two numbers or two strings but got number and string (use string(x) to concatenate)",
      9,
    ],
    ['value.a + value.a', "operator '+' expects two numbers or two strings but got array and array", 9],
    ['value.missing * 2', "operator '*' expects two numbers but got null and number", 15],
    ['value.n / 0', "operator '/' divides by zero", 9],
    ['value.n % value.zero', "operator '%' divides by zero", 9],
    ['-value.s', "operator '-' expects a number but got string", 1],
    ['!value.n', "operator '!' expects a boolean but got number", 1],
    ['value.n && true', "operator '&&' expects boolean operands but got number", 9],
    ['true && value.s', "operator '&&' expects boolean operands but got string", 6],
    ['value.s || false', "operator '||' expects boolean operands but got string", 9],
    ['value.s ? 1 : 2', "operator '?:' expects a boolean condition but got string", 9],
    [
      'value.n in 5',
      "operator 'in' expects an array, object or string on the right but got number and number",
      9,
    ],
    ['1 in value.s', "operator 'in' expects a string on the left of a string but got number and string", 3],
    ['value.bytes + 1', "operator '+' expects two numbers or two strings but got bytes and number", 13],
  ])('%s', (source, message, column) => {
    const e = runtimeError(source, {
      s: 'a',
      o: { x: 1 },
      n: 1,
      zero: 0,
      b: true,
      a: [1],
      bytes: Buffer.from('x'),
    });
    expect(e.detail).toBe(message);
    expect(e.column).toBe(column);
    expect(e.message).toBe(`${message} at column ${column} of \`${source}\``);
    expect(e).toBeInstanceOf(RecordError);
    expect(e.reason).toBe('expression');
    expect(e.name).toBe('ExpressionRuntimeError');
  });

  it('does not coerce numeric strings', () => {
    expect(ev("value.n == '5'", { n: 5 })).toBe(false);
    expect(() => ev('value.s > 3', { s: '5' })).toThrow(/got string and number/);
    expect(ev('number(value.s) > 3', { s: '5' })).toBe(true);
  });

  it('names the operator that failed', () => {
    expect(runtimeError('1 + (value.s - 2)', { s: 'x' }).operator).toBe('-');
    expect(runtimeError('upper(value)', 1).operator).toBe('upper');
  });
});

describe('test() and resultType', () => {
  it('test() is true only for true; false and null are false; others throw', () => {
    const e = compileExpression('value');
    expect(e.test({ value: true })).toBe(true);
    expect(e.test({ value: false })).toBe(false);
    expect(e.test({ value: null })).toBe(false);
    expect(e.test({})).toBe(false);
    expect(() => e.test({ value: 1 })).toThrow(/expected the condition to be a boolean but it was number/);
  });

  it.each([
    ["value.x > 3 && value.t == 'a'", 'boolean'],
    ['!value.x', 'boolean'],
    ['value.x * 2', 'number'],
    ['len(value.x)', 'number'],
    ["'a' + value.x", 'string'],
    ['{ a: 1 }', 'object'],
    ['[1]', 'array'],
    ['value.x', 'unknown'],
    ['value.x ?? 0', 'unknown'],
    ['null ?? 0', 'number'],
    ["value.x ? 'a' : 'b'", 'string'],
    ['null', 'null'],
  ])('%s → %s', (source, type) => {
    expect(compileExpression(source).resultType).toBe(type);
  });

  it('keeps the source', () => {
    expect(compileExpression(' 1 + 1 ').source).toBe(' 1 + 1 ');
  });
});

describe('property: arithmetic and comparison agree with JavaScript on numbers', () => {
  const random = seededRandom(0xf107111a);
  const pick = (): number => {
    const r = random();
    if (r < 0.4) return Math.floor(random() * 41) - 20;
    if (r < 0.8) return (random() - 0.5) * 2e6;
    if (r < 0.9) return (random() - 0.5) * 1e-6;
    return (random() - 0.5) * 1e22;
  };
  type Op = '+' | '-' | '*' | '/' | '%';
  const ARITH: Op[] = ['+', '-', '*', '/', '%'];
  const PREC: Record<Op, number> = { '+': 1, '-': 1, '*': 2, '/': 2, '%': 2 };
  const apply = (op: Op, a: number, b: number): number => {
    if ((op === '/' || op === '%') && b === 0) throw new Error('division by zero');
    switch (op) {
      case '+':
        return a + b;
      case '-':
        return a - b;
      case '*':
        return a * b;
      case '/':
        return a / b;
      case '%':
        return a % b;
    }
  };
  const COMPARE: Record<string, (a: number, b: number) => boolean> = {
    '<': (a, b) => a < b,
    '<=': (a, b) => a <= b,
    '>': (a, b) => a > b,
    '>=': (a, b) => a >= b,
    '==': (a, b) => a === b,
    '!=': (a, b) => a !== b,
  };
  const check = (source: string, scope: Scope, expected: () => unknown): void => {
    let want: unknown;
    let wantError = false;
    try {
      want = expected();
    } catch {
      wantError = true;
    }
    const e = compileExpression(source);
    if (wantError) expect(() => e.evaluate(scope), source).toThrow(/divides by zero/);
    else expect(e.evaluate(scope), `${source} with ${JSON.stringify(scope)}`).toBe(want);
  };

  it('binary operators on literals (folded) and on variables (runtime)', () => {
    for (let i = 0; i < 2000; i++) {
      const a = pick();
      const b = random() < 0.1 ? a : random() < 0.05 ? 0 : pick();
      for (const op of ARITH) {
        check(`${a} ${op} ${b}`, {}, () => apply(op, a, b));
        check(`value.a ${op} value.b`, { value: { a, b } }, () => apply(op, a, b));
      }
      for (const [op, f] of Object.entries(COMPARE)) {
        check(`${a} ${op} ${b}`, {}, () => f(a, b));
        check(`value.a ${op} value.b`, { value: { a, b } }, () => f(a, b));
      }
    }
  });

  it('unparenthesized three-operand chains follow JavaScript precedence', () => {
    for (let i = 0; i < 3000; i++) {
      const [a, b, c] = [pick(), pick(), pick()];
      const op1 = ARITH[Math.floor(random() * ARITH.length)] as Op;
      const op2 = ARITH[Math.floor(random() * ARITH.length)] as Op;
      const expected = (): number =>
        PREC[op2] > PREC[op1] ? apply(op1, a, apply(op2, b, c)) : apply(op2, apply(op1, a, b), c);
      check(`${a} ${op1} ${b} ${op2} ${c}`, {}, expected);
      check(`value.a ${op1} value.b ${op2} value.c`, { value: { a, b, c } }, expected);
      const [cmp, f] = Object.entries(COMPARE)[Math.floor(random() * 6)] as [
        string,
        (x: number, y: number) => boolean,
      ];
      check(`value.a ${op1} value.b ${cmp} value.c`, { value: { a, b, c } }, () => f(apply(op1, a, b), c));
    }
  });
});
