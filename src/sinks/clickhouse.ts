import { Readable } from 'node:stream';
import { type ClickHouseClient, ClickHouseLogLevel, createClient } from '@clickhouse/client';
import { z } from 'zod';
import type { ComponentDefinition, Sink } from '../core/component.js';
import type { FlotillaRecord } from '../core/record.js';
import { SinkTenancy } from '../tenancy/sink-tenancy.js';
import { TargetCache } from '../tenancy/target-cache.js';
import {
  columnTypeSchema,
  databaseSinkShape,
  identifierSchema,
  refineTenancyStrategy,
} from './shared/config.js';
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
import { type Row, RowMapper } from './shared/rows.js';

export const clickhouseSinkSchema = z
  .object({
    kind: z.literal('clickhouse'),
    ...databaseSinkShape,
    url: z.string().min(1).describe('HTTP endpoint, e.g. http://user:password@127.0.0.1:8123.'),
    database: identifierSchema.default('default').describe('Database of the table.'),
    table: identifierSchema.describe('A ReplacingMergeTree table, ordered by (at least) the id column.'),
    id_column: identifierSchema.default('id').describe('Column that holds the record id.'),
    version_column: identifierSchema
      .default('_version')
      .describe('UInt64 column set to the write time in ms: the latest write of an id survives merges.'),
    create_table: z
      .object({
        columns: z
          .record(identifierSchema, columnTypeSchema)
          .describe(
            'Column name → ClickHouse type; the id (String) and version (UInt64) columns are added (tenancy row: the tenant column (String) too).',
          ),
        order_by: z
          .array(identifierSchema)
          .min(1)
          .optional()
          .describe(
            'Sorting key, which is also the deduplication key: it must contain the id column (tenancy row: and the tenant column; default [tenant, id]).',
          ),
      })
      .strict()
      .optional()
      .describe('Create the table (ReplacingMergeTree on the version column) if it does not exist.'),
  })
  .strict()
  .superRefine((c, ctx) => {
    const orderBy = c.create_table?.order_by;
    if (orderBy && !orderBy.includes(c.id_column)) {
      ctx.addIssue({
        code: 'custom',
        path: ['create_table', 'order_by'],
        message: `must contain the id column '${c.id_column}': rows with the same sorting key collapse into one`,
      });
    }
    const tenancy = c.tenancy;
    refineTenancyStrategy(
      ctx,
      tenancy,
      'clickhouse',
      ['row', 'schema'],
      'a ClickHouse database is the namespace level: schema gives each tenant a database',
    );
    if (tenancy?.strategy === 'row' && orderBy && !orderBy.includes(tenancy.column)) {
      ctx.addIssue({
        code: 'custom',
        path: ['create_table', 'order_by'],
        message: `must contain the tenant column '${tenancy.column}': otherwise rows of two tenants with the same id collapse into one`,
      });
    }
    if (tenancy?.strategy === 'schema') {
      if (!c.create_table) {
        ctx.addIssue({
          code: 'custom',
          path: ['create_table'],
          message:
            "tenancy strategy schema creates each tenant's database and table on first use: declare create_table.columns",
        });
      }
      if (c.database !== 'default') {
        ctx.addIssue({
          code: 'custom',
          path: ['database'],
          message:
            "with tenancy strategy schema each tenant's database is the tenancy prefix + the tenant: remove database",
        });
      }
    }
  })
  .describe(
    'Inserts records into a ClickHouse ReplacingMergeTree table as JSONEachRow; re-delivered rows collapse.',
  );

export type ClickHouseSinkConfig = z.infer<typeof clickhouseSinkSchema>;

const quote = (name: string) => `\`${name}\``;

/** Errors about the data of a row: cannot parse a value, type mismatch, unknown field, NULL, too large. */
const ROW_ERROR_CODES = new Set([6, 25, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 349]);
/** Too many simultaneous queries, no free connection, memory limit, too many parts. */
const OVERLOADED_CODES = new Set([202, 203, 241, 252]);
/** Timeout exceeded, socket timeout. */
const TIMEOUT_CODES = new Set([159, 209]);

/** The server's error code: parsed by the client for current servers, read from the text for old ones. */
function clickhouseCode(err: unknown): number | undefined {
  const code = Number((err as { code?: unknown }).code);
  if (Number.isInteger(code) && code > 0) return code;
  const m = err instanceof Error ? /^Code: (\d+)/.exec(err.message) : null;
  return m ? Number(m[1]) : undefined;
}

