import { type ClickHouseClient, createClient } from '@clickhouse/client';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FlotillaRecord } from '../../src/core/record.js';
import { clickhouseSink } from '../../src/sinks/clickhouse.js';
import { mongodbSink } from '../../src/sinks/mongodb.js';
import { postgresSink, TENANT_POLICY } from '../../src/sinks/postgres.js';
import { redisSink } from '../../src/sinks/redis.js';
import type { DatabaseSink } from '../../src/sinks/shared/database-sink.js';
import { SinkWriteError } from '../../src/sinks/shared/errors.js';
import { connectOrExplain, serviceUrl } from '../support/services.js';
import { createSink, makeRecord } from '../support/sink-subjects.js';

/** Every name this file creates (tables, schemas, databases, roles, keys) starts with this. */
const RUN = `tnc${process.pid}`;

/**
 * Tenants an attacker might send, each refused before any statement: an SQL and a backtick
 * injection, a path traversal, a MongoDB operator, a name over 63 characters, a Cyrillic
 * lookalike of `acme`, and none.
 */
const MALICIOUS: unknown[] = [
  'a"; DROP TABLE x; --',
  'a`; DROP DATABASE default; --',
  '../x',
  '$where',
  'a'.repeat(64),
  '\u0430cme',
  undefined,
];
/** A valid tenant whose namespace (prefix + tenant) would be over 63 characters: refused where there is one. */
const TOO_LONG_FOR_A_NAMESPACE = 'z'.repeat(60);

interface Value {
  tenant: unknown;
  label: string;
  n: number;
}

/** `count` records of a tenant; ids are `<tenant>/<i>` unless `ids` says otherwise. */
function records(tenant: string, count: number, ids = (i: number) => `${tenant}/${i}`): FlotillaRecord[] {
  return Array.from({ length: count }, (_, i) =>
    makeRecord(ids(i), { tenant, label: `${tenant}-${i}`, n: i }),
  );
}

/** Records of every malicious tenant (and, for strategies with namespaces, of a too long one). */
const maliciousRecords = (namespaced: boolean) =>
  [...MALICIOUS, ...(namespaced ? [TOO_LONG_FOR_A_NAMESPACE] : [])].map((tenant, i) =>
    makeRecord(`evil/${i}`, { tenant, label: 'evil', n: -1 } satisfies Value),
  );

/** Writes like the worker does; returns what the sink rejected, with the errors. */
async function write(sink: DatabaseSink<unknown>, batch: FlotillaRecord[]) {
  const rejected: { id: string; error: string }[] = [];
  await sink.write(batch, { reject: (r, err) => rejected.push({ id: r.id, error: (err as Error).message }) });
  return rejected;
}

/** Every malicious record was refused, each with a tenant error, and nothing else was. */
function expectMaliciousRefused(rejected: { id: string; error: string }[], namespaced: boolean): void {
  expect(rejected.map((r) => r.id).sort()).toEqual(
    maliciousRecords(namespaced)
      .map((r) => r.id)
      .sort(),
  );
  for (const r of rejected) {
    expect(r.error).toMatch(
      /^tenant (field 'tenant' .*(is not a valid tenant name|is missing)|'z+' is too long)/,
    );
  }
}

/** The PostgreSQL URL, as another user (password `pw`) and/or in another database. */
function pgUrl(options: { user?: string; database?: string }): string {
  const u = new URL(serviceUrl('PG_URL'));
  if (options.user) {
    u.username = options.user;
    u.password = 'pw';
  }
  if (options.database) u.pathname = `/${options.database}`;
  return u.toString();
}

/**
 * Runs `work` on a fresh connection (closed after): as `user` (default: the admin), in
 * `database`, with `tenant` as the session's tenant setting (what the RLS policy reads).
 */
async function session<T>(
  work: (client: pg.Client) => Promise<T>,
  options: { user?: string; database?: string; tenant?: string } = {},
): Promise<T> {
  const client = new pg.Client({
    connectionString: pgUrl(options),
    ...(options.tenant ? { options: `-c flotilla.tenant=${options.tenant}` } : {}),
  });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** The SQLSTATE of a refused statement, or 'ok'. */
const sqlState = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (err: { code?: string }) => err.code ?? 'no code',
  );

