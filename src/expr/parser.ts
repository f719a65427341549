import { ExpressionError } from './errors.js';
import { describeToken, KEYWORDS, type Token, tokenize } from './lexer.js';

export type BinaryOperator =
  | '+'
  | '-'
  | '*'
  | '/'
  | '%'
  | '=='
  | '!='
  | '<'
  | '<='
  | '>'
  | '>='
  | 'in'
  | '&&'
  | '||'
  | '??';

interface NodeBase {
  /** 0-based offsets of the whole node in the source (`end` exclusive). */
  start: number;
  end: number;
  /** Where errors about this node point: the operator, the function name, the literal. */
  pos: number;
  /** Written inside parentheses (matters for the `??`-mixing and comparison-chaining rules). */
  parenthesized?: boolean;
}

export type Node =
  | (NodeBase & { kind: 'literal'; value: null | boolean | number | string })
  | (NodeBase & { kind: 'identifier'; name: string })
  | (NodeBase & { kind: 'array'; items: Node[] })
  | (NodeBase & { kind: 'object'; entries: { key: string; value: Node; pos: number }[] })
  | (NodeBase & { kind: 'member'; object: Node; property: string | Node })
  | (NodeBase & { kind: 'call'; name: string; args: Node[] })
  | (NodeBase & { kind: 'unary'; op: '-' | '!'; operand: Node })
  | (NodeBase & { kind: 'binary'; op: BinaryOperator; left: Node; right: Node })
  | (NodeBase & { kind: 'conditional'; test: Node; consequent: Node; alternate: Node });

/** Member names that could reach a prototype; rejected when literal, `null` when computed. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** Binding power of infix operators: higher binds tighter. */
const INFIX: Record<string, number> = {
  '?': 5,
  '??': 10,
  '||': 10,
  '&&': 20,
  '==': 30,
  '!=': 30,
  '<': 40,
  '<=': 40,
  '>': 40,
  '>=': 40,
  in: 40,
  '+': 50,
  '-': 50,
  '*': 60,
  '/': 60,
  '%': 60,
};
const PREFIX_BP = 70;
const RELATIONAL = new Set(['<', '<=', '>', '>=', 'in']);
const WORD_OPERATORS: Record<string, string> = { and: '&&', or: '||', not: '!' };

/** Deepest nesting of parentheses, brackets and prefix operators the parser accepts. */
export const MAX_DEPTH = 200;

export function parse(source: string): Node {
  return new Parser(source).parseAll();
}

class Parser {
  private readonly tokens: Token[];
  private i = 0;
  private depth = 0;

  constructor(private readonly source: string) {
    this.tokens = tokenize(source);
  }

  parseAll(): Node {
    const node = this.expression(0);
    const t = this.peek();
    if (t.kind !== 'eof') {
      let hint = '';
      if (t.kind === 'identifier' && WORD_OPERATORS[t.text]) hint = ` (write '${WORD_OPERATORS[t.text]}')`;
      if (t.text === '(') hint = ' (only built-in functions can be called, e.g. lower(x))';
      const what =
        t.text === ')' || t.text === ']' || t.text === '}' ? `unbalanced '${t.text}'` : describeToken(t);
      throw this.error(`expected an operator or end of expression but found ${what}${hint}`, t.start);
    }
    return node;
  }

  private peek(): Token {
    return this.tokens[this.i] as Token;
  }

  private next(): Token {
    const t = this.tokens[this.i] as Token;
    if (t.kind !== 'eof') this.i++;
    return t;
  }

  private isPunct(text: string): boolean {
    const t = this.peek();
    return t.kind === 'punct' && t.text === text;
  }

  private expect(text: string, context = ''): Token {
    const t = this.peek();
    if (t.kind !== 'punct' || t.text !== text) {
      throw this.error(`expected '${text}'${context} but found ${describeToken(t)}`, t.start);
    }
    return this.next();
  }

  private error(message: string, offset: number): ExpressionError {
    return ExpressionError.at(message, this.source, offset);
  }

  private enter(offset: number): void {
    if (++this.depth > MAX_DEPTH)
      throw this.error(`expression nested more than ${MAX_DEPTH} levels deep`, offset);
  }

