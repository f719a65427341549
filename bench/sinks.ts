/**
 * `npm run bench -- sinks [--rows N] [--rounds R] [--only NAME,…]`: rows/s written into each
 * database sink (through the whole sink: mapping, encoding, statements, acknowledgement) in
 * worker batches of 1k and 10k records, each batch one statement (max_rows = batch size).
 * PostgreSQL runs in both modes (COPY + merge, multi-row INSERT … SELECT FROM unnest). Every
 * measurement writes N new rows (MongoDB: at most 10k) into a freshly created table; figures are
 * medians of R rounds.
 */
import { parseArgs } from 'node:util';
import { createClient } from '@clickhouse/client';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { pino } from 'pino';
import type { ComponentContext, ComponentDefinition, Sink } from '../src/core/component.js';
import type { FlotillaRecord } from '../src/core/record.js';
import { clickhouseSink } from '../src/sinks/clickhouse.js';
import { mongodbSink } from '../src/sinks/mongodb.js';
import { postgresSink } from '../src/sinks/postgres.js';
import { redisSink } from '../src/sinks/redis.js';
import { syntheticRecords } from '../src/sources/synthetic.js';
import { resolveServiceEnv } from '../test/support/services.js';
import { median, note, printFigures, round, withPeakMemory } from './_lib.js';

const USAGE = `Usage: npm run bench -- sinks [--rows N] [--rounds R] [--only NAME,…]
  --rows N      rows per measurement (default 50000; MongoDB at most 10000)
  --rounds R    rounds; figures are medians (default 3)
  --only NAMES  measure only these subjects, comma-separated (postgres_insert, clickhouse, …)
  --batches B   worker batch sizes (rows per statement), comma-separated (default 1000,10000)`;

/** Prints what is wrong and the usage, and exits with status 2. */
function usageError(problem: string): never {
  console.error(`${problem}\n\n${USAGE}`);
  process.exit(2);
}

function positiveInt(option: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) usageError(`--${option} must be a positive integer, got '${text}'`);
  return n;
}

