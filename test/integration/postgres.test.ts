import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectOrExplain, serviceUrl } from '../support/services.js';

describe('PostgreSQL (pg)', () => {
  let pool: pg.Pool;
  const table = `it_upsert_${process.pid}_${Date.now()}`;

  beforeAll(async () => {
    pool = await connectOrExplain('PG_URL', async () => {
      const p = new pg.Pool({
        connectionString: serviceUrl('PG_URL'),
        max: 2,
        connectionTimeoutMillis: 3000,
      });
      await p.query('SELECT 1');
      return p;
    });
    await pool.query(
      `CREATE TABLE ${table} (id text PRIMARY KEY, value double precision NOT NULL, version int NOT NULL)`,
    );
  });

  afterAll(async () => {
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.end();
  });

  it('upserts idempotently with a multi-row INSERT ... ON CONFLICT', async () => {
    const upsert = (rows: [string, number, number][]) =>
      pool.query(
        `INSERT INTO ${table} (id, value, version)
         SELECT * FROM unnest($1::text[], $2::float8[], $3::int[])
         ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version
         WHERE ${table}.version <= EXCLUDED.version`,
        [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2])],
      );
    const batch: [string, number, number][] = [
      ['a', 1, 1],
      ['b', 2, 1],
    ];
    await upsert(batch);
    await upsert(batch); // the same batch again: no new rows
    await upsert([['a', 10, 2]]); // a newer version wins
    await upsert([['a', 99, 1]]); // an older one does not
    const { rows } = await pool.query(`SELECT id, value, version FROM ${table} ORDER BY id`);
    expect(rows).toEqual([
      { id: 'a', value: 10, version: 2 },
      { id: 'b', value: 2, version: 1 },
    ]);
  });

  it('rolls back a failed transaction', async () => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`INSERT INTO ${table} VALUES ('tx', 1, 1)`);
      await expect(client.query(`INSERT INTO ${table} VALUES ('tx', 2, 1)`)).rejects.toMatchObject({
        code: '23505',
      });
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const { rowCount } = await pool.query(`SELECT 1 FROM ${table} WHERE id = 'tx'`);
    expect(rowCount).toBe(0);
  });
});
