import { type ClickHouseClient, createClient } from '@clickhouse/client';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { pino } from 'pino';
import type { ComponentContext, ComponentDefinition, Sink } from '../../src/core/component.js';
import type { FlotillaRecord } from '../../src/core/record.js';
import { clickhouseSink } from '../../src/sinks/clickhouse.js';
import { mongodbSink } from '../../src/sinks/mongodb.js';
import { postgresSink } from '../../src/sinks/postgres.js';
import { redisSink } from '../../src/sinks/redis.js';
import type { DatabaseSink } from '../../src/sinks/shared/database-sink.js';
import { type ServiceKey, serviceUrl } from './services.js';

/** A row as read back from the database, after the database's own deduplication. */
export interface StoredRow {
  id: string;
  n: number;
}

/**
 * One database sink under the conformance suite, against its real service. Every subject stores
 * values `{ tenant, label, n }` and refuses the value `BAD_VALUE` for good (see `rejection`).
 */
export interface SinkSubject {
  service: ServiceKey;
  /** The sink's YAML config for a service URL, before validation. */
  config(url: string): Record<string, unknown>;
  /** Empties what the sink writes to and lays the trap for BAD_VALUE. */
  reset(): Promise<void>;
  /** What the sink wrote, after deduplication (ClickHouse FINAL), in any order. */
  readBack(): Promise<StoredRow[]>;
  /** The database's error for BAD_VALUE. */
  rejection: RegExp;
  /** Upsert sinks keep the last record of an id in a batch; stream-like ones send every record. */
  lastPerId: boolean;
  close(): Promise<void>;
}

/** Refused by every subject: `n` is no integer (PostgreSQL, ClickHouse), `label` collides with a
 * unique index (MongoDB), and its key or stream in Redis holds another type. */
export const BAD_VALUE = { tenant: 'bad', label: 'bad', n: 'not-a-number' };

export function value(i: number, pad = 0): { tenant: string; label: string; n: number } {
  return { tenant: 't1', label: `l${i}${'x'.repeat(pad)}`, n: i };
}

export function makeRecord(id: string, v: unknown): FlotillaRecord {
  return {
    id,
    key: null,
    value: v,
    timestamp: Date.now(),
    headers: {},
    source: { topic: 'conformance', partition: 0, offset: id },
  };
}

const ctx: ComponentContext = {
  topology: 'sink-conformance',
  group: 'sink-conformance',
  baseDir: '.',
  logger: pino({ level: 'silent' }),
};

/** Validates a YAML-shaped config with the kind's schema and creates the sink, as the worker does. */
export async function createSink(
  // biome-ignore lint/suspicious/noExplicitAny: each kind has its own schema type
  definition: ComponentDefinition<any, Sink>,
  config: Record<string, unknown>,
): Promise<DatabaseSink<unknown>> {
  return (await definition.create(definition.schema.parse(config), ctx)) as DatabaseSink<unknown>;
}

export const SINK_DEFINITIONS = {
  postgres: postgresSink,
  clickhouse: clickhouseSink,
  mongodb: mongodbSink,
  redis: redisSink,
} as const;

function postgresSubject(prefix: string, mode: 'copy' | 'insert'): SinkSubject & { kind: 'postgres' } {
  const table = `${prefix}_pg_${mode}`;
  const pool = new pg.Pool({ connectionString: serviceUrl('PG_URL'), max: 1 });
  return {
    kind: 'postgres',
    service: 'PG_URL',
    config: (url) => ({
      kind: 'postgres',
      url,
      table,
      mode,
      create_table: { columns: { tenant: 'text', label: 'text', n: 'integer NOT NULL' } },
    }),
    reset: async () => {
      await pool.query(`DROP TABLE IF EXISTS ${table}`);
    },
    readBack: async () => {
      const { rows } = await pool.query<StoredRow>(`SELECT id, n FROM ${table}`);
      return rows;
    },
    rejection: /invalid input syntax for type integer/,
    lastPerId: true,
    close: async () => {
      await pool.query(`DROP TABLE IF EXISTS ${table}`);
      await pool.end();
    },
  };
}

function clickhouseSubject(prefix: string): SinkSubject & { kind: 'clickhouse' } {
  const table = `${prefix}_ch`;
  let client: ClickHouseClient | undefined;
  const ch = () => {
    client ??= createClient({ url: serviceUrl('CLICKHOUSE_URL') });
    return client;
  };
  return {
    kind: 'clickhouse',
    service: 'CLICKHOUSE_URL',
    config: (url) => ({
      kind: 'clickhouse',
      url,
      table,
      create_table: { columns: { tenant: 'String', label: 'String', n: 'Int64' }, order_by: ['id'] },
    }),
    reset: async () => {
      await ch().command({ query: `DROP TABLE IF EXISTS default.${table}` });
    },
    readBack: async () => {
      const result = await ch().query({
        query: `SELECT id, n FROM default.${table} FINAL`,
        format: 'JSONEachRow',
      });
      const rows = await result.json<{ id: string; n: string }>();
      return rows.map((r) => ({ id: r.id, n: Number(r.n) }));
    },
    rejection: /^Code: (6|27|72),.*Cannot parse/,
    lastPerId: true,
    close: async () => {
      await ch().command({ query: `DROP TABLE IF EXISTS default.${table}` });
      await ch().close();
    },
  };
}

