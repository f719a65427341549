import { z } from 'zod';
import { RecordError } from '../core/errors.js';
import type { FlotillaRecord } from '../core/record.js';
import { type FieldPath, fieldPathSchema } from '../steps/quality/fields.js';

/**
 * A tenant name: lowercase ASCII letters, digits and `_`, starting with a letter, at most 63
 * characters. Nothing else can appear in a schema, database, key or label built from it, so it
 * cannot end a quoted identifier, traverse a path, start a query operator or look like another
 * tenant (no uppercase, no Unicode lookalikes).
 */
export const TENANT_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;
export const TENANT_MAX_LENGTH = 63;

/** PostgreSQL, ClickHouse and MongoDB (FerretDB too) refuse or truncate longer schema and database names. */
export const NAMESPACE_MAX_LENGTH = 63;

/**
 * Names a tenant namespace must never take whatever the prefix: PostgreSQL's own schemas and
 * databases, ClickHouse's and MongoDB's system databases. `pg_*` is checked apart.
 */
const RESERVED_NAMESPACES = new Set([
  'public',
  'information_schema',
  'postgres',
  'template0',
  'template1',
  'system',
  'default',
  'admin',
  'local',
  'config',
]);

const RULE = `a tenant is lowercase ASCII letters, digits and _, starting with a letter, at most ${TENANT_MAX_LENGTH} characters`;

/** A record whose tenant is missing or not a valid tenant name; it is dead-lettered with reason `tenant`. */
export class InvalidTenantError extends RecordError {
  constructor(message: string) {
    super(message, 'tenant');
  }
}

/** A short, printable form of an untrusted value for an error message (escapes quotes and controls). */
function shown(text: string): string {
  const cut = text.length > 40 ? `${text.slice(0, 40)}…` : text;
  return `${JSON.stringify(cut)}${text.length > 40 ? ` (${text.length} characters)` : ''}`;
}

/** Why a string is not a tenant name, or undefined if it is one. */
export function tenantNameProblem(name: string): string | undefined {
  if (TENANT_PATTERN.test(name)) return undefined;
  if (name === '') return 'it is empty';
  if (name.length > TENANT_MAX_LENGTH)
    return `it has ${name.length} characters, more than ${TENANT_MAX_LENGTH}`;
  const first = name.codePointAt(0) as number;
  if (!/[a-z]/.test(name[0] as string) && first < 0x80) return `it starts with ${JSON.stringify(name[0])}`;
  let position = 1;
  for (const ch of name) {
    const code = ch.codePointAt(0) as number;
    if (code >= 0x80) {
      const hex = code.toString(16).toUpperCase().padStart(4, '0');
      return `it has the non-ASCII character U+${hex} at position ${position}`;
    }
    if (!/[a-z0-9_]/.test(ch)) return `it has ${JSON.stringify(ch)} at position ${position}`;
    position++;
  }
  return 'it does not match the tenant pattern';
}

function kindOf(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** The value as a tenant name; throws InvalidTenantError saying what is wrong with it. */
export function checkTenantName(value: unknown, where = 'tenant'): string {
  if (typeof value !== 'string') {
    const what = value === undefined || value === null ? 'missing or null' : `${kindOf(value)}, not a string`;
    throw new InvalidTenantError(`${where} is ${what}; ${RULE}`);
  }
  const problem = tenantNameProblem(value);
  if (problem)
    throw new InvalidTenantError(`${where} ${shown(value)} is not a valid tenant name: ${problem}; ${RULE}`);
  return value;
}

/**
 * The name of a tenant's schema, database or key prefix: `prefix + tenant`. Refused (so nothing is
 * created) when longer than NAMESPACE_MAX_LENGTH — databases would truncate it and two tenants
 * could share one — or when it is a system name.
 */
export function namespaceOf(prefix: string, tenant: string): string {
  const name = prefix + tenant;
  if (name.length > NAMESPACE_MAX_LENGTH) {
    throw new InvalidTenantError(
      `tenant '${tenant}' is too long for its namespace: '${prefix}' + tenant has ${name.length} characters, more than ${NAMESPACE_MAX_LENGTH}`,
    );
  }
  if (RESERVED_NAMESPACES.has(name) || name.startsWith('pg_')) {
    throw new InvalidTenantError(`tenant '${tenant}' would name the system namespace '${name}'`);
  }
  return name;
}

/** Reads and validates the tenant of records from a field path of their value. */
export class TenantResolver {
  constructor(readonly field: FieldPath) {}

  /** The record's tenant; throws InvalidTenantError naming the field and the problem. */
  tenantOf(record: FlotillaRecord): string {
    return checkTenantName(this.field.read(record.value), `tenant field '${this.field.text}'`);
  }
}

/** The `field:` option naming where the tenant is: a field path of the record value. */
export const tenantFieldSchema = fieldPathSchema
  .prefault('tenant')
  .describe('Field path of the record value that holds the tenant, e.g. tenant or meta.org.');

/**
 * A namespace prefix: lowercase, ending with `_` so no tenant can extend it into another word,
 * and not `pg_` (reserved by PostgreSQL).
 */
export const namespacePrefixSchema = z
  .string()
  .max(32)
  .regex(/^(?!pg_)[a-z][a-z0-9_]*_$/, 'lowercase letters, digits and _, ending with _, not pg_');
