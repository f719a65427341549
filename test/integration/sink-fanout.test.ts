import { type ClickHouseClient, createClient } from '@clickhouse/client';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Readiness } from '../../src/observability/http.js';
import { registry } from '../../src/observability/metrics.js';
import { Fleet } from '../../src/runtime/fleet.js';
import { writeTopology } from '../support/kafka.js';
import { connectOrExplain, serviceUrl } from '../support/services.js';
import { addressOf, withAddress } from '../support/sink-subjects.js';
import { StreamInput } from '../support/stream-input.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait.js';

/** Every table, database, stream and topology of this file starts with this. */
const RUN = `fanout_${process.pid}`;

/** Input record n; every tenth is an anomaly, which only the MongoDB sink receives (`when:`). */
const reading = (n: number) => ({ label: `l${n}`, n, is_anomaly: n % 10 === 0 });
const readings = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => reading(from + i));

/** Sum of a metric's values with these labels. */
async function metricSum(name: string, labels: Record<string, string>): Promise<number> {
  const values = (await registry.getSingleMetric(name)?.get())?.values ?? [];
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((sum, v) => sum + v.value, 0);
}

describe('fan-out to several database sinks', () => {
  let redis: Redis;
  let admin: pg.Pool;
  let ch: ClickHouseClient;
  let mongo: MongoClient;
  const proxy = new TcpProxy(addressOf(serviceUrl('PG_URL')));
  const tables: string[] = [];
  const inputs: StreamInput[] = [];

  beforeAll(async () => {
    redis = await connectOrExplain('REDIS_URL', async () => {
      const r = new Redis(serviceUrl('REDIS_URL'), { lazyConnect: true });
      await r.connect();
      return r;
    });
    admin = new pg.Pool({ connectionString: serviceUrl('PG_URL'), max: 1 });
    ch = createClient({ url: serviceUrl('CLICKHOUSE_URL') });
    mongo = new MongoClient(serviceUrl('MONGO_URL'), { serverSelectionTimeoutMS: 5000 });
  });

  afterAll(async () => {
    await proxy.down();
    for (const table of tables) {
      await admin.query(`DROP TABLE IF EXISTS ${table}`);
      await ch.command({ query: `DROP TABLE IF EXISTS default.${table}` });
      await mongo.db(table).dropDatabase();
    }
    for (const input of inputs) await input.drop();
    await Promise.all([admin.end(), ch.close(), mongo.close(), redis.quit()]);
  });

  /**
   * A topology reading a fresh stream into PostgreSQL (through the proxy, so it can be taken
   * down), ClickHouse, and MongoDB for anomalies only; `pgOptions` are added to the PostgreSQL sink.
   */
  function fanOut(test: string, pgOptions: Record<string, unknown> = {}) {
    const name = `${RUN}_${test}`;
    tables.push(name);
    const input = new StreamInput(redis, serviceUrl('REDIS_URL'), `${RUN}-${test}`);
    inputs.push(input);
    const columns = { label: 'label', n: 'n' };
    const sinks = [
      {
        kind: 'postgres',
        name: 'pg',
        url: withAddress(serviceUrl('PG_URL'), proxy.address),
        table: name,
        columns,
        create_table: { columns: { label: 'text', n: 'integer' } },
        timeout: 1,
        circuit: { failures: 2, cooldown: 0.3 },
        ...pgOptions,
      },
      {
        kind: 'clickhouse',
        name: 'ch',
        url: serviceUrl('CLICKHOUSE_URL'),
        table: name,
        columns,
        create_table: { columns: { label: 'String', n: 'Int64' } },
      },
      {
        kind: 'mongodb',
        name: 'anomalies',
        url: serviceUrl('MONGO_URL'),
        database: name,
        collection: 'anomalies',
        when: 'value.is_anomaly',
      },
    ];
    const file = writeTopology(`name: ${name}
${input.topologyLines({ batch_count: 50, max_inflight_records: 200 })}
steps: [{ kind: decode, format: json }]
sinks:
${sinks.map((s) => `  - ${JSON.stringify(s)}`).join('\n')}
`);
    const count = {
      pg: async () => Number((await admin.query(`SELECT count(*) AS n FROM ${name}`)).rows[0]?.n),
      ch: async () => {
        const result = await ch.query({
          query: `SELECT count() AS n FROM default.${name} FINAL`,
          format: 'JSONEachRow',
        });
        return Number((await result.json<{ n: string }>())[0]?.n);
      },
      anomalies: () => mongo.db(name).collection('anomalies').countDocuments({ is_anomaly: true }),
      documents: () => mongo.db(name).collection('anomalies').countDocuments(),
    };
    return { name, input, file, count };
  }

  async function runFleet(file: string) {
    const readiness = new Readiness();
    const fleet = new Fleet(pino({ level: 'silent' }), readiness);
    await fleet.start([file]);
    const ready = (check: string) => readiness.evaluate().checks.find((c) => c.name === check)?.ok;
    return {
      ready,
      stop: async () => {
        await fleet.stop();
        await fleet.done();
      },
    };
  }

  it('routes with when:, and while one sink is down pauses acknowledgement (the others write on, /ready says which), then loses nothing', async () => {
    await proxy.up();
    const { name, input, file, count } = fanOut('pause');
    const fleet = await runFleet(file);
    try {
      await waitFor('the source consuming', () => fleet.ready(`${name}/source`) === true);
      await input.add(readings(0, 100));
      await input.waitAcknowledged();
      expect([await count.pg(), await count.ch(), await count.anomalies(), await count.documents()]).toEqual([
        100, 100, 10, 10,
      ]);
      expect(fleet.ready(`${name}/sink/pg`)).toBe(true);

      await proxy.down();
      await input.add(readings(100, 200));
      await waitFor('/ready reporting the PostgreSQL sink', () => fleet.ready(`${name}/sink/pg`) === false);
      // The other sinks have the new records, yet none is acknowledged: PostgreSQL has not got them.
      await waitFor('ClickHouse and MongoDB written', async () => (await count.ch()) === 200);
      await waitFor('MongoDB written', async () => (await count.documents()) === 20);
      await new Promise((r) => setTimeout(r, 500));
      expect(await input.pending()).toBe(100);
      expect(await count.pg()).toBe(100);
      expect(fleet.ready(`${name}/sink/ch`)).toBe(true);
      const pgLabels = { topology: name, sink: 'pg' };
      expect(
        await metricSum('flotilla_sink_statement_errors_total', { ...pgLabels, error: 'connection' }),
      ).toBeGreaterThan(0);
      expect(await metricSum('flotilla_sink_circuit_state', pgLabels)).toBeGreaterThan(0);

      await proxy.up();
      await input.waitAcknowledged();
      expect([await count.pg(), await count.ch(), await count.anomalies(), await count.documents()]).toEqual([
        200, 200, 20, 20,
      ]);
      expect(fleet.ready(`${name}/sink/pg`)).toBe(true);
      expect(await input.deadLetters()).toEqual([]);
      expect(await metricSum('flotilla_sink_rows_written_total', pgLabels)).toBe(200);
    } finally {
      await proxy.up();
      await fleet.stop();
    }
  });

  it('with give_up_after, a sink that stays down holds the others up that long only: its batches are dead-lettered, the rest lands and is acknowledged', async () => {
    // A port that refuses connections: PostgreSQL stays unreachable for the whole test.
    await proxy.up();
    await proxy.down();
    const { name, input, file, count } = fanOut('give_up', { give_up_after: '1s' });
    const fleet = await runFleet(file);
    try {
      await waitFor('the source consuming', () => fleet.ready(`${name}/source`) === true);
      const started = Date.now();
      const entryIds = await input.add(readings(0, 100));
      await input.waitAcknowledged();
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
      expect([await count.ch(), await count.anomalies()]).toEqual([100, 10]);
      const letters = await input.deadLetters();
      expect(letters.map((l) => l['flotilla.source.offset']).sort()).toEqual([...entryIds].sort());
      for (const letter of letters) {
        expect(letter).toMatchObject({ 'flotilla.reason': 'sink_unavailable', 'flotilla.step': 'pg' });
        expect(letter['flotilla.error']).toMatch(/sink 'pg': (connection error|circuit open)/);
      }
    } finally {
      await fleet.stop();
    }
  });
});
