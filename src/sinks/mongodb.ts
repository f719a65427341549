import {
  type AnyBulkWriteOperation,
  BSON,
  type Collection,
  type Document,
  MongoBulkWriteError,
  MongoClient,
  MongoInvalidArgumentError,
  MongoNetworkError,
  MongoNetworkTimeoutError,
  MongoServerSelectionError,
} from 'mongodb';
import { z } from 'zod';
import type { ComponentDefinition, Sink } from '../core/component.js';
import type { FlotillaRecord } from '../core/record.js';
import { SinkTenancy } from '../tenancy/sink-tenancy.js';
import { databaseSinkShape, identifierSchema, refineTenancyStrategy } from './shared/config.js';
import {
  DatabaseSink,
  type Encoded,
  NO_FAILURES,
  type RowFailure,
  type SinkDriver,
  type SinkTargets,
} from './shared/database-sink.js';
import { type ErrorKind, RowRefusedError, transportErrorKind } from './shared/errors.js';
import { RowMapper } from './shared/rows.js';

export const mongodbSinkSchema = z
  .object({
    kind: z.literal('mongodb'),
    ...databaseSinkShape,
    url: z.string().min(1).describe('Connection string, e.g. mongodb://127.0.0.1:27017/.'),
    database: identifierSchema
      .optional()
      .describe('Database name (required, except with tenancy database: each tenant has its own).'),
    collection: z
      .string()
      .regex(/^(?!system\.)[A-Za-z_][A-Za-z0-9_.-]{0,119}$/, 'letters, digits, _ . and -, not system.*')
      .describe('Collection name.'),
  })
  .strict()
  .superRefine((c, ctx) => {
    refineTenancyStrategy(
      ctx,
      c.tenancy,
      'mongodb',
      ['row', 'database'],
      'MongoDB has no schemas; database gives each tenant a database',
    );
    const strategy = c.tenancy?.strategy;
    if (strategy === 'database' && c.database !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['database'],
        message:
          "with tenancy strategy database each tenant's database is the tenancy prefix + the tenant: remove database",
      });
    }
    if ((strategy === undefined || strategy === 'row') && c.database === undefined) {
      ctx.addIssue({ code: 'custom', path: ['database'], message: 'missing required key (expected string)' });
    }
  })
  .describe('Upserts records as MongoDB documents with _id = the record id (bulkWrite of replaceOne).');

export type MongodbSinkConfig = z.infer<typeof mongodbSinkSchema>;

/** Codes a server returns when it is going away or busy, not because of the document. */
const CONNECTION_CODES = new Set([6, 7, 91, 189, 9001, 10107, 11600, 11602, 13435, 13436]);
const TIMEOUT_CODES = new Set([50, 89, 262]);
/** A refused document: bad value or key, type mismatch, too large, duplicate unique key, validation. */
const ROW_CODES = new Set([2, 9, 14, 52, 55, 56, 57, 121, 10334, 11000, 17419]);

/**
 * A bulk write that reports write errors is a row error as a whole, unless one of its errors says
 * the server is going away; the sink then bisects it down to the refused documents.
 */
export function classifyMongoError(err: unknown): ErrorKind {
  if (err instanceof MongoBulkWriteError) {
    const kinds = err.err ? [] : [err.writeErrors].flat().map((w) => classifyMongoError({ code: w.code }));
    if (kinds.length > 0) return kinds.find((k) => k !== 'row') ?? 'row';
    // A failure of the whole bulk (no server, connection closed) comes wrapped.
    const inner: unknown = err.errorResponse;
    if (inner instanceof Error && inner !== err) return classifyMongoError(inner);
  }
  const code =
    typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : undefined;
  if (code !== undefined) {
    if (CONNECTION_CODES.has(code)) return 'connection';
    if (TIMEOUT_CODES.has(code)) return 'timeout';
    if (ROW_CODES.has(code)) return 'row';
  }
  const transport = transportErrorKind(err);
  if (transport) return transport;
  if (err instanceof MongoNetworkTimeoutError) return 'timeout';
  if (err instanceof MongoNetworkError || err instanceof MongoServerSelectionError) return 'connection';
  // The driver refuses a document it cannot send (larger than 16 MiB, unserializable).
  if (err instanceof MongoInvalidArgumentError || err instanceof BSON.BSONError) return 'row';
  if (err instanceof Error && /connection .* closed|topology was destroyed/i.test(err.message))
    return 'connection';
  return 'other';
}

