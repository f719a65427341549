import { type ClickHouseClient, createClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectOrExplain, serviceUrl } from '../support/services.js';

describe('ClickHouse (@clickhouse/client)', () => {
  let client: ClickHouseClient;
  const table = `it_replacing_${process.pid}_${Date.now()}`;

  beforeAll(async () => {
    client = await connectOrExplain('CLICKHOUSE_URL', async () => {
      const c = createClient({ url: serviceUrl('CLICKHOUSE_URL'), request_timeout: 10_000 });
      const ping = await c.ping();
      if (!ping.success) throw ping.error;
      return c;
    });
  });

  afterAll(async () => {
    await client.command({ query: `DROP TABLE IF EXISTS ${table}` });
    await client.close();
  });

  it('collapses re-delivered rows in a ReplacingMergeTree read with FINAL', async () => {
    // Syntax both ClickHouse 18.16 (Debian) and current releases accept.
    await client.command({
      query: `CREATE TABLE ${table} (id String, tenant String, value Float64, version UInt64)
              ENGINE = ReplacingMergeTree(version) ORDER BY (tenant, id)`,
    });
    const rows = [
      { id: 'w1', tenant: 't1', value: 1.5, version: 1 },
      { id: 'w2', tenant: 't1', value: 2.5, version: 1 },
    ];
    await client.insert({ table, values: rows, format: 'JSONEachRow' });
    await client.insert({ table, values: rows, format: 'JSONEachRow' }); // re-delivery
    await client.insert({
      table,
      values: [{ id: 'w1', tenant: 't1', value: 9, version: 2 }],
      format: 'JSONEachRow',
    });

    const raw = await client.query({ query: `SELECT count() AS n FROM ${table}`, format: 'JSONEachRow' });
    expect(Number(((await raw.json()) as { n: string | number }[])[0]?.n)).toBe(5);

    const result = await client.query({
      query: `SELECT id, value, version FROM ${table} FINAL ORDER BY id`,
      format: 'JSONEachRow',
    });
    const final = (await result.json()) as { id: string; value: number; version: string | number }[];
    expect(final.map((r) => ({ id: r.id, value: r.value, version: Number(r.version) }))).toEqual([
      { id: 'w1', value: 9, version: 2 },
      { id: 'w2', value: 2.5, version: 1 },
    ]);
  });
});