export function classifyClickHouseError(err: unknown): ErrorKind {
  const transport = transportErrorKind(err);
  if (transport) return transport;
  const code = clickhouseCode(err);
  if (code !== undefined) {
    if (ROW_ERROR_CODES.has(code)) return 'row';
    if (OVERLOADED_CODES.has(code)) return 'overloaded';
    if (TIMEOUT_CODES.has(code)) return 'timeout';
    if (code === 210) return 'connection';
    return 'other';
  }
  return err instanceof Error && /timeout/i.test(err.message) ? 'timeout' : 'other';
}

/** Where one target's rows go: a table of a database, with its INSERT and its columns. */
interface Target {
  /** Quoted `database.table`. */
  table: string;
  insert: string;
  columns: Set<string>;
}

/** Tenant databases whose table was checked; one used again after eviction is checked again. */
const CACHED_TENANT_TABLES = 1024;

class ClickHouseDriver implements SinkDriver<string, Target | undefined> {
  private readonly client: ClickHouseClient;
  private readonly mapper: RowMapper;
  private readonly tenancy: SinkTenancy | undefined;
  /** row: the tenant column, written by the sink and part of the sorting (deduplication) key. */
  private readonly tenantColumn: string | undefined;
  /** The table of a sink without tenancy or with `row`. */
  private single: Target | undefined;
  private lastVersion = 0;
  readonly prepare?: () => Promise<void>;
  readonly targets?: SinkTargets<Target | undefined>;

  constructor(private readonly config: ClickHouseSinkConfig) {
    this.mapper = new RowMapper(config.columns, [config.id_column, config.version_column]);
    const tenancy = config.tenancy && new SinkTenancy(config.tenancy);
    this.tenancy = tenancy;
    this.tenantColumn = tenancy?.strategy === 'row' ? tenancy.column : undefined;
    this.client = createClient({
      url: config.url,
      request_timeout: Math.round(config.timeout * 1000),
      // Failures are classified, counted and logged by the sink and the worker.
      log: { level: ClickHouseLogLevel.OFF },
    });
    if (tenancy?.strategy === 'schema') {
      // A database per tenant: ClickHouse's namespace level is the database.
      const perTenant = new TargetCache({
        max: CACHED_TENANT_TABLES,
        open: (database) => this.prepareTable(database, `CREATE DATABASE IF NOT EXISTS ${quote(database)}`),
      });
      this.targets = {
        of: (record) => tenancy.namespaceOf(record),
        acquire: (database) => perTenant.acquire(database),
        release: (database) => perTenant.release(database),
      };
    } else {
      this.prepare = onceUntilDone(async () => {
        this.single = await this.prepareTable(config.database);
      });
    }
  }

  rowKey(record: FlotillaRecord): string {
    return this.tenancy ? this.tenancy.rowKey(record) : record.id;
  }

  /** One JSONEachRow line: the row's fields, the id and a version that grows with every write. */
  encode(record: FlotillaRecord, target: Target | undefined): { payload: string; bytes: number } {
    const { table, columns } = target ?? (this.single as Target);
    const row = this.mapper.map(record);
    for (const field in row) {
      if (!columns.has(field)) {
        throw new RowRefusedError(`table ${table} has no column ${quote(field)} (pick fields with columns:)`);
      }
    }
    const fields: Row = { ...row, [this.config.id_column]: record.id };
    if (this.tenantColumn) {
      const tenancy = this.tenancy as SinkTenancy;
      const tenant = tenancy.tenantOf(record);
      tenancy.checkRow(row, tenant);
      fields[this.tenantColumn] = tenant;
    }
    this.lastVersion = Math.max(Date.now(), this.lastVersion + 1);
    fields[this.config.version_column] = this.lastVersion;
    const line = `${JSON.stringify(fields)}\n`;
    return { payload: line, bytes: Buffer.byteLength(line) };
  }

  async flush(rows: Encoded<string>[], target: Target | undefined): Promise<readonly RowFailure[]> {
    let body = '';
    for (const r of rows) body += r.payload;
    // An INSERT of less than max_insert_block_size rows is one block: it lands whole or not at all.
    const { insert } = target ?? (this.single as Target);
    const result = await this.client.exec({ query: insert, values: Readable.from([body]) });
    result.stream.destroy();
    return NO_FAILURES;
  }

  classify(err: unknown): ErrorKind {
    return classifyClickHouseError(err);
  }

