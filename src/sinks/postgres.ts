import { createHash } from 'node:crypto';
import { finished } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { z } from 'zod';
import type { ComponentContext, ComponentDefinition, Sink } from '../core/component.js';
import type { FlotillaRecord } from '../core/record.js';
import { SinkTenancy } from '../tenancy/sink-tenancy.js';
import { TargetCache } from '../tenancy/target-cache.js';
import { columnTypeSchema, databaseSinkShape, identifierSchema } from './shared/config.js';
import {
  DatabaseSink,
  type Encoded,
  NO_FAILURES,
  onceUntilDone,
  type RowFailure,
  type SinkDriver,
  type SinkTargets,
} from './shared/database-sink.js';
import { type ErrorKind, RowRefusedError, SinkConfigError, transportErrorKind } from './shared/errors.js';
import { RowMapper } from './shared/rows.js';

/**
 * From this many rows a statement goes faster through COPY and a staging table than through
 * INSERT … unnest: the two were even at 5,000 rows, COPY 17 % ahead at 10,000 and INSERT 7–14 %
 * ahead at 1,000–2,000 (`npm run bench -- sinks --only postgres_copy,postgres_insert`).
 */
const COPY_FROM_ROWS = 8000;

export const postgresSinkSchema = z
  .object({
    kind: z.literal('postgres'),
    ...databaseSinkShape,
    url: z.string().min(1).describe('Connection string, e.g. postgres://user:password@host:5432/database.'),
    schema: identifierSchema.default('public').describe('Schema of the table.'),
    table: identifierSchema.describe(
      'Table to upsert into; it needs a primary key or unique index on the id column.',
    ),
    id_column: identifierSchema
      .default('id')
      .describe('Column that holds the record id (the conflict target).'),
    mode: z
      .enum(['auto', 'insert', 'copy'])
      .default('auto')
      .describe(
        `insert: one INSERT … SELECT FROM unnest($1::text[], …) ON CONFLICT per statement; copy: COPY into a temporary staging table, then INSERT … SELECT … ON CONFLICT, in one transaction; auto: copy for statements of ${COPY_FROM_ROWS} rows or more, where it is the faster (docs/sinks.md), insert below.`,
      ),
    pool_size: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(4)
      .describe('Connections in the pool (with tenancy database: in each tenant database pool).'),
    tenant_pools: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(8)
      .describe(
        'tenancy database: tenant databases with an open pool, at most; beyond it the least recently used idle pool is closed.',
      ),
    create_table: z
      .object({
        columns: z
          .record(identifierSchema, columnTypeSchema)
          .describe(
            'Column name → PostgreSQL type; the id column (text PRIMARY KEY) is added if absent (tenancy row: the tenant column too, and the key is (tenant, id)).',
          ),
      })
      .strict()
      .optional()
      .describe(
        'Create the table if it does not exist (with tenancy schema or database: in each tenant namespace).',
      ),
  })
  .strict()
  .superRefine((c, ctx) => {
    const strategy = c.tenancy?.strategy;
    if ((strategy === 'schema' || strategy === 'database') && !c.create_table) {
      ctx.addIssue({
        code: 'custom',
        path: ['create_table'],
        message: `tenancy strategy ${strategy} creates each tenant's table on first use: declare create_table.columns`,
      });
    }
    if (strategy === 'schema' && c.schema !== 'public') {
      ctx.addIssue({
        code: 'custom',
        path: ['schema'],
        message:
          "with tenancy strategy schema each tenant's schema is the tenancy prefix + the tenant: remove schema",
      });
    }
  })
  .describe('Upserts records into a PostgreSQL table on the record id (INSERT … ON CONFLICT DO UPDATE).');

export type PostgresSinkConfig = z.infer<typeof postgresSinkSchema>;

/** A column the sink writes: its name, its type without modifier (for casts) and its text form. */
interface Column {
  name: string;
  type: string;
  toText(value: unknown): string | null;
}