describe('PostgreSQL tenancy', () => {
  let admin: pg.Pool;
  const roles: string[] = [];
  const databases: string[] = [];

  const createRole = async (name: string) => {
    await admin.query(`CREATE ROLE ${name} LOGIN PASSWORD 'pw' NOSUPERUSER NOCREATEDB NOCREATEROLE`);
    roles.push(name);
    return name;
  };

  beforeAll(async () => {
    admin = await connectOrExplain('PG_URL', async () => {
      const p = new pg.Pool({ connectionString: serviceUrl('PG_URL'), max: 2 });
      await p.query('SELECT 1');
      return p;
    });
  });

  afterAll(async () => {
    for (const db of databases) await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    const schemas = await admin.query<{ nspname: string }>(
      `SELECT nspname FROM pg_namespace WHERE nspname LIKE '${RUN}%'`,
    );
    for (const { nspname } of schemas.rows) await admin.query(`DROP SCHEMA "${nspname}" CASCADE`);
    for (const role of roles) {
      await admin.query(`DROP OWNED BY ${role} CASCADE`);
      await admin.query(`DROP ROLE ${role}`);
    }
    await admin.end();
  });

  describe('row: a tenant column with row-level security', () => {
    const schema = `${RUN}_row`;
    const table = `"${schema}".readings`;
    let writer: string;
    let reader: string;

    beforeAll(async () => {
      writer = await createRole(`${RUN}_writer`);
      reader = await createRole(`${RUN}_alpha_reader`);
      await admin.query(`CREATE SCHEMA "${schema}"`);
      // The sink runs as an ordinary role that owns its table: FORCE binds the owner to the policy.
      await admin.query(`GRANT USAGE, CREATE ON SCHEMA "${schema}" TO ${writer}`);
      await admin.query(`GRANT USAGE ON SCHEMA "${schema}" TO ${reader}`);

      for (const mode of ['insert', 'copy'] as const) {
        const sink = await createSink(postgresSink, {
          kind: 'postgres',
          url: pgUrl({ user: writer }),
          schema,
          table: 'readings',
          mode,
          create_table: { columns: { label: 'text', n: 'integer' } },
          tenancy: { strategy: 'row' },
        });
        try {
          const batch =
            mode === 'insert'
              ? [...records('alpha', 5), ...records('bravo', 4), ...maliciousRecords(false)]
              : // One id in two tenants: two rows, (tenant, id) is the key.
                [...records('alpha', 1, () => 'shared/1'), ...records('bravo', 1, () => 'shared/1')];
          const rejected = await write(sink, batch);
          if (mode === 'insert') expectMaliciousRefused(rejected, false);
          else expect(rejected).toEqual([]);
          // Idempotent: the same batch again changes nothing.
          await write(sink, batch);
        } finally {
          await sink.close();
        }
      }
      await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${table} TO ${reader}`);
    });

    it('writes each tenant under its own setting: the table has RLS enabled and forced, and every row', async () => {
      const { rows: flags } = await admin.query(
        `SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) AS owner,
                (SELECT pg_get_expr(p.polqual, p.polrelid) FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $2) AS policy
           FROM pg_class c WHERE c.oid = $1::regclass`,
        [table, TENANT_POLICY],
      );
      expect(flags[0]).toEqual({
        relrowsecurity: true,
        relforcerowsecurity: true,
        owner: writer,
        policy: "(tenant = current_setting('flotilla.tenant'::text, true))",
      });
      // The superuser bypasses RLS and sees everything.
      const { rows } = await admin.query(
        `SELECT tenant, count(*)::int AS n FROM ${table} GROUP BY 1 ORDER BY 1`,
      );
      expect(rows).toEqual([
        { tenant: 'alpha', n: 6 },
        { tenant: 'bravo', n: 5 },
      ]);
    });

    it("the sink's own role, without the setting, sees no row: the policy binds the owner", async () => {
      const count = await session(
        async (c) => (await c.query(`SELECT count(*)::int AS n FROM ${table}`)).rows,
        {
          user: writer,
        },
      );
      expect(count).toEqual([{ n: 0 }]);
    });

    it("tenant A's role cannot read, update or delete B's rows, nor write rows as B", async () => {
      await session(
        async (c) => {
          const seen = await c.query<{ tenant: string }>(`SELECT DISTINCT tenant FROM ${table}`);
          expect(seen.rows).toEqual([{ tenant: 'alpha' }]);
          expect((await c.query(`SELECT * FROM ${table} WHERE tenant = 'bravo'`)).rowCount).toBe(0);
          expect((await c.query(`UPDATE ${table} SET n = -1 WHERE tenant = 'bravo'`)).rowCount).toBe(0);
          expect((await c.query(`DELETE FROM ${table} WHERE tenant = 'bravo'`)).rowCount).toBe(0);
          expect((await c.query(`UPDATE ${table} SET n = -1 WHERE id = 'shared/1'`)).rowCount).toBe(1);
          // Inserting as B, or moving an own row to B: refused by the policy's WITH CHECK.
          expect(
            await sqlState(c.query(`INSERT INTO ${table} (id, tenant, n) VALUES ('forged', 'bravo', 1)`)),
          ).toBe('42501');
          expect(await sqlState(c.query(`UPDATE ${table} SET tenant = 'bravo' WHERE id = 'alpha/0'`))).toBe(
            '42501',
          );
        },
        { user: reader, tenant: 'alpha' },
      );
      const bravo = await admin.query(`SELECT id, n FROM ${table} WHERE tenant = 'bravo' ORDER BY id`);
      expect(bravo.rows).toEqual([
        { id: 'bravo/0', n: 0 },
        { id: 'bravo/1', n: 1 },
        { id: 'bravo/2', n: 2 },
        { id: 'bravo/3', n: 3 },
        { id: 'shared/1', n: 0 },
      ]);
    });

    it('limit: a role that may run any SQL can change its own setting, unless pinned by a restrictive policy', async () => {
      const switched = () =>
        session(
          async (c) => {
            await c.query(`SET flotilla.tenant = 'bravo'`);
            return (await c.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0];
          },
          { user: reader },
        );
      expect(await switched()).toEqual({ n: 5 });
      // The pin docs/tenancy.md recommends for roles that connect directly.
      await admin.query(
        `CREATE POLICY ${RUN}_pin_alpha ON ${table} AS RESTRICTIVE TO ${reader} USING (tenant = 'alpha') WITH CHECK (tenant = 'alpha')`,
      );
      expect(await switched()).toEqual({ n: 0 });
    });
  });

  describe('schema: a schema per tenant', () => {
    const prefix = `${RUN}s_`;
    let reader: string;

    beforeAll(async () => {
      reader = await createRole(`${RUN}_alpha_schema_reader`);
      const sink = await createSink(postgresSink, {
        kind: 'postgres',
        url: serviceUrl('PG_URL'),
        table: 'readings',
        create_table: { columns: { tenant: 'text', label: 'text', n: 'integer' } },
        tenancy: { strategy: 'schema', prefix },
      });
      try {
        const batch = [...records('alpha', 5), ...records('bravo', 3), ...maliciousRecords(true)];
        expectMaliciousRefused(await write(sink, batch), true);
        await write(sink, batch);
      } finally {
        await sink.close();
      }
      await admin.query(`GRANT USAGE ON SCHEMA ${prefix}alpha TO ${reader}`);
      await admin.query(`GRANT SELECT, UPDATE, DELETE ON ${prefix}alpha.readings TO ${reader}`);
    });

    it("creates one schema per valid tenant, each holding only that tenant's rows; nothing for the others", async () => {
      const { rows } = await admin.query<{ nspname: string }>(
        `SELECT nspname FROM pg_namespace WHERE nspname LIKE '${prefix}%' ORDER BY 1`,
      );
      expect(rows.map((r) => r.nspname)).toEqual([`${prefix}alpha`, `${prefix}bravo`]);
      for (const [tenant, count] of [
        ['alpha', 5],
        ['bravo', 3],
      ] as const) {
        const stored = await admin.query(
          `SELECT tenant, count(*)::int AS n FROM ${prefix}${tenant}.readings GROUP BY 1`,
        );
        expect(stored.rows).toEqual([{ tenant, n: count }]);
      }
    });

    it("tenant A's role (USAGE on schema A only) cannot read, update or delete B's rows", async () => {
      await session(
        async (c) => {
          expect((await c.query(`SELECT * FROM ${prefix}alpha.readings`)).rowCount).toBe(5);
          const bravo = `${prefix}bravo.readings`;
          expect(await sqlState(c.query(`SELECT * FROM ${bravo}`))).toBe('42501');
          expect(await sqlState(c.query(`UPDATE ${bravo} SET n = -1`))).toBe('42501');
          expect(await sqlState(c.query(`DELETE FROM ${bravo}`))).toBe('42501');
        },
        { user: reader },
      );
      const bravo = await admin.query(
        `SELECT count(*)::int AS n, min(n) AS least FROM ${prefix}bravo.readings`,
      );
      expect(bravo.rows).toEqual([{ n: 3, least: 0 }]);
    });
  });

  describe('database: a database per tenant', () => {
    const prefix = `${RUN}d_`;
    let reader: string;

    beforeAll(async () => {
      reader = await createRole(`${RUN}_alpha_db_reader`);
      databases.push(`${prefix}alpha`, `${prefix}bravo`);
      const sink = await createSink(postgresSink, {
        kind: 'postgres',
        url: serviceUrl('PG_URL'),
        table: 'readings',
        create_table: { columns: { tenant: 'text', label: 'text', n: 'integer' } },
        tenancy: { strategy: 'database', prefix },
        // One open tenant pool: writing bravo closes alpha's.
        tenant_pools: 1,
      });
      try {
        const batch = [...records('alpha', 4), ...records('bravo', 2), ...maliciousRecords(true)];
        expectMaliciousRefused(await write(sink, batch), true);
        // Alpha's pool was closed for bravo's: it is opened again, the rows stay once each.
        await write(sink, batch);
        // Only bravo's pool is still open (tenant_pools: 1).
        const open = await admin.query<{ datname: string }>(
          `SELECT DISTINCT datname FROM pg_stat_activity WHERE datname LIKE '${prefix}%'`,
        );
        expect(open.rows).toEqual([{ datname: `${prefix}bravo` }]);
      } finally {
        await sink.close();
      }
      await admin.query(`GRANT CONNECT ON DATABASE ${prefix}alpha TO ${reader}`);
      await session((c) => c.query(`GRANT SELECT, UPDATE, DELETE ON public.readings TO ${reader}`), {
        database: `${prefix}alpha`,
      });
    });

    it('creates one database per valid tenant, closed to PUBLIC, each with only its rows', async () => {
      const { rows } = await admin.query<{ datname: string; datacl: string | null }>(
        `SELECT datname, datacl::text FROM pg_database WHERE datname LIKE '${prefix}%' ORDER BY 1`,
      );
      expect(rows.map((r) => r.datname)).toEqual([`${prefix}alpha`, `${prefix}bravo`]);
      // No `=c/…` entry: PUBLIC may not connect.
      for (const r of rows) expect(r.datacl).not.toMatch(/[{,]=[A-Za-z]*c/);
      const counts = await session(
        async (c) => (await c.query('SELECT tenant, count(*)::int AS n FROM readings GROUP BY 1')).rows,
        { database: `${prefix}bravo` },
      );
      expect(counts).toEqual([{ tenant: 'bravo', n: 2 }]);
    });

    it("tenant A's role can connect to database A only", async () => {
      const alpha = await session(
        async (c) => (await c.query('SELECT count(*)::int AS n FROM readings')).rows,
        {
          user: reader,
          database: `${prefix}alpha`,
        },
      );
      expect(alpha).toEqual([{ n: 4 }]);
      const refused = await sqlState(
        session(async () => undefined, { user: reader, database: `${prefix}bravo` }),
      );
      expect(refused).toBe('42501');
    });
  });
});

/**
 * The tenant-scoped users the services' ClickHouse has (scripts/services/clickhouse-tenant-probes.xml):
 * each may use only its tenant's database, `CLICKHOUSE_PROBE_PREFIX + tenant`. These names are
 * fixed by that file, unlike the rest of this file's names.
 */
const CLICKHOUSE_PROBE_PREFIX = 'flotilla_probe_';
const CLICKHOUSE_PROBES = [
  { tenant: 'alpha', user: 'flotilla_tenant_probe_a', password: 'flotilla-probe-alpha' },
  { tenant: 'bravo', user: 'flotilla_tenant_probe_b', password: 'flotilla-probe-bravo' },
] as const;
type ClickHouseProbe = (typeof CLICKHOUSE_PROBES)[number];

const selectFrom = async <T>(client: ClickHouseClient, query: string) =>
  (await client.query({ query, format: 'JSONEachRow' })).json<T>();

/** A connection as the probe user, in its tenant's database; says how to fix a server without the user. */
async function connectAsProbe(probe: ClickHouseProbe): Promise<ClickHouseClient> {
  const client = createClient({
    url: serviceUrl('CLICKHOUSE_URL'),
    username: probe.user,
    password: probe.password,
    database: CLICKHOUSE_PROBE_PREFIX + probe.tenant,
  });
  try {
    await selectFrom(client, 'SELECT 1');
    return client;
  } catch (err) {
    await client.close();
    // 18.16: "Unknown user"; 24.8: "there is no user with such name".
    if (/Unknown user|no user with such name/.test((err as Error).message)) {
      throw new Error(
        `ClickHouse has no user ${probe.user}: it was started before scripts/services/clickhouse-tenant-probes.xml ` +
          'was installed; restart it (bash scripts/services.sh down clickhouse && bash scripts/services.sh up clickhouse, ' +
          'or docker compose up -d clickhouse)',
        { cause: err },
      );
    }
    throw err;
  }
}

/** How ClickHouse refuses a user a database outside its allow_databases: 18.16, then 24.8 (grants). */
const refusedDatabase = (user: string, database: string) =>
  new RegExp(
    `Access denied to database ${database} for user ${user}|Not enough privileges\\..* ON ${database}\\.readings`,
  );

describe('ClickHouse tenancy', () => {
  let ch: ClickHouseClient;
  const select = <T>(query: string) => selectFrom<T>(ch, query);
  const dropProbeDatabases = async () => {
    for (const { tenant } of CLICKHOUSE_PROBES) {
      await ch.command({ query: `DROP DATABASE IF EXISTS ${CLICKHOUSE_PROBE_PREFIX}${tenant}` });
    }
  };

  beforeAll(async () => {
    ch = await connectOrExplain('CLICKHOUSE_URL', async () => {
      const c = createClient({ url: serviceUrl('CLICKHOUSE_URL') });
      await (await c.query({ query: 'SELECT 1', format: 'JSONEachRow' })).json();
      return c;
    });
  });

  afterAll(async () => {
    const dbs = await select<{ name: string }>(`SELECT name FROM system.databases WHERE name LIKE '${RUN}%'`);
    for (const { name } of dbs) await ch.command({ query: `DROP DATABASE IF EXISTS ${name}` });
    await dropProbeDatabases();
    const tables = await select<{ name: string }>(
      `SELECT name FROM system.tables WHERE database = 'default' AND name LIKE '${RUN}%'`,
    );
    for (const { name } of tables) await ch.command({ query: `DROP TABLE IF EXISTS default.${name}` });
    await ch.close();
  });

  it('row: a tenant column in the sorting key; an id in two tenants stays two rows', async () => {
    const table = `${RUN}_ch_row`;
    const sink = await createSink(clickhouseSink, {
      kind: 'clickhouse',
      url: serviceUrl('CLICKHOUSE_URL'),
      table,
      create_table: { columns: { label: 'String', n: 'Int64' } },
      tenancy: { strategy: 'row' },
    });
    try {
      const batch = [
        ...records('alpha', 3),
        ...records('bravo', 2),
        ...records('alpha', 1, () => 'shared/1'),
        ...records('bravo', 1, () => 'shared/1'),
        ...maliciousRecords(false),
      ];
      expectMaliciousRefused(await write(sink, batch), false);
      await write(sink, batch);
    } finally {
      await sink.close();
    }
    const [meta] = await select<{ sorting_key: string }>(
      `SELECT sorting_key FROM system.tables WHERE database = 'default' AND name = '${table}'`,
    );
    expect(meta?.sorting_key).toBe('tenant, id');
    const rows = await select<{ tenant: string; n: string; labels: string[] }>(
      `SELECT tenant, count() AS n, groupArray(label) AS labels FROM default.${table} FINAL GROUP BY tenant ORDER BY tenant`,
    );
    expect(rows.map((r) => [r.tenant, Number(r.n)])).toEqual([
      ['alpha', 4],
      ['bravo', 3],
    ]);
    // Every row of a tenant carries that tenant's data.
    for (const r of rows) for (const label of r.labels) expect(label.startsWith(`${r.tenant}-`)).toBe(true);
  });

  it('row: refuses a table whose sorting key lacks the tenant (rows of two tenants would collapse)', async () => {
    const table = `${RUN}_ch_row_bad`;
    await ch.command({
      query: `CREATE TABLE default.${table} (id String, tenant String, n Int64, _version UInt64) ENGINE = ReplacingMergeTree(_version) ORDER BY id`,
    });
    const sink = await createSink(clickhouseSink, {
      kind: 'clickhouse',
      url: serviceUrl('CLICKHOUSE_URL'),
      table,
      columns: { n: 'n' },
      tenancy: { strategy: 'row' },
    });
    try {
      const err = await sink.write(records('alpha', 1), { reject: () => undefined }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SinkWriteError);
      expect((err as Error).message).toMatch(/sorted by \(id\), without the tenant column `tenant`/);
    } finally {
      await sink.close();
    }
  });

  it("schema: a database per tenant, each holding only that tenant's rows; nothing for malicious tenants", async () => {
    const prefix = `${RUN}c_`;
    const sink = await createSink(clickhouseSink, {
      kind: 'clickhouse',
      url: serviceUrl('CLICKHOUSE_URL'),
      table: 'readings',
      create_table: { columns: { tenant: 'String', label: 'String', n: 'Int64' } },
      tenancy: { strategy: 'schema', prefix },
    });
    try {
      const batch = [...records('alpha', 4), ...records('bravo', 2), ...maliciousRecords(true)];
      expectMaliciousRefused(await write(sink, batch), true);
      await write(sink, batch);
    } finally {
      await sink.close();
    }
    const dbs = await select<{ name: string }>(
      `SELECT name FROM system.databases WHERE name LIKE '${prefix}%' ORDER BY name`,
    );
    expect(dbs.map((d) => d.name)).toEqual([`${prefix}alpha`, `${prefix}bravo`]);
    for (const [tenant, count] of [
      ['alpha', 4],
      ['bravo', 2],
    ] as const) {
      const rows = await select<{ tenant: string; n: string }>(
        `SELECT tenant, count() AS n FROM ${prefix}${tenant}.readings FINAL GROUP BY tenant`,
      );
      expect(rows.map((r) => [r.tenant, Number(r.n)])).toEqual([[tenant, count]]);
    }
  });

  describe("schema: a tenant's user, limited to its database by allow_databases", () => {
    const counts = { alpha: 4, bravo: 2 };

    beforeAll(async () => {
      // Fixed names: a previous run that died keeps its databases.
      await dropProbeDatabases();
      const sink = await createSink(clickhouseSink, {
        kind: 'clickhouse',
        url: serviceUrl('CLICKHOUSE_URL'),
        table: 'readings',
        create_table: { columns: { tenant: 'String', label: 'String', n: 'Int64' } },
        tenancy: { strategy: 'schema', prefix: CLICKHOUSE_PROBE_PREFIX },
      });
      try {
        expect(
          await write(sink, [...records('alpha', counts.alpha), ...records('bravo', counts.bravo)]),
        ).toEqual([]);
      } finally {
        await sink.close();
      }
    });

    const [alpha, bravo] = CLICKHOUSE_PROBES;
    for (const [own, other] of [
      [alpha, bravo],
      [bravo, alpha],
    ] as const) {
      it(`${own.tenant}'s user reads ${own.tenant}'s rows and is refused SELECT, INSERT and ALTER DELETE on ${other.tenant}'s`, async () => {
        const client = await connectAsProbe(own);
        const otherTable = `${CLICKHOUSE_PROBE_PREFIX}${other.tenant}.readings`;
        const refused = refusedDatabase(own.user, `${CLICKHOUSE_PROBE_PREFIX}${other.tenant}`);
        try {
          const rows = await selectFrom<{ tenant: string; n: string }>(
            client,
            'SELECT tenant, count() AS n FROM readings FINAL GROUP BY tenant',
          );
          expect(rows.map((r) => [r.tenant, Number(r.n)])).toEqual([[own.tenant, counts[own.tenant]]]);
          await expect(selectFrom(client, `SELECT * FROM ${otherTable}`)).rejects.toThrow(refused);
          await expect(
            client.command({
              query: `INSERT INTO ${otherTable} (id, tenant, label, n, _version) VALUES ('forged', '${other.tenant}', 'forged', -1, 1)`,
            }),
          ).rejects.toThrow(refused);
          await expect(client.command({ query: `ALTER TABLE ${otherTable} DELETE WHERE 1` })).rejects.toThrow(
            refused,
          );
        } finally {
          await client.close();
        }
        // The other tenant's rows are untouched, and no mutation was queued for them.
        const [stored] = await select<{ count: string; least: string }>(
          `SELECT count() AS count, min(n) AS least FROM ${otherTable} FINAL`,
        );
        expect([Number(stored?.count), Number(stored?.least)]).toEqual([counts[other.tenant], 0]);
        const [mutations] = await select<{ n: string }>(
          `SELECT count() AS n FROM system.mutations WHERE database = '${CLICKHOUSE_PROBE_PREFIX}${other.tenant}'`,
        );
        expect(Number(mutations?.n)).toBe(0);
      });
    }
  });
});