  /** GET /ping: answered by the server without a query. */
  async ping(signal?: AbortSignal): Promise<void> {
    const result = await this.client.ping({ select: false, abort_signal: signal });
    if (!result.success) throw result.error;
  }

  /** ClickHouse names the 1-based row it could not parse: `… (at row 3)`. */
  failedRow(err: unknown): number | undefined {
    const m = err instanceof Error ? /\(at row (\d+)\)/.exec(err.message) : null;
    return m ? Number(m[1]) - 1 : undefined;
  }

  close(): Promise<void> {
    return this.client.close();
  }

  /** Runs `setup` (a tenant database), creates the table if declared, and checks it. */
  private async prepareTable(database: string, setup?: string): Promise<Target> {
    const table = `${quote(database)}.${quote(this.config.table)}`;
    if (setup) await this.client.command({ query: setup });
    if (this.config.create_table) {
      await this.client.command({ query: this.createTableSql(table, this.config.create_table) });
    }
    const columns = await this.readTable(database, table);
    return { table, insert: `INSERT INTO ${table} FORMAT JSONEachRow`, columns };
  }

  private createTableSql(table: string, spec: NonNullable<ClickHouseSinkConfig['create_table']>): string {
    const { id_column: id, version_column: version } = this.config;
    const tenant = this.tenantColumn;
    const columns = {
      [id]: 'String',
      ...(tenant ? { [tenant]: 'String' } : {}),
      ...spec.columns,
      [version]: 'UInt64',
    };
    const defs = Object.entries(columns).map(([name, type]) => `${quote(name)} ${type}`);
    const orderBy = (spec.order_by ?? (tenant ? [tenant, id] : [id])).map(quote).join(', ');
    return `CREATE TABLE IF NOT EXISTS ${table} (${defs.join(', ')}) ENGINE = ReplacingMergeTree(${quote(version)}) ORDER BY (${orderBy})`;
  }

  /**
   * The table's columns; refuses a table that cannot deduplicate (not a ReplacingMergeTree) and,
   * for `row`, one whose sorting key lacks the tenant (two tenants' rows of an id would collapse).
   */
  private async readTable(database: string, table: string): Promise<Set<string>> {
    // Names are validated identifiers or tenant namespaces ([a-z0-9_]); 18.16 has no query parameters.
    const where = `database = '${database}' AND name = '${this.config.table}'`;
    const tables = await this.select<{ engine: string; sorting_key: string }>(
      `SELECT engine, sorting_key FROM system.tables WHERE ${where}`,
    );
    const found = tables[0];
    if (!found)
      throw new SinkConfigError(`table ${table} does not exist (declare create_table: to create it)`);
    if (!found.engine.endsWith('ReplacingMergeTree')) {
      throw new SinkConfigError(
        `table ${table} is a ${found.engine}: only a ReplacingMergeTree collapses re-delivered rows`,
      );
    }
    if (this.tenantColumn && !found.sorting_key.split(/\s*,\s*/).includes(this.tenantColumn)) {
      throw new SinkConfigError(
        `table ${table} is sorted by (${found.sorting_key}), without the tenant column ${quote(this.tenantColumn)}: rows of two tenants with the same id would collapse into one`,
      );
    }
    const columns = await this.select<{ name: string }>(
      `SELECT name FROM system.columns WHERE database = '${database}' AND table = '${this.config.table}'`,
    );
    const names = new Set(columns.map((c) => c.name));
    const required = [this.config.id_column, this.config.version_column, ...(this.mapper.declared ?? [])];
    if (this.tenantColumn) required.push(this.tenantColumn);
    for (const name of required) {
      if (!names.has(name)) throw new SinkConfigError(`table ${table} has no column ${quote(name)}`);
    }
    return names;
  }

  private async select<T>(query: string): Promise<T[]> {
    const result = await this.client.query({ query, format: 'JSONEachRow' });
    return result.json<T>();
  }
}

export const clickhouseSink: ComponentDefinition<typeof clickhouseSinkSchema, Sink> = {
  kind: 'clickhouse',
  description: clickhouseSinkSchema.description ?? '',
  schema: clickhouseSinkSchema,
  create: (config, ctx) =>
    new DatabaseSink<string, Target | undefined>(
      new ClickHouseDriver(config),
      config,
      { kind: 'clickhouse', service: 'ClickHouse', lastPerId: true },
      ctx,
    ),
};