/** The statements of one table, built once from its catalog entry. */
interface Statements {
  /** Every column of the table by name (a value field must be one of them). */
  tableColumns: Map<string, Column>;
  /** The columns each row carries: the id column first (for `row`, then the tenant column). */
  written: Column[];
  insert: string;
  /** copy mode: the session's temporary staging table and its creation. */
  staging: { name: string; create: string };
  copy: string;
  merge: string;
}

type Payload = (string | null)[];

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * PostgreSQL's text input form of a JS value, which is what both COPY and the `text[]` parameters
 * carry; the server parses it as the column's type (a mismatch is a row error).
 */
function scalarText(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v instanceof Date) return v.toISOString();
  return JSON.stringify(v);
}

const jsonText = (v: unknown): string | null => (v === null || v === undefined ? null : JSON.stringify(v));

/** `{"a","b",NULL}`: an array literal for an array column (nested arrays nest). */
function arrayLiteral(items: unknown[]): string {
  const parts = items.map((item) => {
    if (Array.isArray(item)) return arrayLiteral(item);
    const text = scalarText(item);
    return text === null ? 'NULL' : `"${text.replace(/[\\"]/g, '\\$&')}"`;
  });
  return `{${parts.join(',')}}`;
}

const arrayText = (v: unknown): string | null => (Array.isArray(v) ? arrayLiteral(v) : scalarText(v));

const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** One line of COPY's text format. */
function copyLine(values: Payload): string {
  let line = '';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) line += '\t';
    line += v === null || v === undefined ? '\\N' : v.replace(/[\\\n\r\t]/g, (c) => COPY_ESCAPES[c] ?? c);
  }
  return `${line}\n`;
}

const ROW_ERROR_CLASSES = new Set(['22', '23']);
/** datatype_mismatch, and NUL or invalid bytes in text (class 22 covers the rest). */
const ROW_ERROR_CODES = new Set(['42804']);

/** SQLSTATE classes: 22 data exception, 23 constraint, 08 connection, 53 resources, 57 operator. */
export function classifyPostgresError(err: unknown): ErrorKind {
  const transport = transportErrorKind(err);
  if (transport) return transport;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    const cls = code.slice(0, 2);
    if (ROW_ERROR_CLASSES.has(cls) || ROW_ERROR_CODES.has(code)) return 'row';
    if (cls === '08' || code === '57P01' || code === '57P02' || code === '57P03') return 'connection';
    if (code === '57014') return 'timeout';
    if (cls === '53') return 'overloaded';
    return 'other';
  }
  const message = err instanceof Error ? err.message : '';
  if (/timeout/i.test(message)) return 'timeout';
  if (/connection (terminated|ended|error)|not queryable|Connection is closed/i.test(message)) {
    return 'connection';
  }
  return 'other';
}

/** Where one target's rows go: a table reached through a pool, and its statements. */
interface Target {
  pool: pg.Pool;
  /** Quoted `schema.table`. */
  table: string;
  statements: Statements;
  /** row: the tenant each transaction sets as TENANT_SETTING, which the row-level security policy reads. */
  tenant?: string;
}

/** The setting the row-level security policy compares the tenant column with; set per transaction. */
export const TENANT_SETTING = 'flotilla.tenant';
/** Name of the policy the sink creates on a `row` table. */
export const TENANT_POLICY = 'flotilla_tenant_isolation';
/** Tenant schemas whose statements are kept; a schema used again after eviction is re-read. */
const CACHED_TENANT_TABLES = 1024;
const DUPLICATE_DATABASE = '42P04';
const UNDEFINED_TABLE = '42P01';

const tableName = (schema: string, table: string) => `${quoteIdent(schema)}.${quoteIdent(table)}`;

/** The connection string with another database. */
function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

