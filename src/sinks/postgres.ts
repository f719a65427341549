import { finished } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { z } from 'zod';
import type { ComponentContext, ComponentDefinition, Sink } from '../core/component.js';
import type { FlotillaRecord } from '../core/record.js';
import { columnTypeSchema, databaseSinkShape, identifierSchema } from './shared/config.js';
import {
  DatabaseSink,
  type Encoded,
  NO_FAILURES,
  onceUntilDone,
  type RowFailure,
  type SinkDriver,
} from './shared/database-sink.js';
import { type ErrorKind, RowRefusedError, SinkConfigError, transportErrorKind } from './shared/errors.js';
import { RowMapper } from './shared/rows.js';

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
      .enum(['insert', 'copy'])
      .default('insert')
      .describe(
        'insert: one INSERT … SELECT FROM unnest($1::text[], …) ON CONFLICT per statement (the faster here, see docs/sinks.md); copy: COPY into a temporary staging table, then INSERT … SELECT … ON CONFLICT, in one transaction.',
      ),
    pool_size: z.number().int().min(1).max(100).default(4).describe('Connections in the pool.'),
    create_table: z
      .object({
        columns: z
          .record(identifierSchema, columnTypeSchema)
          .describe('Column name → PostgreSQL type; the id column (text PRIMARY KEY) is added if absent.'),
      })
      .strict()
      .optional()
      .describe('Create the table if it does not exist.'),
  })
  .strict()
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
  /** The columns each row carries, the id column first. */
  written: Column[];
  insert: string;
  copy: string;
  createStaging: string;
  merge: string;
}

type Payload = (string | null)[];

const STAGING = 'pg_temp."flotilla_staging"';

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

class PostgresDriver implements SinkDriver<Payload> {
  private readonly pool: pg.Pool;
  private readonly mapper: RowMapper;
  private readonly table: string;
  private statements: Statements | undefined;
  /** Pooled connections that already have the staging table (temporary tables are per session). */
  private readonly staged = new WeakSet<pg.PoolClient>();
  readonly prepare: () => Promise<void>;

  constructor(
    private readonly config: PostgresSinkConfig,
    ctx: ComponentContext,
  ) {
    this.mapper = new RowMapper(config.columns, [config.id_column]);
    this.table = `${quoteIdent(config.schema)}.${quoteIdent(config.table)}`;
    const timeoutMs = Math.round(config.timeout * 1000);
    this.pool = new pg.Pool({
      connectionString: config.url,
      max: config.pool_size,
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs,
      statement_timeout: timeoutMs,
      keepAlive: true,
    });
    // An idle connection that breaks must not crash the process; the next write reports it.
    this.pool.on('error', (err) => ctx.logger.debug({ err }, 'idle PostgreSQL connection closed'));
    this.prepare = onceUntilDone(async () => {
      if (config.create_table) await this.pool.query(this.createTableSql(config.create_table.columns));
      this.statements = await this.readTable();
    });
  }

  encode(record: FlotillaRecord): { payload: Payload; bytes: number } {
    const st = this.statements as Statements;
    const row = this.mapper.map(record);
    for (const field in row) {
      if (!st.tableColumns.has(field)) {
        throw new RowRefusedError(
          `table ${this.table} has no column ${quoteIdent(field)} (pick fields with columns:)`,
        );
      }
    }
    const payload: Payload = new Array(st.written.length);
    payload[0] = record.id;
    let bytes = record.id.length;
    for (let i = 1; i < st.written.length; i++) {
      const column = st.written[i] as Column;
      const text = column.toText(row[column.name]);
      payload[i] = text;
      bytes += (text?.length ?? 2) + 1;
    }
    return { payload, bytes };
  }

  flush(rows: Encoded<Payload>[]): Promise<readonly RowFailure[]> {
    return this.config.mode === 'copy' ? this.copyAndMerge(rows) : this.insert(rows);
  }

  classify(err: unknown): ErrorKind {
    return classifyPostgresError(err);
  }

  /** COPY names the line it could not read: `COPY flotilla_staging, line 3, column n: "abc"`. */
  failedRow(err: unknown): number | undefined {
    const where = (err as { where?: unknown }).where;
    const m = typeof where === 'string' ? /^COPY [^,]+, line (\d+)/m.exec(where) : null;
    return m ? Number(m[1]) - 1 : undefined;
  }

  close(): Promise<void> {
    return this.pool.end();
  }

  /** One INSERT … SELECT FROM unnest($1::text[], …): one parameter per column, any number of rows. */
  private async insert(rows: Encoded<Payload>[]): Promise<readonly RowFailure[]> {
    const st = this.statements as Statements;
    const params = st.written.map((_, c) => rows.map((r) => r.payload[c] ?? null));
    await this.pool.query(st.insert, params);
    return NO_FAILURES;
  }

