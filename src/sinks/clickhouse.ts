import { Readable } from 'node:stream';
import { type ClickHouseClient, ClickHouseLogLevel, createClient } from '@clickhouse/client';
import { z } from 'zod';
import type { ComponentDefinition, Sink } from '../core/component.js';
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
          .describe('Column name → ClickHouse type; the id (String) and version (UInt64) columns are added.'),
        order_by: z
          .array(identifierSchema)
          .min(1)
          .optional()
          .describe('Sorting key, which is also the deduplication key: it must contain the id column.'),
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

class ClickHouseDriver implements SinkDriver<string> {
  private readonly client: ClickHouseClient;
  private readonly mapper: RowMapper;
  private readonly table: string;
  private readonly insert: string;
  private columns = new Set<string>();
  private lastVersion = 0;
  readonly prepare: () => Promise<void>;

  constructor(private readonly config: ClickHouseSinkConfig) {
    this.mapper = new RowMapper(config.columns, [config.id_column, config.version_column]);
    this.table = `${quote(config.database)}.${quote(config.table)}`;
    this.insert = `INSERT INTO ${this.table} FORMAT JSONEachRow`;
    this.client = createClient({
      url: config.url,
      request_timeout: Math.round(config.timeout * 1000),
      // Failures are classified, counted and logged by the sink and the worker.
      log: { level: ClickHouseLogLevel.OFF },
    });
    this.prepare = onceUntilDone(async () => {
      if (config.create_table) await this.client.command({ query: this.createTableSql(config.create_table) });
      this.columns = await this.readTable();
    });
  }

  /** One JSONEachRow line: the row's fields, the id and a version that grows with every write. */
  encode(record: FlotillaRecord): { payload: string; bytes: number } {
    const row = this.mapper.map(record);
    for (const field in row) {
      if (!this.columns.has(field)) {
        throw new RowRefusedError(
          `table ${this.table} has no column ${quote(field)} (pick fields with columns:)`,
        );
      }
    }
    this.lastVersion = Math.max(Date.now(), this.lastVersion + 1);
    const line = `${JSON.stringify({
      ...row,
      [this.config.id_column]: record.id,
      [this.config.version_column]: this.lastVersion,
    })}\n`;
    return { payload: line, bytes: Buffer.byteLength(line) };
  }

  async flush(rows: Encoded<string>[]): Promise<readonly RowFailure[]> {
    let body = '';
    for (const r of rows) body += r.payload;
    // An INSERT of less than max_insert_block_size rows is one block: it lands whole or not at all.
    const result = await this.client.exec({ query: this.insert, values: Readable.from([body]) });
    result.stream.destroy();
    return NO_FAILURES;
  }

  classify(err: unknown): ErrorKind {
    return classifyClickHouseError(err);
  }

  /** ClickHouse names the 1-based row it could not parse: `… (at row 3)`. */
  failedRow(err: unknown): number | undefined {
    const m = err instanceof Error ? /\(at row (\d+)\)/.exec(err.message) : null;
    return m ? Number(m[1]) - 1 : undefined;
  }

  close(): Promise<void> {
    return this.client.close();
  }

  private createTableSql(spec: NonNullable<ClickHouseSinkConfig['create_table']>): string {
    const { id_column: id, version_column: version } = this.config;
    const columns = { [id]: 'String', ...spec.columns, [version]: 'UInt64' };
    const defs = Object.entries(columns).map(([name, type]) => `${quote(name)} ${type}`);
    const orderBy = (spec.order_by ?? [id]).map(quote).join(', ');
    return `CREATE TABLE IF NOT EXISTS ${this.table} (${defs.join(', ')}) ENGINE = ReplacingMergeTree(${quote(version)}) ORDER BY (${orderBy})`;
  }

  /** The table's columns; refuses a table that cannot deduplicate (not a ReplacingMergeTree). */
  private async readTable(): Promise<Set<string>> {
    // Names are validated identifiers; 18.16 has no query parameters.
    const where = `database = '${this.config.database}' AND name = '${this.config.table}'`;
    const tables = await this.select<{ engine: string }>(`SELECT engine FROM system.tables WHERE ${where}`);
    const engine = tables[0]?.engine;
    if (!engine)
      throw new SinkConfigError(`table ${this.table} does not exist (declare create_table: to create it)`);
    if (!engine.endsWith('ReplacingMergeTree')) {
      throw new SinkConfigError(
        `table ${this.table} is a ${engine}: only a ReplacingMergeTree collapses re-delivered rows`,
      );
    }
    const columns = await this.select<{ name: string }>(
      `SELECT name FROM system.columns WHERE database = '${this.config.database}' AND table = '${this.config.table}'`,
    );
    const names = new Set(columns.map((c) => c.name));
    for (const required of [
      this.config.id_column,
      this.config.version_column,
      ...(this.mapper.declared ?? []),
    ]) {
      if (!names.has(required))
        throw new SinkConfigError(`table ${this.table} has no column ${quote(required)}`);
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
    new DatabaseSink(new ClickHouseDriver(config), config, { kind: 'clickhouse', lastPerId: true }, ctx),
};
