import { z } from 'zod';
import {
  type CompiledExpression,
  compileExpression,
  DEFAULT_VARIABLES,
  ExpressionError,
} from '../../expr/index.js';
import { namespacePrefixSchema, tenantFieldSchema } from '../../tenancy/tenant.js';
import { durationSchema } from '../../util/duration.js';

/** What a sink's column expressions and key templates see: a step's variables plus the record id. */
export const SINK_VARIABLES: readonly string[] = [...DEFAULT_VARIABLES, 'id'];

const FIELD_PATH = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const LITERALS = new Set(['true', 'false', 'null']);

/**
 * Compiles a column source: a field path of the record value (`host`, `labels.region`) or an
 * expression over the record (`value.cpu * 100`, `key`, `id`, `timestamp`). A path whose first
 * name is not a variable reads the value, so `host` means `value.host`.
 */
export function compileFieldExpression(source: string): CompiledExpression {
  const trimmed = source.trim();
  const head = trimmed.split('.')[0] ?? '';
  const isValuePath = FIELD_PATH.test(trimmed) && !SINK_VARIABLES.includes(head) && !LITERALS.has(head);
  return compileExpression(isValuePath ? `value.${trimmed}` : source, { variables: SINK_VARIABLES });
}

/** A column source in YAML, compiled at validation time so a syntax error names its YAML path. */
export const fieldExpressionSchema = z.string().transform((source, ctx) => {
  try {
    return compileFieldExpression(source);
  } catch (err) {
    if (!(err instanceof ExpressionError)) throw err;
    ctx.addIssue({ code: 'custom', message: err.message });
    return z.NEVER;
  }
});

/** A table, column, schema or database name: validated here, and still quoted in every statement. */
export const identifierSchema = z
  .string()
  .max(63)
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'letters, digits and _, not starting with a digit');

/**
 * A column type in a `create_table` declaration (`Float64`, `Nullable(String)`, `varchar(20)`,
 * `double precision`, `text[]`). Only names, numbers, spaces, commas, balanced brackets and
 * simple quoted words: a declared type cannot end the column list or start another statement.
 */
export const columnTypeSchema = z
  .string()
  .min(1)
  .max(200)
  .refine((t) => /^[A-Za-z][A-Za-z0-9_ ,()[\]']*$/.test(t) && balanced(t), {
    message: 'a column type such as Float64, Nullable(String), double precision or varchar(20)',
  });

function balanced(type: string): boolean {
  const closing: Record<string, string> = { ')': '(', ']': '[' };
  const open: string[] = [];
  let quoted = false;
  for (const ch of type) {
    if (ch === "'") quoted = !quoted;
    else if (quoted) {
      if (!/[A-Za-z0-9_/+:. -]/.test(ch)) return false;
    } else if (ch === '(' || ch === '[') open.push(ch);
    else if (ch in closing && open.pop() !== closing[ch]) return false;
  }
  return !quoted && open.length === 0;
}

export const batchSchema = z
  .object({
    max_rows: z.number().int().min(1).max(1_000_000).default(1000).describe('Rows per statement, at most.'),
    max_bytes: z
      .number()
      .int()
      .min(1024)
      .default(4 * 1024 * 1024)
      .describe('Encoded bytes per statement, at most (a single larger row goes alone).'),
    linger: durationSchema
      .default(0)
      .describe(
        "Batching by time: writes arriving within this long of the first are written together (up to max_rows), e.g. '20ms'; 0: each batch at once.",
      ),
  })
  .strict()
  .describe('How a batch from the worker is cut into statements: memory per statement is bounded.');

export const circuitSchema = z
  .object({
    failures: z.number().int().min(1).default(5).describe('Consecutive failed writes that open the circuit.'),
    cooldown: z
      .number()
      .positive()
      .default(10)
      .describe('Seconds the circuit stays open before one trial write (half-open).'),
  })
  .strict()
  .describe('Circuit breaker: while open, writes fail at once and the sink reports unhealthy.');

export const tenancyStrategies = ['row', 'schema', 'database'] as const;
export type TenancyStrategy = (typeof tenancyStrategies)[number];

export const tenancySchema = z
  .object({
    strategy: z
      .enum(tenancyStrategies)
      .describe(
        'row: a tenant column (PostgreSQL: with row-level security); schema: a PostgreSQL schema or a ClickHouse database per tenant; database: a PostgreSQL or MongoDB database per tenant.',
      ),
    field: tenantFieldSchema,
    column: identifierSchema
      .default('tenant')
      .describe('row: the column (or document field) the sink writes the tenant to.'),
    prefix: namespacePrefixSchema
      .default('tenant_')
      .describe(
        "schema, database, and Redis keys: a tenant's namespace is prefix + tenant, e.g. tenant_acme.",
      ),
  })
  .strict()
  .describe(
    'Tenant isolation: every record has a tenant (a validated name); records without one are dead-lettered. See docs/tenancy.md.',
  );

export type TenancyConfig = z.infer<typeof tenancySchema>;

/** A sink's `superRefine` check: the strategy is one the sink supports, else an error at tenancy.strategy. */
export function refineTenancyStrategy(
  ctx: z.RefinementCtx,
  tenancy: TenancyConfig | undefined,
  kind: string,
  supported: readonly TenancyStrategy[],
  hint: string,
): void {
  if (!tenancy || supported.includes(tenancy.strategy)) return;
  ctx.addIssue({
    code: 'custom',
    path: ['tenancy', 'strategy'],
    message: `the ${kind} sink does not support tenancy strategy '${tenancy.strategy}' (supported: ${supported.join(', ')}): ${hint}`,
  });
}

export type BatchConfig = z.infer<typeof batchSchema>;
export type CircuitConfig = z.infer<typeof circuitSchema>;

/** Options every database sink has; spread into each sink's schema. */
export const databaseSinkShape = {
  name: z.string().min(1).optional().describe('Name in logs, metrics and dead letters (default: the kind).'),
  columns: z
    .record(identifierSchema, fieldExpressionSchema)
    .optional()
    .describe(
      'Column (or field) name → a field path of the value or an expression (default: every top-level field of the value).',
    ),
  batch: batchSchema.prefault({}),
  circuit: circuitSchema.prefault({}),
  timeout: z
    .number()
    .positive()
    .default(10)
    .describe('Seconds to connect or run one statement before the write counts as failed (retriable).'),
  tenancy: tenancySchema.optional(),
};

/** The part of a database sink's config the shared layer reads. */
export interface DatabaseSinkConfig {
  name?: string | undefined;
  columns?: Record<string, CompiledExpression> | undefined;
  batch: BatchConfig;
  circuit: CircuitConfig;
  timeout: number;
}