  /** COPY into the session's staging table and merge, in one transaction (staging empties at commit). */
  private async copyAndMerge(rows: Encoded<Payload>[]): Promise<readonly RowFailure[]> {
    const st = this.statements as Statements;
    const client = await this.pool.connect();
    let broken: unknown;
    // A checked-out connection that drops between statements emits 'error': note it, do not crash.
    const onError = (err: Error) => {
      broken ??= err;
    };
    client.on('error', onError);
    try {
      if (!this.staged.has(client)) {
        await client.query(st.createStaging);
        this.staged.add(client);
      }
      await client.query('BEGIN');
      try {
        const copy = client.query(copyFrom(st.copy));
        let body = '';
        for (const r of rows) body += copyLine(r.payload);
        copy.end(body);
        await finished(copy);
        await client.query(st.merge);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
          broken = rollbackErr;
        });
        throw err;
      }
      return NO_FAILURES;
    } catch (err) {
      if (classifyPostgresError(err) !== 'row') broken ??= err;
      throw err;
    } finally {
      client.off('error', onError);
      // A connection that failed for a reason other than the data is dropped, not reused.
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  private createTableSql(columns: Record<string, string>): string {
    const id = this.config.id_column;
    const defs = Object.entries({ [id]: columns[id] ?? 'text', ...columns }).map(
      ([name, type]) => `${quoteIdent(name)} ${type}${name === id ? ' PRIMARY KEY' : ''}`,
    );
    return `CREATE TABLE IF NOT EXISTS ${this.table} (${defs.join(', ')})`;
  }

  private async readTable(): Promise<Statements> {
    const { rows } = await this.pool.query<{ name: string; type: string; category: string; base: string }>(
      `SELECT a.attname AS name, format_type(a.atttypid, NULL) AS type, t.typcategory AS category,
              format_type(COALESCE(NULLIF(t.typelem, 0), t.oid), NULL) AS base
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        ORDER BY a.attnum`,
      [this.table],
    );
    const tableColumns = new Map<string, Column>(
      rows.map((r) => {
        const toText =
          r.category === 'A' ? arrayText : r.base === 'json' || r.base === 'jsonb' ? jsonText : scalarText;
        return [r.name, { name: r.name, type: r.type, toText }];
      }),
    );
    const id = tableColumns.get(this.config.id_column);
    if (!id)
      throw new SinkConfigError(`table ${this.table} has no id column ${quoteIdent(this.config.id_column)}`);
    const names = this.mapper.declared ?? [...tableColumns.keys()].filter((n) => n !== id.name);
    const others = names.map((name) => {
      const column = tableColumns.get(name);
      if (!column)
        throw new SinkConfigError(`table ${this.table} has no column ${quoteIdent(name)} (from columns:)`);
      return column;
    });
    return this.buildStatements(tableColumns, [id, ...others]);
  }

  private buildStatements(tableColumns: Map<string, Column>, written: Column[]): Statements {
    const list = written.map((c) => quoteIdent(c.name)).join(', ');
    const [id, ...others] = written.map((c) => quoteIdent(c.name));
    const onConflict =
      others.length === 0
        ? `ON CONFLICT (${id}) DO NOTHING`
        : `ON CONFLICT (${id}) DO UPDATE SET ${others.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}`;
    // Cast to the type without its modifier: the assignment then checks varchar(n) and numeric(p,s)
    // instead of an explicit cast silently truncating.
    const casts = written.map((c, i) => `u.c${i}::${c.type}`).join(', ');
    const unnest = written.map((_, i) => `$${i + 1}::text[]`).join(', ');
    const aliases = written.map((_, i) => `c${i}`).join(', ');
    return {
      tableColumns,
      written,
      insert: `INSERT INTO ${this.table} (${list}) SELECT ${casts} FROM unnest(${unnest}) AS u(${aliases}) ${onConflict}`,
      createStaging: `CREATE TEMPORARY TABLE IF NOT EXISTS ${STAGING} ON COMMIT DELETE ROWS AS SELECT ${list} FROM ${this.table} WITH NO DATA`,
      copy: `COPY ${STAGING} (${list}) FROM STDIN`,
      merge: `INSERT INTO ${this.table} (${list}) SELECT ${list} FROM ${STAGING} ${onConflict}`,
    };
  }
}

export const postgresSink: ComponentDefinition<typeof postgresSinkSchema, Sink> = {
  kind: 'postgres',
  description: postgresSinkSchema.description ?? '',
  schema: postgresSinkSchema,
  create: (config, ctx) =>
    new DatabaseSink(new PostgresDriver(config, ctx), config, { kind: 'postgres', lastPerId: true }, ctx),
};