let values: {
  rows: string;
  rounds: string;
  batches: string;
  only?: string | undefined;
  help?: boolean | undefined;
};
try {
  ({ values } = parseArgs({
    options: {
      rows: { type: 'string', default: '50000' },
      rounds: { type: 'string', default: '3' },
      batches: { type: 'string', default: '1000,10000' },
      only: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (err) {
  usageError((err as Error).message);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const ROWS = positiveInt('rows', values.rows);
const ROUNDS = positiveInt('rounds', values.rounds);
const BATCH_SIZES = values.batches.split(',').map((b) => positiveInt('batches', b));
const env = resolveServiceEnv();
const prefix = `bench_sinks_${process.pid}`;
const ctx: ComponentContext = {
  topology: 'bench-sinks',
  group: 'bench-sinks',
  baseDir: '.',
  logger: pino({ level: 'warn' }),
};

/** A sink configuration to measure, and how to drop what it wrote. */
interface Subject {
  name: string;
  // biome-ignore lint/suspicious/noExplicitAny: each kind has its own schema type
  definition: ComponentDefinition<any, Sink>;
  config: Record<string, unknown>;
  /** Rows per measurement for a slow sink, instead of --rows (a rate needs no more). */
  maxRows?: number;
  drop(): Promise<void>;
}

const metricColumns = {
  ts: 'bigint',
  tenant: 'text',
  host: 'text',
  region: 'text',
  metric: 'text',
  value: 'double precision',
};
const pgPool = new pg.Pool({ connectionString: env.PG_URL, max: 1 });
const ch = createClient({ url: env.CLICKHOUSE_URL });
const mongo = new MongoClient(env.MONGO_URL);
const redis = new Redis(env.REDIS_URL);

const postgres = (mode: 'copy' | 'insert'): Subject => ({
  name: `postgres_${mode}`,
  definition: postgresSink,
  config: {
    kind: 'postgres',
    url: env.PG_URL,
    table: `${prefix}_${mode}`,
    mode,
    create_table: { columns: metricColumns },
  },
  drop: async () => {
    await pgPool.query(`DROP TABLE IF EXISTS ${prefix}_${mode}`);
  },
});

/** PostgreSQL insert mode with tenant isolation: rows in one table, or a schema per tenant. */
const postgresTenancy = (strategy: 'row' | 'schema'): Subject => ({
  name: `postgres_${strategy}_isolation`,
  definition: postgresSink,
  config: {
    kind: 'postgres',
    url: env.PG_URL,
    table: `${prefix}_${strategy}`,
    mode: 'insert',
    create_table: { columns: metricColumns },
    tenancy: { strategy, field: 'tenant', prefix: `${prefix}_t_` },
  },
  drop: async () => {
    if (strategy === 'row') await pgPool.query(`DROP TABLE IF EXISTS ${prefix}_row`);
    else {
      const { rows } = await pgPool.query<{ nspname: string }>(
        'SELECT nspname FROM pg_namespace WHERE nspname LIKE $1',
        [`${prefix}_t_%`],
      );
      for (const { nspname } of rows) await pgPool.query(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`);
    }
  },
});

const redisKeys = async (pattern: string) => {
  const keys = await redis.keys(pattern);
  for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
};

const allSubjects: Subject[] = [
  postgres('copy'),
  postgres('insert'),
  postgresTenancy('row'),
  postgresTenancy('schema'),
  {
    name: 'clickhouse',
    definition: clickhouseSink,
    config: {
      kind: 'clickhouse',
      url: env.CLICKHOUSE_URL,
      table: `${prefix}_ch`,
      create_table: {
        columns: {
          ts: 'UInt64',
          tenant: 'String',
          host: 'String',
          region: 'String',
          metric: 'String',
          value: 'Float64',
        },
      },
    },
    drop: async () => {
      await ch.command({ query: `DROP TABLE IF EXISTS default.${prefix}_ch` });
    },
  },
  {
    name: 'mongodb',
    definition: mongodbSink,
    config: { kind: 'mongodb', url: env.MONGO_URL, database: `${prefix}_mongo`, collection: 'metrics' },
    // FerretDB on SQLite writes ~1.5k rows/s: 10k rows per measurement keep the run short.
    maxRows: 10_000,
    drop: async () => {
      await mongo.db(`${prefix}_mongo`).dropDatabase();
    },
  },
  {
    name: 'redis_set',
    definition: redisSink,
    config: {
      kind: 'redis',
      url: env.REDIS_URL,
      mode: 'set',
      key: `${prefix}:latest:{tenant}:{host}:{metric}`,
    },
    drop: () => redisKeys(`${prefix}:latest:*`),
  },
  {
    name: 'redis_xadd',
    definition: redisSink,
    config: {
      kind: 'redis',
      url: env.REDIS_URL,
      mode: 'xadd',
      stream: `${prefix}:stream`,
      maxlen: 1_000_000,
    },
    drop: () => redisKeys(`*${prefix}:stream*`),
  },
];
const names = allSubjects.map((s) => s.name);
const only = values.only?.split(',');
const unknown = only?.filter((name) => !names.includes(name)) ?? [];
if (unknown.length > 0) {
  usageError(`--only: no subject ${unknown.map((n) => `'${n}'`).join(', ')}; subjects: ${names.join(', ')}`);
}
const subjects = only ? allSubjects.filter((s) => only.includes(s.name)) : allSubjects;

/** N synthetic metric records with ids unique to the round (every measured write is a new row). */
function records(round: number, n: number): FlotillaRecord[] {
  const make = syntheticRecords('metrics', round + 1);
  return Array.from({ length: n }, (_, i) => {
    const { key, value } = make(i);
    return {
      id: `bench/${round}/${i}`,
      key,
      value,
      timestamp: value.ts,
      headers: {},
      source: { topic: 'bench', partition: 0, offset: String(i) },
    };
  });
}

/** rows/s writing `input` in worker batches of `size`, into a fresh table. */
async function measure(subject: Subject, size: number, input: FlotillaRecord[]): Promise<number> {
  await subject.drop();
  const config = subject.definition.schema.parse({
    ...subject.config,
    batch: { max_rows: size, max_bytes: 256 * 2 ** 20 },
  });
  const sink = await subject.definition.create(config, ctx);
  // Every benchmark row is valid: a rejection is a bug, so it fails the run.
  const ctxReject = {
    reject: (_r: FlotillaRecord, err: unknown) => {
      throw err;
    },
  };
  try {
    // Warm-up: connection, table creation, prepared paths (rows not counted, ids not reused).
    await sink.write(
      records(999, size).map((r) => ({ ...r, id: `warm/${r.id}` })),
      ctxReject,
    );
    const started = performance.now();
    for (let i = 0; i < input.length; i += size) await sink.write(input.slice(i, i + size), ctxReject);
    return input.length / ((performance.now() - started) / 1000);
  } finally {
    await sink.close();
  }
}

const samples: Record<string, number[]> = {};
const { peakRssMiB, peakHeapMiB } = await withPeakMemory(async () => {
  for (let r = 0; r < ROUNDS; r++) {
    const input = records(r, ROWS);
    for (const subject of subjects) {
      for (const size of BATCH_SIZES) {
        const rate = await measure(subject, size, input.slice(0, subject.maxRows ?? ROWS));
        const key = `${subject.name}_${size / 1000}k_rows_per_s`;
        samples[key] = [...(samples[key] ?? []), rate];
        note(`round ${r + 1}/${ROUNDS} ${subject.name} batch ${size}: ${Math.round(rate)} rows/s`);
      }
    }
  }
});

for (const subject of subjects) await subject.drop();
await Promise.all([pgPool.end(), ch.close(), mongo.close()]);
redis.disconnect();

const figures: Record<string, number> = {};
for (const [key, rates] of Object.entries(samples)) figures[key] = Math.round(median(rates));
printFigures({
  bench: 'sinks',
  rows_per_measurement: ROWS,
  rounds: ROUNDS,
  ...figures,
  peak_rss_mib: round(peakRssMiB, 1),
  peak_heap_mib: round(peakHeapMiB, 1),
});
