/**
 * Flotilla's expression language, used by `filter` (a condition) and `map` (a new value) steps.
 * Source text is parsed once and compiled to a tree of closures: nothing from a topology file is
 * ever handed to `eval`/`new Function`, and member access only reads own properties of plain
 * objects, arrays and strings.
 */
import { BUILTINS, MAX_PATTERN_LENGTH } from './functions.js';

export {
  type CompiledExpression,
  type CompileOptions,
  compileExpression,
  DEFAULT_VARIABLES,
  type ResultType,
} from './compile.js';
export { ExpressionError, ExpressionRuntimeError } from './errors.js';
export type { Scope } from './runtime.js';

/** A short reference of the expression language, for docs and CLI help. */
export function describeExpressionSyntax(): string {
  const width = Math.max(...[...BUILTINS].map(([name, def]) => name.length + def.params.length + 2));
  const functions = [...BUILTINS]
    .map(([name, def]) => `  ${`${name}(${def.params})`.padEnd(width)}  ${def.doc}`)
    .join('\n');
  return `Expressions (filter: a condition; map: a value, usually an object literal)

Variables: value, key, timestamp, headers, topic, partition, offset
Literals:  42  -1.5  6.02e23  'text'  "text" (escapes \\n \\t \\' \\" \\\\ \\uXXXX)  true  false  null
           [a, b]   { name: expr, 'quoted key': expr }
Members:   value.a.b   value['a b']   value.items[0]
           Missing members give null, also through null (value.a.b.c is null when a is missing).
           Only own properties of plain objects and array/string indexes are read; __proto__,
           constructor and prototype are rejected. Use len(x), not x.length.

Operators, loosest first:
  c ? a : b               condition must be a boolean (null counts as false)
  a ?? b                  a unless a is null (needs parentheses when mixed with && or ||)
  a || b                  booleans only (null counts as false); short-circuit
  a && b
  a == b   a != b         strict: no coercion (1 == '1' is false); arrays/objects compare by content
  a < b  <=  >  >=        two numbers or two strings; false if either is null; no chaining
  x in list               element of an array, key of an object, substring of a string
  a + b                   numbers, or two strings (concatenation; use string(x) for others)
  a - b  *  /  %          numbers; dividing by zero is an error
  -a   !a                 negation, logical not
  (a)                     grouping

Functions:
${functions}

Type errors at runtime (e.g. 'a' - 1, an object < a number) fail the record with a message naming
the operator and the operand types; the record goes to the dead-letter topic.
Regex patterns are limited to ${MAX_PATTERN_LENGTH} characters.

Examples:
  filter: value.amount > 100 && value.tenant in ['acme', 'globex']
  filter: hash(key) % 100 < 10                       # a stable 10% sample
  map:    { id: value.id, name: lower(trim(value.name ?? '')), big: value.amount >= 1e6 }`;
}