  private expression(minBp: number): Node {
    this.enter(this.peek().start);
    let left = this.prefix();
    for (;;) {
      const t = this.peek();
      const op = t.kind === 'punct' || (t.kind === 'identifier' && t.text === 'in') ? t.text : '';
      const bp = INFIX[op];
      if (bp === undefined || bp <= minBp) break;
      this.next();
      if (op === '?') {
        const consequent = this.expression(0);
        this.expect(':', ` to continue the 'c ? a : b' started at column ${this.columnOf(t.start)}`);
        const alternate = this.expression(bp - 1);
        left = {
          kind: 'conditional',
          test: left,
          consequent,
          alternate,
          start: left.start,
          end: alternate.end,
          pos: t.start,
        };
        continue;
      }
      const right = this.expression(bp);
      this.checkMixing(op, left, right, t.start);
      left = {
        kind: 'binary',
        op: op as BinaryOperator,
        left,
        right,
        start: left.start,
        end: right.end,
        pos: t.start,
      };
    }
    this.depth--;
    return left;
  }

  private columnOf(offset: number): number {
    const lineStart = this.source.lastIndexOf('\n', offset - 1) + 1;
    return offset - lineStart + 1;
  }

  /** Like JavaScript, `??` does not mix with `&&`/`||` unparenthesized; `a < b < c` is rejected. */
  private checkMixing(op: string, left: Node, right: Node, at: number): void {
    const logical = (n: Node): string | undefined =>
      n.kind === 'binary' && !n.parenthesized && (n.op === '&&' || n.op === '||' || n.op === '??')
        ? n.op
        : undefined;
    if (op === '??' || op === '||' || op === '&&') {
      for (const side of [left, right]) {
        const other = logical(side);
        if (other && other !== op && (other === '??' || op === '??')) {
          throw this.error(
            `expected parentheses to mix '${op}' with '${other}', e.g. (a ${other} b) ${op} c`,
            at,
          );
        }
      }
    }
    if (RELATIONAL.has(op) && left.kind === 'binary' && !left.parenthesized && RELATIONAL.has(left.op)) {
      throw this.error(
        `expected '&&' between comparisons but found a chained '${op}' (write a < b && b < c)`,
        at,
      );
    }
  }

  private prefix(): Node {
    const t = this.next();
    let node: Node;
    switch (t.kind) {
      case 'number':
        node = { kind: 'literal', value: t.value as number, start: t.start, end: t.end, pos: t.start };
        break;
      case 'string':
        node = { kind: 'literal', value: t.value as string, start: t.start, end: t.end, pos: t.start };
        break;
      case 'identifier':
        node = this.identifier(t);
        break;
      case 'punct':
        node = this.punctPrefix(t);
        break;
      default:
        throw this.error(`expected an expression but found ${describeToken(t)}`, t.start);
    }
    return this.postfix(node);
  }

  private identifier(t: Token): Node {
    const base = { start: t.start, end: t.end, pos: t.start };
    switch (t.text) {
      case 'true':
        return { kind: 'literal', value: true, ...base };
      case 'false':
        return { kind: 'literal', value: false, ...base };
      case 'null':
        return { kind: 'literal', value: null, ...base };
      case 'in':
        throw this.error(`expected an expression but found 'in'`, t.start);
    }
    if (WORD_OPERATORS[t.text]) {
      const next = this.peek();
      if (
        next.kind === 'identifier' ||
        next.kind === 'number' ||
        next.kind === 'string' ||
        next.text === '!'
      ) {
        throw this.error(
          `expected an expression but found identifier '${t.text}' (write '${WORD_OPERATORS[t.text]}')`,
          t.start,
        );
      }
    }
    if (!this.isPunct('(')) return { kind: 'identifier', name: t.text, ...base };
    this.next();
    const args = this.list(')', 'function arguments');
    return {
      kind: 'call',
      name: t.text,
      args,
      start: t.start,
      end: this.tokens[this.i - 1]?.end ?? t.end,
      pos: t.start,
    };
  }