/**
 * The path of the first NaN or ±Infinity in a document. They are refused before sending: JSON has
 * neither, and FerretDB (the project's MongoDB-wire server) drops the connection on NaN, which
 * would otherwise look like an outage and retry forever.
 */
function nonFinitePath(value: unknown, path: string): string | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : path;
  if (typeof value !== 'object' || value === null || value instanceof Date || Buffer.isBuffer(value)) {
    return undefined;
  }
  for (const [k, v] of Object.entries(value)) {
    const found = nonFinitePath(v, path ? `${path}.${k}` : k);
    if (found) return found;
  }
  return undefined;
}

class MongoDriver implements SinkDriver<Document, Collection<Document> | undefined> {
  private readonly client: MongoClient;
  /** The collection of a sink without tenancy or with `row`. */
  private readonly collection: Collection<Document> | undefined;
  private readonly mapper: RowMapper;
  private readonly tenancy: SinkTenancy | undefined;
  /** row: the field holding the tenant, written by the sink and part of every filter. */
  private readonly tenantField: string | undefined;
  readonly targets?: SinkTargets<Collection<Document> | undefined>;

  constructor(config: MongodbSinkConfig) {
    this.mapper = new RowMapper(config.columns, ['_id']);
    const timeoutMs = Math.round(config.timeout * 1000);
    this.client = new MongoClient(config.url, {
      serverSelectionTimeoutMS: timeoutMs,
      connectTimeoutMS: timeoutMs,
      socketTimeoutMS: timeoutMs,
    });
    const tenancy = config.tenancy && new SinkTenancy(config.tenancy);
    this.tenancy = tenancy;
    this.tenantField = tenancy?.strategy === 'row' ? tenancy.column : undefined;
    if (tenancy?.strategy === 'database') {
      // A database per tenant, created by the server on the first write; a handle costs nothing.
      this.targets = {
        of: (record) => tenancy.namespaceOf(record),
        acquire: async (database) => this.client.db(database).collection(config.collection),
        release: () => {},
      };
    } else {
      this.collection = this.client.db(config.database as string).collection(config.collection);
    }
  }

  rowKey(record: FlotillaRecord): string {
    return this.tenancy ? this.tenancy.rowKey(record) : record.id;
  }

  encode(record: FlotillaRecord): { payload: Document; bytes: number } {
    const row = this.mapper.map(record);
    const doc: Document = { _id: record.id, ...row };
    if (this.tenantField) {
      const tenancy = this.tenancy as SinkTenancy;
      const tenant = tenancy.tenantOf(record);
      tenancy.checkRow(row, tenant);
      doc[this.tenantField] = tenant;
    }
    const bad = nonFinitePath(doc, '');
    if (bad)
      throw new RowRefusedError(`field '${bad}' is NaN or infinite, which MongoDB-wire servers refuse`);
    return { payload: doc, bytes: BSON.calculateObjectSize(doc) };
  }

  /**
   * Unordered, but a refused document fails the whole statement (the sink then bisects): FerretDB
   * 1.24 stops at the first refused document and reports it at index 0, so per-document results
   * cannot be trusted to say which documents landed. With `row` the filter holds the tenant too:
   * an id another tenant already has does not match, its upsert collides on `_id` (E11000) and
   * the record is dead-lettered; the other tenant's document is never replaced.
   */
  async flush(
    rows: Encoded<Document>[],
    target: Collection<Document> | undefined,
  ): Promise<readonly RowFailure[]> {
    const field = this.tenantField;
    const ops: AnyBulkWriteOperation<Document>[] = rows.map(({ payload }) => ({
      replaceOne: {
        filter: field ? { _id: payload._id, [field]: payload[field] } : { _id: payload._id },
        replacement: payload,
        upsert: true,
      },
    }));
    await (target ?? (this.collection as Collection<Document>)).bulkWrite(ops, { ordered: false });
    return NO_FAILURES;
  }

  classify(err: unknown): ErrorKind {
    return classifyMongoError(err);
  }

  async ping(signal?: AbortSignal): Promise<void> {
    await this.client.db('admin').command({ ping: 1 }, { signal });
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

export const mongodbSink: ComponentDefinition<typeof mongodbSinkSchema, Sink> = {
  kind: 'mongodb',
  description: mongodbSinkSchema.description ?? '',
  schema: mongodbSinkSchema,
  create: (config, ctx) =>
    new DatabaseSink<Document, Collection<Document> | undefined>(
      new MongoDriver(config),
      config,
      { kind: 'mongodb', service: 'MongoDB', lastPerId: true },
      ctx,
    ),
};