class PostgresDriver implements SinkDriver<Payload, Target | undefined> {
  private readonly pool: pg.Pool;
  private readonly mapper: RowMapper;
  private readonly tenancy: SinkTenancy | undefined;
  /** row: the tenant column, written by the sink and part of the conflict target. */
  private readonly tenantColumn: string | undefined;
  /** The table of a sink without tenancy or with `row` (one table for every tenant). */
  private single: Target | undefined;
  /** schema and database: each tenant's table (and, for database, its pool). */
  private readonly perTenant: TargetCache<Target> | undefined;
  /** Staging tables each pooled connection already has (temporary tables are per session). */
  private readonly staged = new WeakMap<pg.PoolClient, Set<string>>();
  readonly prepare?: () => Promise<void>;
  readonly targets?: SinkTargets<Target | undefined>;

  constructor(
    private readonly config: PostgresSinkConfig,
    private readonly ctx: ComponentContext,
  ) {
    this.mapper = new RowMapper(config.columns, [config.id_column]);
    const tenancy = config.tenancy && new SinkTenancy(config.tenancy);
    this.tenancy = tenancy;
    this.tenantColumn = tenancy?.strategy === 'row' ? tenancy.column : undefined;
    this.pool = this.newPool(config.url);
    if (!tenancy || tenancy.strategy === 'row') {
      const table = tableName(config.schema, config.table);
      this.prepare = onceUntilDone(async () => {
        this.single = await this.prepareTable(this.pool, table);
      });
    } else if (tenancy.strategy === 'schema') {
      this.perTenant = new TargetCache({
        max: CACHED_TENANT_TABLES,
        open: (schema) =>
          this.prepareTable(
            this.pool,
            tableName(schema, config.table),
            `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`,
          ),
      });
    } else {
      this.perTenant = new TargetCache({
        max: config.tenant_pools,
        open: (database) => this.openTenantDatabase(database),
        close: (target) => target.pool.end(),
      });
    }
    if (tenancy) {
      const perTenant = this.perTenant;
      this.targets = {
        of: (record) => tenancy.targetOf(record),
        // row: one table; the target is the tenant its transactions set.
        acquire: perTenant
          ? (namespace) => perTenant.acquire(namespace)
          : async (tenant) => ({ ...(this.single as Target), tenant }),
        release: (namespace) => perTenant?.release(namespace),
      };
    }
  }

  encode(record: FlotillaRecord, target: Target | undefined): { payload: Payload; bytes: number } {
    const { statements: st, table, tenant } = target ?? (this.single as Target);
    const row = this.mapper.map(record);
    if (tenant !== undefined) this.tenancy?.checkRow(row, tenant);
    for (const field in row) {
      if (!st.tableColumns.has(field)) {
        throw new RowRefusedError(
          `table ${table} has no column ${quoteIdent(field)} (pick fields with columns:)`,
        );
      }
    }
    const payload: Payload = new Array(st.written.length);
    payload[0] = record.id;
    let bytes = record.id.length;
    let first = 1;
    if (tenant !== undefined) {
      payload[1] = tenant;
      bytes += tenant.length + 1;
      first = 2;
    }
    for (let i = first; i < st.written.length; i++) {
      const column = st.written[i] as Column;
      const text = column.toText(row[column.name]);
      payload[i] = text;
      bytes += (text?.length ?? 2) + 1;
    }
    return { payload, bytes };
  }

  /**
   * `insert` without a tenant to set is one pooled statement; `copy`, and any write of a `row`
   * tenant, is a transaction on one connection (SET LOCAL only lasts that long).
   */
  async flush(rows: Encoded<Payload>[], target: Target | undefined): Promise<readonly RowFailure[]> {
    const t = target ?? (this.single as Target);
    const st = t.statements;
    const { mode } = this.config;
    if (mode === 'copy' || (mode === 'auto' && rows.length >= COPY_FROM_ROWS)) {
      await this.inTransaction(t, (client) => this.copyAndMerge(client, st, rows), st.staging);
    } else if (t.tenant !== undefined) {
      await this.inTransaction(t, (client) => client.query(st.insert, insertParams(st, rows)));
    } else {
      await t.pool.query(st.insert, insertParams(st, rows));
    }
    return NO_FAILURES;
  }