  private punctPrefix(t: Token): Node {
    switch (t.text) {
      case '(': {
        const inner = this.expression(0);
        this.expect(')', ` to close the '(' at column ${this.columnOf(t.start)}`);
        return { ...inner, parenthesized: true };
      }
      case '[': {
        const items = this.list(']', 'array');
        return {
          kind: 'array',
          items,
          start: t.start,
          end: this.tokens[this.i - 1]?.end ?? t.end,
          pos: t.start,
        };
      }
      case '{':
        return this.object(t);
      case '-':
      case '!': {
        const operand = this.expression(PREFIX_BP);
        if (
          t.text === '-' &&
          operand.kind === 'literal' &&
          typeof operand.value === 'number' &&
          !operand.parenthesized
        ) {
          return { kind: 'literal', value: -operand.value, start: t.start, end: operand.end, pos: t.start };
        }
        return { kind: 'unary', op: t.text, operand, start: t.start, end: operand.end, pos: t.start };
      }
      default: {
        const hint = t.text === ')' ? ` (unbalanced ')')` : '';
        throw this.error(`expected an expression but found ${describeToken(t)}${hint}`, t.start);
      }
    }
  }

  /** Comma-separated expressions up to `close` (the opener is consumed); a trailing comma is allowed. */
  private list(close: string, what: string): Node[] {
    const opener = this.tokens[this.i - 1] as Token;
    const items: Node[] = [];
    while (!this.isPunct(close)) {
      items.push(this.expression(0));
      if (this.isPunct(',')) {
        this.next();
        continue;
      }
      const t = this.peek();
      if (!(t.kind === 'punct' && t.text === close)) {
        throw this.error(
          `expected ',' or '${close}' in ${what} (opened at column ${this.columnOf(opener.start)}) but found ${describeToken(t)}`,
          t.start,
        );
      }
    }
    this.next();
    return items;
  }

  private object(open: Token): Node {
    const entries: { key: string; value: Node; pos: number }[] = [];
    const seen = new Set<string>();
    while (!this.isPunct('}')) {
      const k = this.next();
      if (k.kind !== 'identifier' && k.kind !== 'string') {
        throw this.error(
          `expected a property name (identifier or quoted string) but found ${describeToken(k)}`,
          k.start,
        );
      }
      const key = k.kind === 'string' ? (k.value as string) : k.text;
      if (FORBIDDEN_KEYS.has(key))
        throw this.error(`expected a property name but found forbidden key '${key}'`, k.start);
      if (seen.has(key)) throw this.error(`duplicate key '${key}' in object literal`, k.start);
      seen.add(key);
      if (!this.isPunct(':')) {
        const t = this.peek();
        const hint =
          t.text === ',' || t.text === '}'
            ? ' (shorthand properties are not supported: write name: value)'
            : '';
        throw this.error(`expected ':' after key '${key}' but found ${describeToken(t)}${hint}`, t.start);
      }
      this.next();
      entries.push({ key, value: this.expression(0), pos: k.start });
      if (this.isPunct(',')) {
        this.next();
        continue;
      }
      const t = this.peek();
      if (!(t.kind === 'punct' && t.text === '}')) {
        throw this.error(
          `expected ',' or '}' in object (opened at column ${this.columnOf(open.start)}) but found ${describeToken(t)}`,
          t.start,
        );
      }
    }
    const close = this.next();
    return { kind: 'object', entries, start: open.start, end: close.end, pos: open.start };
  }

  private postfix(node: Node): Node {
    for (;;) {
      const t = this.peek();
      if (t.kind !== 'punct') return node;
      if (t.text === '.') {
        this.next();
        const name = this.next();
        if (name.kind !== 'identifier') {
          throw this.error(`expected a property name after '.' but found ${describeToken(name)}`, name.start);
        }
        if (FORBIDDEN_KEYS.has(name.text)) {
          throw this.error(
            `expected a property name but found forbidden property '${name.text}'`,
            name.start,
          );
        }
        node = {
          kind: 'member',
          object: node,
          property: name.text,
          start: node.start,
          end: name.end,
          pos: name.start,
        };
      } else if (t.text === '[') {
        this.next();
        this.enter(t.start);
        const property = this.expression(0);
        this.depth--;
        const close = this.expect(']', ` to close the '[' at column ${this.columnOf(t.start)}`);
        node = {
          kind: 'member',
          object: node,
          property,
          start: node.start,
          end: close.end,
          pos: property.start,
        };
      } else if (t.text === '(') {
        throw this.error(
          "expected an operator but found '(' (only built-in functions can be called, e.g. lower(x), not methods)",
          t.start,
        );
      } else {
        return node;
      }
    }
  }
}

export { KEYWORDS };
