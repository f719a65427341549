import { type Document, isMap, isPair, isScalar, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError, type ConfigProblem } from '../core/errors.js';
import { didYouMean } from '../util/suggest.js';

export type Path = (string | number)[];

/** `steps[2].expr` */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

/**
 * Replaces `${NAME}` and `${NAME:-default}` in every string scalar. Done after parsing, so a
 * value can never change the YAML's structure and line numbers stay those of the file.
 */
function interpolate(
  value: unknown,
  env: NodeJS.ProcessEnv,
  path: Path,
  missing: { path: Path; name: string }[],
): unknown {
  if (typeof value === 'string') {
    return value.replace(
      /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
      (_, name: string, fallback?: string) => {
        const v = env[name];
        if (v !== undefined && v !== '') return v;
        if (fallback !== undefined) return fallback;
        missing.push({ path, name });
        return '';
      },
    );
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, [...path, i], missing));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, env, [...path, k], missing);
    return out;
  }
  return value;
}

/** Position of the node at `path` (or of `key`'s key within it), or of the closest ancestor. */
function locate(
  doc: Document,
  lc: LineCounter,
  path: Path,
  key?: string,
): { line: number; column: number } | undefined {
  for (let n = path.length; n >= 0; n--) {
    let node = doc.getIn(path.slice(0, n), true) as unknown;
    if (n === path.length && key !== undefined && isMap(node)) {
      const pair = node.items.find((it) => isPair(it) && isScalar(it.key) && it.key.value === key);
      if (pair && isScalar(pair.key)) node = pair.key;
    }
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (range) {
      const pos = lc.linePos(range[0]);
      return { line: pos.line, column: pos.col };
    }
  }
  return undefined;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `'${value}'`;
  return `${typeof value} ${String(value)}`;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const p of path) v = v == null ? undefined : (v as Record<PropertyKey, unknown>)[p];
  return v;
}

type Def = Record<string, unknown> & { type: string };
const defOf = (t: unknown): Def => (t as { _zod: { def: Def } })._zod.def;

/** Strips optional/default/nullable/pipe wrappers; with `value`, also picks a union's member by its `kind`. */
function unwrap(t: unknown, value?: unknown, pickUnion = true): unknown {
  for (let guard = 0; t && guard < 20; guard++) {
    const def = defOf(t);
    if (def.innerType) t = def.innerType;
    else if (def.type === 'pipe') t = def.in;
    else if (def.type === 'union' && pickUnion) {
      const options = def.options as unknown[];
      const kind = (value as { kind?: unknown } | undefined)?.kind;
      t = options.find((o) => discriminatorValues(o).includes(String(kind))) ?? options[0];
    } else return t;
  }
  return t;
}

function discriminatorValues(option: unknown): string[] {
  const kind = (option as { shape?: Record<string, unknown> }).shape?.kind;
  return kind ? ((defOf(kind).values as unknown[] | undefined) ?? []).map(String) : [];
}

/** The schema of the value at `path` in `root`, with the last union left for the caller. */
function schemaAt(schema: unknown, root: unknown, path: readonly PropertyKey[]): unknown {
  let s = schema;
  let v = root;
  for (const p of path) {
    const def = defOf(unwrap(s, v));
    if (def.type === 'array') s = def.element;
    else if (def.type === 'object') s = (def.shape as Record<string, unknown>)[String(p)];
    else if (def.type === 'record') s = def.valueType;
    else return undefined;
    if (!s) return undefined;
    v = v == null ? undefined : (v as Record<PropertyKey, unknown>)[p];
  }
  return s;
}

/** Keys the schema allows for the mapping at `path` (following `kind` discriminators). */
function knownKeys(schema: z.ZodType, root: unknown, path: readonly PropertyKey[]): string[] {
  const s = schemaAt(schema, root, path);
  const shape = s && (unwrap(s, valueAt(root, path)) as { shape?: Record<string, unknown> }).shape;
  return shape ? Object.keys(shape) : [];
}