  classify(err: unknown): ErrorKind {
    return classifyPostgresError(err);
  }

  /** Through the sink's pool (with tenancy database: the pool of the database in `url`). */
  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }

  /** COPY names the line it could not read: `COPY flotilla_staging, line 3, column n: "abc"`. */
  failedRow(err: unknown): number | undefined {
    const where = (err as { where?: unknown }).where;
    const m = typeof where === 'string' ? /^COPY [^,]+, line (\d+)/m.exec(where) : null;
    return m ? Number(m[1]) - 1 : undefined;
  }

  async close(): Promise<void> {
    await this.perTenant?.close();
    await this.pool.end();
  }

  private newPool(connectionString: string): pg.Pool {
    const timeoutMs = Math.round(this.config.timeout * 1000);
    const pool = new pg.Pool({
      connectionString,
      max: this.config.pool_size,
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs,
      statement_timeout: timeoutMs,
      keepAlive: true,
    });
    // An idle connection that breaks must not crash the process; the next write reports it.
    pool.on('error', (err) => this.ctx.logger.debug({ err }, 'idle PostgreSQL connection closed'));
    return pool;
  }

  /** Runs `setup` (a schema), creates the table if declared, secures it for `row`, reads its columns. */
  private async prepareTable(pool: pg.Pool, table: string, setup?: string): Promise<Target> {
    if (setup) await pool.query(setup);
    if (this.config.create_table)
      await pool.query(this.createTableSql(table, this.config.create_table.columns));
    if (this.tenantColumn) await this.ensureRowSecurity(pool, table, this.tenantColumn);
    return { pool, table, statements: await this.readTable(pool, table) };
  }

  /**
   * ENABLE and FORCE row-level security (FORCE: the policy binds the table's owner too; only
   * superusers and BYPASSRLS roles pass it) and a policy that shows and accepts only rows of the
   * tenant the transaction set. Done once per table, by whoever may (the owner); then skipped.
   */
  private async ensureRowSecurity(pool: pg.Pool, table: string, column: string): Promise<void> {
    const { rows } = await pool.query<{ enabled: boolean; forced: boolean; policy: boolean }>(
      `SELECT c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
              EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $2) AS policy
         FROM pg_class c WHERE c.oid = $1::regclass`,
      [table, TENANT_POLICY],
    );
    const state = rows[0];
    const owned = `${quoteIdent(column)} = current_setting('${TENANT_SETTING}', true)`;
    const ddl: string[] = [];
    if (!state?.enabled) ddl.push(`ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY`);
    if (!state?.forced) ddl.push(`ALTER TABLE ${table} FORCE ROW LEVEL SECURITY`);
    if (!state?.policy) {
      ddl.push(
        `CREATE POLICY ${quoteIdent(TENANT_POLICY)} ON ${table} USING (${owned}) WITH CHECK (${owned})`,
      );
    }
    if (ddl.length > 0) await pool.query(ddl.join('; '));
  }

  /** Creates the tenant's database if missing (closed to PUBLIC), then its table, with a pool of its own. */
  private async openTenantDatabase(database: string): Promise<Target> {
    const exists = await this.pool.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (exists.rowCount === 0) {
      await this.pool.query(`CREATE DATABASE ${quoteIdent(database)}`).catch((err: unknown) => {
        // Another worker created it first.
        if ((err as { code?: unknown }).code !== DUPLICATE_DATABASE) throw err;
      });
    }
    // New databases grant CONNECT to PUBLIC; every time, in case a creator died before revoking.
    await this.pool.query(`REVOKE ALL ON DATABASE ${quoteIdent(database)} FROM PUBLIC`);
    const pool = this.newPool(withDatabase(this.config.url, database));
    try {
      return await this.prepareTable(pool, tableName(this.config.schema, this.config.table));
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
  }

  /** COPY into the session's staging table and merge (the staging table empties at commit). */
  private async copyAndMerge(client: pg.PoolClient, st: Statements, rows: Encoded<Payload>[]): Promise<void> {
    const copy = client.query(copyFrom(st.copy));
    let body = '';
    for (const r of rows) body += copyLine(r.payload);
    copy.end(body);
    await finished(copy);
    await client.query(st.merge);
  }

  /**
   * Runs `work` in a transaction on one connection, with the target's tenant set for it; `staging`
   * names a temporary table created first, outside the transaction, once per connection.
   */
  private async inTransaction(
    target: Target,
    work: (client: pg.PoolClient) => Promise<unknown>,
    staging?: { name: string; create: string },
  ): Promise<void> {
    const client = await target.pool.connect();
    let broken: unknown;
    // A checked-out connection that drops between statements emits 'error': note it, do not crash.
    const onError = (err: Error) => {
      broken ??= err;
    };
    client.on('error', onError);
    try {
      if (staging) await this.ensureStaging(client, staging);
      await client.query('BEGIN');
      try {
        if (target.tenant !== undefined) {
          await client.query(`SELECT set_config('${TENANT_SETTING}', $1, true)`, [target.tenant]);
        }
        await work(client);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
          broken = rollbackErr;
        });
        throw err;
      }
    } catch (err) {
      if (classifyPostgresError(err) !== 'row') broken ??= err;
      throw err;
    } finally {
      client.off('error', onError);
      // A connection that failed for a reason other than the data is dropped, not reused.
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  private async ensureStaging(
    client: pg.PoolClient,
    staging: { name: string; create: string },
  ): Promise<void> {
    let names = this.staged.get(client);
    if (names?.has(staging.name)) return;
    await client.query(staging.create);
    if (!names) {
      names = new Set();
      this.staged.set(client, names);
    }
    names.add(staging.name);
  }

  private createTableSql(table: string, columns: Record<string, string>): string {
    const id = this.config.id_column;
    const tenant = this.tenantColumn;
    const types = {
      [id]: columns[id] ?? 'text',
      ...(tenant ? { [tenant]: columns[tenant] ?? 'text' } : {}),
      ...columns,
    };
    const defs = Object.entries(types).map(
      ([name, type]) => `${quoteIdent(name)} ${type}${!tenant && name === id ? ' PRIMARY KEY' : ''}`,
    );
    // row: the key is (tenant, id), so a tenant's upsert can only ever meet its own rows.
    if (tenant) defs.push(`PRIMARY KEY (${quoteIdent(tenant)}, ${quoteIdent(id)})`);
    return `CREATE TABLE IF NOT EXISTS ${table} (${defs.join(', ')})`;
  }

  private async readTable(pool: pg.Pool, table: string): Promise<Statements> {
    const { rows } = await pool
      .query<{ name: string; type: string; category: string; base: string }>(
        `SELECT a.attname AS name, format_type(a.atttypid, NULL) AS type, t.typcategory AS category,
              format_type(COALESCE(NULLIF(t.typelem, 0), t.oid), NULL) AS base
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        ORDER BY a.attnum`,
        [table],
      )
      .catch((err: unknown) => {
        // The write is retried (the table may be on its way, e.g. a migration): say what to do.
        if ((err as { code?: string }).code !== UNDEFINED_TABLE) throw err;
        throw new SinkConfigError(
          `table ${table} does not exist: create it, let the sink create it (create_table:), or set the schema it is in (schema:)`,
          { cause: err },
        );
      });
    const tableColumns = new Map<string, Column>(
      rows.map((r) => {
        const toText =
          r.category === 'A' ? arrayText : r.base === 'json' || r.base === 'jsonb' ? jsonText : scalarText;
        return [r.name, { name: r.name, type: r.type, toText }];
      }),
    );
    const column = (name: string, from: string) => {
      const found = tableColumns.get(name);
      if (!found) throw new SinkConfigError(`table ${table} has no ${from} column ${quoteIdent(name)}`);
      return found;
    };
    const keys = [column(this.config.id_column, 'id')];
    if (this.tenantColumn) {
      keys.push(column(this.tenantColumn, 'tenant'));
      await this.checkTenantKey(pool, table);
    }
    const keyNames = keys.map((k) => k.name);
    const names = (this.mapper.declared ?? [...tableColumns.keys()]).filter((n) => !keyNames.includes(n));
    return buildStatements(
      table,
      tableColumns,
      keys,
      names.map((name) => column(name, 'columns:')),
    );
  }

  /** row: the conflict target (tenant, id) needs a unique index on exactly those columns. */
  private async checkTenantKey(pool: pg.Pool, table: string): Promise<void> {
    const keys = [this.config.id_column, this.tenantColumn as string];
    const { rows } = await pool.query<{ found: boolean }>(
      `SELECT EXISTS (
         SELECT 1 FROM pg_index i
          WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indpred IS NULL AND i.indnatts = 2
            AND (SELECT array_agg(a.attname::text) FROM pg_attribute a
                  WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) @> $2::text[]
       ) AS found`,
      [table, keys],
    );
    if (!rows[0]?.found) {
      throw new SinkConfigError(
        `table ${table} has no primary key or unique index on (${keys.map(quoteIdent).join(', ')}): with tenancy row the sink upserts on the tenant and the id, so one tenant's write can never replace another's row`,
      );
    }
  }
}

