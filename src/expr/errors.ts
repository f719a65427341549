import { FlotillaError, RecordError } from '../core/errors.js';

/** 1-based line and column of a 0-based offset into `source`, with the text of that line. */
export interface SourcePosition {
  line: number;
  column: number;
  lineText: string;
}

export function positionOf(source: string, offset: number): SourcePosition {
  let line = 1;
  let lineStart = 0;
  const stop = Math.min(offset, source.length);
  for (let i = 0; i < stop; i++) {
    if (source.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  let lineEnd = source.indexOf('\n', lineStart);
  if (lineEnd < 0) lineEnd = source.length;
  const lineText = source.slice(lineStart, lineEnd).replace(/\r$/, '');
  return { line, column: offset - lineStart + 1, lineText };
}

const WINDOW = 100;

/** The source line (windowed around the column when long) and a caret under the column. */
export function caretLines(lineText: string, column: number): string {
  let text = lineText.replace(/[\t\r]/g, ' ');
  let caret = column - 1;
  if (text.length > WINDOW) {
    const start = Math.max(0, Math.min(caret - WINDOW / 2, text.length - WINDOW));
    const end = start + WINDOW;
    text = `${start > 0 ? '…' : ''}${text.slice(start, end)}${end < lineText.length ? '…' : ''}`;
    caret = caret - start + (start > 0 ? 1 : 0);
  }
  return `  ${text}\n  ${' '.repeat(Math.max(0, caret))}^`;
}

function where(expression: string, line: number, column: number): string {
  return expression.includes('\n') ? `line ${line}, column ${column}` : `column ${column}`;
}

/**
 * A syntax or compile-time error in an expression. `column` (within `line`, for multi-line
 * expressions) and `line` are 1-based; the constructor appends the position, the offending line and
 * a caret under the column to `message`:
 *
 *     expected ')' to close the '(' at column 11 but found end of expression at column 13
 *       value.x > (3
 *                   ^
 */
export class ExpressionError extends FlotillaError {
  /** The message without the position and caret lines. */
  readonly detail: string;

  constructor(
    message: string,
    readonly expression: string,
    readonly column: number,
    readonly line: number = 1,
  ) {
    const lineText = expression.split('\n')[line - 1] ?? '';
    super(`${message} at ${where(expression, line, column)}\n${caretLines(lineText, column)}`);
    this.detail = message;
  }

  /** An error at a 0-based offset into `expression`. */
  static at(message: string, expression: string, offset: number): ExpressionError {
    const p = positionOf(expression, offset);
    return new ExpressionError(message, expression, p.column, p.line);
  }
}

/**
 * A record made an expression fail at runtime (e.g. `'a' - 1`). The message names the operator
 * or function and the operand types; callers route the record to the dead-letter topic with it.
 * It is a `RecordError` with reason `'expression'`.
 */
export class ExpressionRuntimeError extends RecordError {
  /** The message without the position. */
  readonly detail: string;

  constructor(
    message: string,
    readonly expression: string,
    readonly column: number,
    readonly line: number = 1,
    /** The operator or function that failed, e.g. `-` or `lower`. */
    readonly operator: string = '',
  ) {
    super(`${message} at ${where(expression, line, column)} of \`${snippet(expression)}\``, 'expression');
    this.detail = message;
  }
}

function snippet(expression: string): string {
  const flat = expression.replace(/\s+/g, ' ').trim();
  return flat.length > 120 ? `${flat.slice(0, 119)}…` : flat;
}

/** Where a runtime error is reported: the operator or function and its offset in the source. */
export interface Site {
  readonly name: string;
  readonly source: string;
  readonly offset: number;
}

export function runtimeError(site: Site, message: string): ExpressionRuntimeError {
  const p = positionOf(site.source, site.offset);
  return new ExpressionRuntimeError(message, site.source, p.column, p.line, site.name);
}
