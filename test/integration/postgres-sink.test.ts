import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FlotillaRecord } from '../../src/core/record.js';
import { postgresSink } from '../../src/sinks/postgres.js';
import { connectOrExplain, serviceUrl } from '../support/services.js';
import { createSink, makeRecord } from '../support/sink-subjects.js';

// Type conversion and column mapping, which the shared conformance suite does not look at.
describe.each(['insert', 'copy'] as const)('postgres sink (%s): types and columns', (mode) => {
  let pool: pg.Pool;
  const table = `pgsink_${process.pid}_${mode}`;

  beforeAll(async () => {
    pool = await connectOrExplain('PG_URL', async () => {
      const p = new pg.Pool({ connectionString: serviceUrl('PG_URL'), max: 1 });
      await p.query('SELECT 1');
      return p;
    });
  });
  beforeEach(async () => {
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.query(
      `CREATE TABLE ${table} (id text PRIMARY KEY, code varchar(5), tags text[], doc jsonb,
        at timestamptz, ok boolean, score numeric(6,2), note text DEFAULT 'kept')`,
    );
  });
  afterAll(async () => {
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.end();
  });

  async function write(config: Record<string, unknown>, records: FlotillaRecord[]) {
    const sink = await createSink(postgresSink, {
      kind: 'postgres',
      url: serviceUrl('PG_URL'),
      table,
      mode,
      ...config,
    });
    const rejected: string[] = [];
    try {
      await sink.write(records, { reject: (r, err) => rejected.push(`${r.id}: ${(err as Error).message}`) });
    } finally {
      await sink.close();
    }
    return rejected;
  }

  it('writes arrays, JSON, timestamps, booleans and numerics; refuses overflow instead of truncating', async () => {
    const rejected = await write({}, [
      makeRecord('a', {
        code: 'ab\tc',
        tags: ['x', 'y "q"', null, 'back\\slash'],
        doc: { nested: { list: [1, 'two'] }, text: 'line\nbreak' },
        at: '2026-01-01T00:00:00Z',
        ok: true,
        score: 12.5,
      }),
      makeRecord('too-long', { code: 'abcdefgh' }),
      makeRecord('bad-numeric', { score: 123456.789 }),
      makeRecord('unknown-field', { colour: 'red' }),
    ]);
    expect(rejected.sort()).toEqual([
      'bad-numeric: numeric field overflow',
      'too-long: value too long for type character varying(5)',
      `unknown-field: table "public"."${table}" has no column "colour" (pick fields with columns:)`,
    ]);
    const { rows } = await pool.query(`SELECT * FROM ${table}`);
    expect(rows).toEqual([
      {
        id: 'a',
        code: 'ab\tc',
        tags: ['x', 'y "q"', null, 'back\\slash'],
        doc: { nested: { list: [1, 'two'] }, text: 'line\nbreak' },
        at: new Date('2026-01-01T00:00:00Z'),
        ok: true,
        score: '12.50',
        // Without columns: every column is written: a field the record lacks is NULL.
        note: null,
      },
    ]);
  });

  it('writes only the declared columns, from field paths and expressions', async () => {
    const rejected = await write(
      { columns: { code: 'labels.code', score: 'value.cpu * 100', tags: '[key]' } },
      [{ ...makeRecord('m', { labels: { code: 'eu' }, cpu: 0.25, other: 'ignored' }), key: 'k1' }],
    );
    expect(rejected).toEqual([]);
    const { rows } = await pool.query(`SELECT id, code, score, tags, note FROM ${table}`);
    expect(rows).toEqual([{ id: 'm', code: 'eu', score: '25.00', tags: ['k1'], note: 'kept' }]);
  });
});

describe('postgres sink (auto): COPY for large statements only', () => {
  const table = `pgsink_${process.pid}_auto`;
  // The sink's staging table for this table (named from a hash of the qualified name).
  const stagingTable = `flotilla_staging_${createHash('sha1').update(`"public"."${table}"`).digest('hex').slice(0, 16)}`;
  let pool: pg.Pool;

  beforeAll(async () => {
    pool = await connectOrExplain('PG_URL', async () => {
      const p = new pg.Pool({ connectionString: serviceUrl('PG_URL'), max: 1 });
      await p.query(`DROP TABLE IF EXISTS ${table}`);
      await p.query(`CREATE TABLE ${table} (id text PRIMARY KEY, n integer)`);
      return p;
    });
  });
  afterAll(async () => {
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.end();
  });

  /** Writes `rows` records in one statement; true when the sink's session made a COPY staging table. */
  async function wroteThroughCopy(rows: number): Promise<boolean> {
    const sink = await createSink(postgresSink, {
      kind: 'postgres',
      url: serviceUrl('PG_URL'),
      table,
      pool_size: 1,
      batch: { max_rows: 20_000 },
    });
    try {
      const records = Array.from({ length: rows }, (_, i) => makeRecord(`r${i}`, { n: i }));
      await sink.write(records, { reject: (r) => expect.fail(`${r.id} refused`) });
      const staging = await pool.query(
        `SELECT 1 FROM pg_stat_all_tables WHERE relname = $1 AND schemaname LIKE 'pg_temp%'`,
        [stagingTable],
      );
      return (staging.rowCount ?? 0) > 0;
    } finally {
      await sink.close();
    }
  }

  it('upserts a small statement with INSERT and a large one through COPY, every row landing', async () => {
    expect(await wroteThroughCopy(500)).toBe(false);
    expect(await wroteThroughCopy(10_000)).toBe(true);
    const { rows } = await pool.query(`SELECT count(*)::int AS n, sum(n)::int AS total FROM ${table}`);
    expect(rows[0]).toEqual({ n: 10_000, total: (9_999 * 10_000) / 2 });
  });
});

describe('postgres sink: a table that does not exist', () => {
  it('fails the write (to be retried) saying what to do', async () => {
    const sink = await createSink(postgresSink, {
      kind: 'postgres',
      url: serviceUrl('PG_URL'),
      table: `pgsink_${process.pid}_missing`,
    });
    try {
      await expect(sink.write([makeRecord('a', { n: 1 })], { reject: () => {} })).rejects.toThrow(
        `table "public"."pgsink_${process.pid}_missing" does not exist: create it, let the sink create it (create_table:), or set the schema it is in (schema:)`,
      );
    } finally {
      await sink.close();
    }
  });
});