function insertParams(st: Statements, rows: Encoded<Payload>[]): (string | null)[][] {
  return st.written.map((_, c) => rows.map((r) => r.payload[c] ?? null));
}

/**
 * The statements of one table. `keys` are the conflict target (id, or tenant and id) and come
 * first in every row; `others` are updated on conflict.
 */
function buildStatements(
  table: string,
  tableColumns: Map<string, Column>,
  keys: Column[],
  others: Column[],
): Statements {
  const written = [...keys, ...others];
  const list = written.map((c) => quoteIdent(c.name)).join(', ');
  const conflict = keys.map((c) => quoteIdent(c.name)).join(', ');
  const updated = others.map((c) => quoteIdent(c.name));
  const onConflict =
    updated.length === 0
      ? `ON CONFLICT (${conflict}) DO NOTHING`
      : `ON CONFLICT (${conflict}) DO UPDATE SET ${updated.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}`;
  // Cast to the type without its modifier: the assignment then checks varchar(n) and numeric(p,s)
  // instead of an explicit cast silently truncating.
  const casts = written.map((c, i) => `u.c${i}::${c.type}`).join(', ');
  const unnest = written.map((_, i) => `$${i + 1}::text[]`).join(', ');
  const aliases = written.map((_, i) => `c${i}`).join(', ');
  // One staging table per target table in a session (tenant schemas share connections).
  const staging = `pg_temp.${quoteIdent(`flotilla_staging_${createHash('sha1').update(table).digest('hex').slice(0, 16)}`)}`;
  return {
    tableColumns,
    written,
    insert: `INSERT INTO ${table} (${list}) SELECT ${casts} FROM unnest(${unnest}) AS u(${aliases}) ${onConflict}`,
    staging: {
      name: staging,
      create: `CREATE TEMPORARY TABLE IF NOT EXISTS ${staging} ON COMMIT DELETE ROWS AS SELECT ${list} FROM ${table} WITH NO DATA`,
    },
    copy: `COPY ${staging} (${list}) FROM STDIN`,
    merge: `INSERT INTO ${table} (${list}) SELECT ${list} FROM ${staging} ${onConflict}`,
  };
}

export const postgresSink: ComponentDefinition<typeof postgresSinkSchema, Sink> = {
  kind: 'postgres',
  description: postgresSinkSchema.description ?? '',
  schema: postgresSinkSchema,
  create: (config, ctx) =>
    new DatabaseSink<Payload, Target | undefined>(
      new PostgresDriver(config, ctx),
      config,
      { kind: 'postgres', service: 'PostgreSQL', lastPerId: true },
      ctx,
    ),
};