function problemMessage(
  issue: z.core.$ZodIssue,
  input: unknown,
  schema: z.ZodType,
): { message: string; key?: string } {
  const found = valueAt(input, issue.path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = knownKeys(schema, input, issue.path);
      const key = issue.keys[0] ?? '';
      const more = issue.keys.length > 1 ? ` (and ${issue.keys.slice(1).join(', ')})` : '';
      return {
        key,
        message: `unknown key '${key}'${more}${didYouMean(key, known)}; expected one of: ${known.join(', ')}`,
      };
    }
    case 'invalid_type':
      if (found === undefined) return { message: `missing required key (expected ${issue.expected})` };
      return { message: `expected ${issue.expected}, found ${describe(found)}` };
    case 'invalid_value': {
      const values = issue.values.map(String);
      if (found === undefined)
        return { message: `missing required key (expected one of ${values.join(', ')})` };
      return {
        message: `expected one of ${values.map((v) => `'${v}'`).join(', ')}, found ${describe(found)}${
          typeof found === 'string' ? didYouMean(found, values) : ''
        }`,
      };
    }
    case 'invalid_union': {
      // A discriminated union (`kind`) names its options; the path ends at the discriminator.
      const { discriminator, options } = issue as { discriminator?: string; options?: unknown[] };
      if (!discriminator || !options) return { message: issue.message };
      const kinds = options.map(String);
      if (found === undefined)
        return { message: `missing '${discriminator}' (expected one of: ${kinds.join(', ')})` };
      return {
        message: `unknown ${discriminator} ${describe(found)}${
          typeof found === 'string' ? didYouMean(found, kinds) : ''
        }; expected one of: ${kinds.join(', ')}`,
      };
    }
    case 'too_small':
    case 'too_big': {
      if (issue.code === 'too_small' && issue.origin === 'string' && issue.minimum === 1)
        return { message: `expected a non-empty string, found ''` };
      // A custom message (e.g. 'at least one sink') says it best; zod's default ones start so.
      if (!/^Too (small|big)/.test(issue.message)) return { message: issue.message };
      const small = issue.code === 'too_small';
      const bound = small ? issue.minimum : issue.maximum;
      const op = `${small ? '>' : '<'}${issue.inclusive === false ? '' : '='}`;
      if (issue.origin === 'number' || issue.origin === 'int' || issue.origin === 'bigint')
        return { message: `expected a number ${op} ${String(bound)}, found ${describe(found)}` };
      const unit = issue.origin === 'string' ? 'characters' : 'items';
      return { message: `expected ${small ? 'at least' : 'at most'} ${String(bound)} ${unit}` };
    }
    case 'invalid_format': {
      // A pattern's own message says what is allowed (e.g. 'letters, digits and _'); zod's
      // default one only names the format.
      const wanted =
        issue.format === 'datetime'
          ? 'an ISO-8601 time such as 2026-01-01T00:00:00Z'
          : issue.format === 'regex' && !issue.message.startsWith('Invalid')
            ? issue.message
            : `a ${issue.format}`;
      return { message: `expected ${wanted}, found ${describe(found)}` };
    }
    default:
      return { message: issue.message };
  }
}

/** Finds where a YAML path (and optionally a key inside it) is in the file. */
export type Locator = (path: Path, key?: string) => { line: number; column: number } | undefined;

/**
 * Parses YAML text, interpolates environment variables and validates it against `schema`.
 * Every problem names the file, the line, the YAML path, what was expected and what was found.
 */
export function parseAndValidate<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
  env: NodeJS.ProcessEnv = process.env,
): z.infer<S> {
  return parseAndLocate(text, file, schema, env).data;
}

/** `parseAndValidate`, also returning a locator for problems found later (e.g. at component creation). */
export function parseAndLocate<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
  env: NodeJS.ProcessEnv = process.env,
): { data: z.infer<S>; locate: Locator } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = lc.linePos(e.pos[0]);
        return {
          file,
          line: pos.line,
          column: pos.col,
          path: '',
          message: `invalid YAML: ${e.message.split('\n')[0]}`,
        };
      }),
    );
  }
  const raw = doc.toJS() as unknown;
  const missing: { path: Path; name: string }[] = [];
  const input = interpolate(raw, env, [], missing);
  const problems: ConfigProblem[] = missing.map((m) => ({
    file,
    ...locate(doc, lc, m.path),
    path: formatPath(m.path),
    message: `environment variable ${m.name} is not set (write \${${m.name}:-default} for a default)`,
  }));
  const result = schema.safeParse(input);
  if (!result.success) {
    const missingAt = new Set(missing.map((m) => formatPath(m.path)));
    for (const issue of result.error.issues) {
      // An unset variable is the problem there; what its empty value fails is noise.
      if (missingAt.has(formatPath(issue.path))) continue;
      const { message, key } = problemMessage(issue, input, schema);
      const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
      problems.push({
        file,
        ...locate(doc, lc, path, key),
        path: formatPath(key ? [...path, key] : path),
        message,
      });
    }
  }
  if (problems.length > 0) {
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    throw new ConfigError(problems);
  }
  return {
    data: (result as { data: z.infer<S> }).data,
    locate: (path, key) => locate(doc, lc, path, key),
  };
}