function mongodbSubject(prefix: string): SinkSubject & { kind: 'mongodb' } {
  const database = `${prefix}_mongo`;
  const client = new MongoClient(serviceUrl('MONGO_URL'), { serverSelectionTimeoutMS: 5000 });
  const collection = () => client.db(database).collection<{ _id: string; label: string; n: unknown }>('rows');
  return {
    kind: 'mongodb',
    service: 'MONGO_URL',
    config: (url) => ({ kind: 'mongodb', url, database, collection: 'rows' }),
    reset: async () => {
      await client.db(database).dropDatabase();
      await collection().createIndex({ label: 1 }, { unique: true });
      await collection().insertOne({ _id: 'existing', label: BAD_VALUE.label, n: 0 });
    },
    readBack: async () => {
      const docs = await collection()
        .find({ _id: { $ne: 'existing' } })
        .toArray();
      return docs.map((d) => ({ id: d._id, n: Number(d.n) }));
    },
    rejection: /E11000 duplicate key/,
    lastPerId: true,
    close: async () => {
      await client.db(database).dropDatabase();
      await client.close();
    },
  };
}

function redisSubject(prefix: string, mode: 'hash' | 'xadd'): SinkSubject & { kind: 'redis' } {
  const redis = new Redis(serviceUrl('REDIS_URL'));
  const base = `${prefix}:${mode}`;
  const badKey = `${base}:${mode === 'hash' ? BAD_VALUE.label : BAD_VALUE.tenant}`;
  const fields = (flat: string[]): Record<string, string> => {
    const out: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
    return out;
  };
  const dropKeys = async () => {
    const keys = await redis.keys(`*${base}:*`);
    if (keys.length > 0) await redis.del(...keys);
  };
  return {
    kind: 'redis',
    service: 'REDIS_URL',
    config: (url) =>
      mode === 'hash'
        ? { kind: 'redis', url, mode: 'set', as: 'hash', key: `${base}:{label}` }
        : { kind: 'redis', url, mode: 'xadd', stream: `${base}:{tenant}` },
    reset: async () => {
      await dropKeys();
      // A key of another type where BAD_VALUE goes: WRONGTYPE.
      await redis.rpush(badKey, 'occupied');
    },
    readBack: async () => {
      if (mode === 'xadd') {
        const entries = await redis.xrange(`${base}:t1`, '-', '+');
        return entries.map(([, flat]) => {
          const f = fields(flat);
          return { id: f.id as string, n: Number(f.n) };
        });
      }
      const keys = (await redis.keys(`${base}:*`)).filter((k) => k !== badKey);
      const hashes = await Promise.all(keys.map((k) => redis.hgetall(k)));
      return hashes.map((h) => ({ id: h.id as string, n: Number(h.n) }));
    },
    rejection: /WRONGTYPE/,
    lastPerId: mode === 'hash',
    close: async () => {
      await dropKeys();
      redis.disconnect();
    },
  };
}

export type KindedSubject = SinkSubject & { kind: keyof typeof SINK_DEFINITIONS };

/**
 * Every database sink configuration the conformance suite runs, by name; each is created inside
 * the test run (the service URLs come from the global setup), with tables and keys under `prefix`.
 */
export const SINK_SUBJECTS: [string, (prefix: string) => KindedSubject][] = [
  ['postgres (copy)', (prefix) => postgresSubject(prefix, 'copy')],
  ['postgres (insert)', (prefix) => postgresSubject(prefix, 'insert')],
  ['clickhouse', (prefix) => clickhouseSubject(prefix)],
  ['mongodb', (prefix) => mongodbSubject(prefix)],
  ['redis (hash)', (prefix) => redisSubject(prefix, 'hash')],
  ['redis (xadd)', (prefix) => redisSubject(prefix, 'xadd')],
];

/** The URL of a service with its host:port replaced (to go through a proxy). */
export function withAddress(url: string, address: string): string {
  const u = new URL(url);
  u.host = address;
  return u.toString();
}

/** host and port of a service URL. */
export function addressOf(url: string): { host: string; port: number } {
  const u = new URL(url);
  const defaults: Record<string, number> = {
    'postgres:': 5432,
    'postgresql:': 5432,
    'http:': 80,
    'mongodb:': 27017,
    'redis:': 6379,
  };
  return { host: u.hostname, port: u.port ? Number(u.port) : (defaults[u.protocol] ?? 0) };
}
