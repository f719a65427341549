import { ExpressionError } from './errors.js';

export type TokenKind = 'number' | 'string' | 'identifier' | 'punct' | 'eof';

export interface Token {
  kind: TokenKind;
  /** The source text of the token (for punctuators and identifiers, what to match on). */
  text: string;
  /** Decoded value of number and string literals. */
  value: number | string | undefined;
  /** 0-based offsets into the source, `end` exclusive. */
  start: number;
  end: number;
}

/** Longest first, so `<=` wins over `<`. */
const PUNCTUATORS = [
  '??',
  '==',
  '!=',
  '<=',
  '>=',
  '&&',
  '||',
  '(',
  ')',
  '[',
  ']',
  '{',
  '}',
  ',',
  '.',
  ':',
  '?',
  '+',
  '-',
  '*',
  '/',
  '%',
  '<',
  '>',
  '!',
];

/** Mistakes worth a specific message: what was written and what to write instead. */
const MISTAKES: [string, string][] = [
  ['===', "'===' is not an operator; '==' already compares strictly"],
  ['!==', "'!==' is not an operator; '!=' already compares strictly"],
  ['**', "'**' is not an operator; use pow(x, y)"],
  ['?.', "'?.' is not needed: member access is already null-safe, use '.'"],
];

const SINGLE_CHAR_MISTAKES: Record<string, string> = { '=': '==', '&': '&&', '|': '||' };

const ESCAPES: Record<string, string> = {
  n: '\n',
  r: '\r',
  t: '\t',
  b: '\b',
  f: '\f',
  v: '\v',
  '0': '\0',
  '\\': '\\',
  "'": "'",
  '"': '"',
  '/': '/',
};

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isIdentStart = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
const isIdentPart = (c: number): boolean => isIdentStart(c) || isDigit(c);
const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13;

export function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const n = source.length;
  while (i < n) {
    const c = source.charCodeAt(i);
    if (isSpace(c)) {
      i++;
      continue;
    }
    const start = i;
    if (isDigit(c)) {
      i = readNumber(source, i, tokens);
      continue;
    }
    if (isIdentStart(c)) {
      while (i < n && isIdentPart(source.charCodeAt(i))) i++;
      const text = source.slice(start, i);
      tokens.push({ kind: 'identifier', text, value: undefined, start, end: i });
      continue;
    }
    if (c === 39 || c === 34) {
      i = readString(source, i, tokens);
      continue;
    }
    for (const [text, message] of MISTAKES) {
      if (source.startsWith(text, i) && !(text === '?.' && isDigit(source.charCodeAt(i + 2)))) {
        throw ExpressionError.at(message, source, i);
      }
    }
    const punct = PUNCTUATORS.find((p) => source.startsWith(p, i));
    if (punct) {
      i += punct.length;
      tokens.push({ kind: 'punct', text: punct, value: undefined, start, end: i });
      continue;
    }
    const ch = String.fromCodePoint(source.codePointAt(i) ?? c);
    const instead = SINGLE_CHAR_MISTAKES[ch];
    if (instead) throw ExpressionError.at(`expected '${instead}' but found '${ch}'`, source, i);
    throw ExpressionError.at(`unexpected character '${ch}'`, source, i);
  }
  tokens.push({ kind: 'eof', text: '', value: undefined, start: n, end: n });
  return tokens;
}

function readNumber(source: string, start: number, tokens: Token[]): number {
  let i = start;
  const n = source.length;
  while (i < n && isDigit(source.charCodeAt(i))) i++;
  if (source.charCodeAt(i) === 46 && isDigit(source.charCodeAt(i + 1))) {
    i++;
    while (i < n && isDigit(source.charCodeAt(i))) i++;
  }
  const e = source.charCodeAt(i);
  if (e === 101 || e === 69) {
    let j = i + 1;
    const sign = source.charCodeAt(j);
    if (sign === 43 || sign === 45) j++;
    if (!isDigit(source.charCodeAt(j))) {
      throw ExpressionError.at(
        `expected digits after the exponent but found ${describeChar(source, j)}`,
        source,
        j,
      );
    }
    while (j < n && isDigit(source.charCodeAt(j))) j++;
    i = j;
  }
  if (i < n && isIdentPart(source.charCodeAt(i))) {
    let j = i;
    while (j < n && isIdentPart(source.charCodeAt(j))) j++;
    throw ExpressionError.at(`invalid number '${source.slice(start, j)}'`, source, start);
  }
  const text = source.slice(start, i);
  tokens.push({ kind: 'number', text, value: Number(text), start, end: i });
  return i;
}

function readString(source: string, start: number, tokens: Token[]): number {
  const quote = source[start] ?? "'";
  const n = source.length;
  let i = start + 1;
  let out = '';
  let chunk = i;
  for (;;) {
    if (i >= n || source.charCodeAt(i) === 10) {
      const found = i >= n ? 'end of expression' : 'end of line';
      throw ExpressionError.at(
        `unterminated string: expected a closing ${quote} but found ${found} (the string starts here)`,
        source,
        start,
      );
    }
    const ch = source[i];
    if (ch === quote) break;
    if (ch !== '\\') {
      i++;
      continue;
    }
    out += source.slice(chunk, i);
    const esc = source[i + 1] ?? '';
    if (esc === 'u') {
      const { text, next } = readUnicodeEscape(source, i);
      out += text;
      i = next;
    } else {
      const decoded = ESCAPES[esc];
      if (decoded === undefined) {
        const shown = esc === '' || esc === '\n' ? 'end of string' : `'\\${esc}'`;
        throw ExpressionError.at(
          `expected an escape sequence (\\n \\t \\r \\\\ \\' \\" \\uXXXX) but found ${shown}`,
          source,
          i,
        );
      }
      out += decoded;
      i += 2;
    }
    chunk = i;
  }
  out += source.slice(chunk, i);
  tokens.push({ kind: 'string', text: source.slice(start, i + 1), value: out, start, end: i + 1 });
  return i + 1;
}

function readUnicodeEscape(source: string, at: number): { text: string; next: number } {
  const braced = /^\\u\{([0-9a-fA-F]{1,6})\}/.exec(source.slice(at, at + 10));
  if (braced?.[1]) {
    const cp = Number.parseInt(braced[1], 16);
    if (cp <= 0x10ffff) return { text: String.fromCodePoint(cp), next: at + braced[0].length };
  }
  const plain = /^\\u([0-9a-fA-F]{4})/.exec(source.slice(at, at + 6));
  if (plain?.[1]) return { text: String.fromCharCode(Number.parseInt(plain[1], 16)), next: at + 6 };
  throw ExpressionError.at(
    `expected 4 hex digits or {hex} after '\\u' but found '${source.slice(at, at + 6)}'`,
    source,
    at,
  );
}

function describeChar(source: string, i: number): string {
  return i >= source.length ? 'end of expression' : `'${source[i]}'`;
}

/** How a token is named in "expected … but found …" messages. */
export function describeToken(t: Token): string {
  switch (t.kind) {
    case 'eof':
      return 'end of expression';
    case 'number':
      return `number ${t.text}`;
    case 'string':
      return `string ${t.text.length > 30 ? `${t.text.slice(0, 27)}…` : t.text}`;
    case 'identifier':
      return KEYWORDS.has(t.text) ? `'${t.text}'` : `identifier '${t.text}'`;
    default:
      return `'${t.text}'`;
  }
}

export const KEYWORDS: ReadonlySet<string> = new Set(['true', 'false', 'null', 'in']);