describe('MongoDB (FerretDB) tenancy', () => {
  let client: MongoClient;

  beforeAll(async () => {
    client = await connectOrExplain('MONGO_URL', async () => {
      const c = new MongoClient(serviceUrl('MONGO_URL'), { serverSelectionTimeoutMS: 5000 });
      await c.connect();
      return c;
    });
  });

  afterAll(async () => {
    const { databases } = await client.db('admin').admin().listDatabases();
    for (const { name } of databases) if (name.startsWith(RUN)) await client.db(name).dropDatabase();
    await client.close();
  });

  it("row: every document carries its tenant, and an upsert never replaces another tenant's document", async () => {
    const database = `${RUN}_mongo_row`;
    const docs = client.db(database).collection<{ _id: string; tenant: string; n: number }>('rows');
    await docs.insertOne({ _id: 'shared/1', tenant: 'bravo', n: 100 });
    const sink = await createSink(mongodbSink, {
      kind: 'mongodb',
      url: serviceUrl('MONGO_URL'),
      database,
      collection: 'rows',
      tenancy: { strategy: 'row' },
    });
    try {
      const intruder = records('alpha', 1, () => 'shared/1');
      const batch = [...records('alpha', 3), ...records('bravo', 2), ...intruder, ...maliciousRecords(false)];
      const rejected = await write(sink, batch);
      const shared = rejected.find((r) => r.id === 'shared/1');
      expect(shared?.error).toMatch(/E11000 duplicate key/);
      expectMaliciousRefused(
        rejected.filter((r) => r !== shared),
        false,
      );
      await write(sink, batch);
    } finally {
      await sink.close();
    }
    expect(await docs.findOne({ _id: 'shared/1' })).toEqual({ _id: 'shared/1', tenant: 'bravo', n: 100 });
    const all = await docs.find({ _id: { $ne: 'shared/1' } }).toArray();
    expect(all.map((d) => d.tenant).sort()).toEqual(['alpha', 'alpha', 'alpha', 'bravo', 'bravo']);
    for (const d of all) expect(d._id.startsWith(`${d.tenant}/`)).toBe(true);
  });

  it("database: a database per tenant, each holding only that tenant's documents; nothing for malicious tenants", async () => {
    const prefix = `${RUN}m_`;
    const sink = await createSink(mongodbSink, {
      kind: 'mongodb',
      url: serviceUrl('MONGO_URL'),
      collection: 'rows',
      tenancy: { strategy: 'database', prefix },
    });
    try {
      const batch = [...records('alpha', 3), ...records('bravo', 2), ...maliciousRecords(true)];
      expectMaliciousRefused(await write(sink, batch), true);
      await write(sink, batch);
    } finally {
      await sink.close();
    }
    const { databases } = await client.db('admin').admin().listDatabases();
    expect(
      databases
        .map((d) => d.name)
        .filter((n) => n.startsWith(prefix))
        .sort(),
    ).toEqual([`${prefix}alpha`, `${prefix}bravo`]);
    for (const [tenant, count] of [
      ['alpha', 3],
      ['bravo', 2],
    ] as const) {
      const docs = await client.db(`${prefix}${tenant}`).collection<Value>('rows').find().toArray();
      expect(docs).toHaveLength(count);
      for (const d of docs) expect(d.tenant).toBe(tenant);
    }
  });
});

describe('Redis tenancy', () => {
  let redis: Redis;
  const prefix = `${RUN}r_`;
  const user = `${RUN}_alpha`;

  beforeAll(async () => {
    redis = await connectOrExplain('REDIS_URL', async () => {
      const r = new Redis(serviceUrl('REDIS_URL'), { lazyConnect: true });
      await r.connect();
      return r;
    });
  });

  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.acl('DELUSER', user);
    redis.disconnect();
  });

  it("row: every key is under its tenant's namespace; an ACL on the namespace keeps A out of B's keys", async () => {
    const sink = await createSink(redisSink, {
      kind: 'redis',
      url: serviceUrl('REDIS_URL'),
      mode: 'set',
      key: 'latest:{label}',
      tenancy: { strategy: 'row', prefix },
    });
    try {
      const batch = [...records('alpha', 3), ...records('bravo', 2), ...maliciousRecords(true)];
      expectMaliciousRefused(await write(sink, batch), true);
    } finally {
      await sink.close();
    }
    expect((await redis.keys(`${prefix}*`)).sort()).toEqual([
      `${prefix}alpha:latest:alpha-0`,
      `${prefix}alpha:latest:alpha-1`,
      `${prefix}alpha:latest:alpha-2`,
      `${prefix}bravo:latest:bravo-0`,
      `${prefix}bravo:latest:bravo-1`,
    ]);

    await redis.acl('SETUSER', user, 'on', '>pw', `~${prefix}alpha:*`, '+@all');
    const url = new URL(serviceUrl('REDIS_URL'));
    url.username = user;
    url.password = 'pw';
    const alpha = new Redis(url.toString());
    try {
      expect(JSON.parse((await alpha.get(`${prefix}alpha:latest:alpha-0`)) as string)).toMatchObject({
        tenant: 'alpha',
      });
      const bravoKey = `${prefix}bravo:latest:bravo-0`;
      for (const attempt of [alpha.get(bravoKey), alpha.set(bravoKey, 'x'), alpha.del(bravoKey)]) {
        await expect(attempt).rejects.toThrow(/NOPERM/);
      }
    } finally {
      alpha.disconnect();
    }
    expect(JSON.parse((await redis.get(`${prefix}bravo:latest:bravo-0`)) as string)).toMatchObject({
      tenant: 'bravo',
      n: 0,
    });
  });
});
