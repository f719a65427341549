import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import type { FlotillaRecord } from '../../src/core/record.js';
import { batchSchema, circuitSchema, tenancySchema } from '../../src/sinks/shared/config.js';
import {
  DatabaseSink,
  type Encoded,
  NO_FAILURES,
  type RowFailure,
  type SinkDriver,
} from '../../src/sinks/shared/database-sink.js';
import { type ErrorKind, RowRefusedError, SinkWriteError } from '../../src/sinks/shared/errors.js';
import { SinkTenancy } from '../../src/tenancy/sink-tenancy.js';
import { TargetCache } from '../../src/tenancy/target-cache.js';
import { checkTenantName, InvalidTenantError, namespaceOf } from '../../src/tenancy/tenant.js';
import { topologySchema } from '../../src/topology/schema.js';
import { parseAndValidate } from '../../src/topology/validate.js';

const record = (id: string, value: unknown): FlotillaRecord => ({
  id,
  key: null,
  value,
  timestamp: 0,
  headers: {},
  source: { topic: 't', partition: 0, offset: id },
});

/** Names an attacker might send as a tenant, with what the error must say about each. */
const MALICIOUS_TENANTS: [string, unknown, RegExp][] = [
  ['SQL injection', 'a"; DROP TABLE x; --', /"\\"" at position 2/],
  ['backtick injection', 'a`; DROP DATABASE default; --', /"`" at position 2/],
  ['path traversal', '../x', /starts with "\."/],
  ['MongoDB operator', '$where', /starts with "\$"/],
  ['a key separator', 'a:b', /":" at position 2/],
  ['too long', `a${'b'.repeat(63)}`, /64 characters, more than 63/],
  ['a Cyrillic lookalike', '\u0430cme', /non-ASCII character U\+0430 at position 1/],
  ['a fullwidth lookalike', 'ac\uFF4De', /non-ASCII character U\+FF4D at position 3/],
  ['uppercase', 'Acme', /starts with "A"/],
  ['a NUL byte', 'a\u0000b', /"\\u0000" at position 2/],
  ['empty', '', /it is empty/],
  ['a number', 42, /a number, not a string/],
  ['an operator object', { $ne: null }, /an object, not a string/],
  ['null', null, /missing or null/],
];

describe('tenant names', () => {
  it('accepts lowercase ASCII names up to 63 characters', () => {
    for (const name of ['acme', 'a', 'tenant_42', `a${'b'.repeat(62)}`])
      expect(checkTenantName(name)).toBe(name);
  });

  it.each(MALICIOUS_TENANTS)('refuses %s with a clear reason', (_, name, why) => {
    const err = (() => {
      try {
        checkTenantName(name);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InvalidTenantError);
    expect((err as InvalidTenantError).reason).toBe('tenant');
    expect((err as Error).message).toMatch(why);
    expect((err as Error).message).toMatch(/lowercase ASCII letters, digits and _/);
  });

  it('shows a long bad name cut, with its length', () => {
    expect(() => checkTenantName(`A${'x'.repeat(500)}`)).toThrow(/…" \(501 characters\)/);
  });

  it('builds namespaces that fit the databases and are never a system name', () => {
    expect(namespaceOf('tenant_', 'acme')).toBe('tenant_acme');
    expect(() => namespaceOf('tenant_', 'a'.repeat(57))).toThrow(/64 characters, more than 63/);
    expect(namespaceOf('tenant_', 'a'.repeat(56))).toHaveLength(63);
    expect(() => namespaceOf('information_', 'schema')).toThrow(/system namespace 'information_schema'/);
  });

  it('validates the prefix: ends with _, not pg_', () => {
    const parse = (prefix: string) => tenancySchema.safeParse({ strategy: 'schema', prefix }).success;
    expect(parse('tenant_')).toBe(true);
    expect(parse('tenant')).toBe(false);
    expect(parse('pg_')).toBe(false);
    expect(parse('Tenant_')).toBe(false);
  });
});

describe('SinkTenancy', () => {
  const tenancy = (strategy: 'row' | 'schema', field = 'tenant') =>
    new SinkTenancy(tenancySchema.parse({ strategy, field }));

  it('reads the tenant from a field path; the target is the tenant (row) or its namespace', () => {
    expect(tenancy('row').targetOf(record('1', { tenant: 'acme' }))).toBe('acme');
    expect(tenancy('schema').targetOf(record('1', { tenant: 'acme' }))).toBe('tenant_acme');
    expect(tenancy('row', 'meta.org').targetOf(record('1', { meta: { org: 'globex' } }))).toBe('globex');
  });

  it('refuses records without a valid tenant as rows (dead letters), naming the field', () => {
    expect(() => tenancy('row').targetOf(record('1', { host: 'h' }))).toThrow(RowRefusedError);
    expect(() => tenancy('row').targetOf(record('1', { host: 'h' }))).toThrow(
      /tenant field 'tenant' is missing or null/,
    );
    expect(() => tenancy('row', 'meta.org').targetOf(record('1', { meta: { org: '../x' } }))).toThrow(
      /tenant field 'meta.org' "..\/x" is not a valid tenant name/,
    );
    // A prototype key cannot even be configured as the tenant field.
    expect(tenancySchema.safeParse({ strategy: 'row', field: 'constructor' }).success).toBe(false);
  });

  it("refuses a row whose own tenant column disagrees with the record's tenant", () => {
    const t = tenancy('row', 'org');
    expect(() => t.checkRow({ tenant: 'globex' }, 'acme')).toThrow(/column 'tenant' is "globex"/);
    expect(() => t.checkRow({ tenant: 'acme' }, 'acme')).not.toThrow();
    expect(() => t.checkRow({ host: 'h' }, 'acme')).not.toThrow();
  });
});

describe('TargetCache', () => {
  class Resources {
    opened: string[] = [];
    closed: string[] = [];
    failNext = false;
    cache = new TargetCache<string>({
      max: 2,
      open: async (key) => {
        await Promise.resolve();
        if (this.failNext) {
          this.failNext = false;
          throw new Error(`cannot open ${key}`);
        }
        this.opened.push(key);
        return `pool:${key}`;
      },
      close: async (value) => {
        this.closed.push(value);
      },
    });
  }

  it('opens a key once under concurrent use and forgets a failed open', async () => {
    const r = new Resources();
    r.failNext = true;
    await expect(r.cache.acquire('a')).rejects.toThrow(/cannot open a/);
    expect(r.cache.size).toBe(0);
    const values = await Promise.all([r.cache.acquire('a'), r.cache.acquire('a'), r.cache.acquire('a')]);
    expect(values).toEqual(['pool:a', 'pool:a', 'pool:a']);
    expect(r.opened).toEqual(['a']);
  });

  it('closes the least recently used idle entry beyond max, never one in use', async () => {
    const r = new Resources();
    for (const key of ['a', 'b']) {
      await r.cache.acquire(key);
      r.cache.release(key);
    }
    await r.cache.acquire('a'); // a is now the most recent, and in use
    r.cache.release('a');
    await r.cache.acquire('c');
    r.cache.release('c');
    await Promise.resolve();
    expect(r.closed).toEqual(['pool:b']);

    // All in use: the cache grows past max, then shrinks when they are released.
    await Promise.all(['a', 'c', 'd'].map((k) => r.cache.acquire(k)));
    expect(r.cache.size).toBe(3);
    expect(r.closed).toEqual(['pool:b']);
    for (const k of ['a', 'c', 'd']) r.cache.release(k);
    expect(r.cache.size).toBe(2);
    await r.cache.close();
    expect(r.closed.sort()).toEqual(['pool:a', 'pool:b', 'pool:c', 'pool:d']);
  });
});

/** A fake tenant-routed database: targets are the value's `t`; `fail` targets cannot be prepared. */
class TargetedDriver implements SinkDriver<unknown, string> {
  readonly statements: { target: string; ids: string[] }[] = [];
  readonly acquired: string[] = [];
  readonly released: string[] = [];
  failing = new Set<string>();
  readonly targets = {
    of: (r: FlotillaRecord) => {
      const t = (r.value as { t?: string }).t;
      if (!t) throw new RowRefusedError('no tenant');
      return t;
    },
    acquire: async (target: string) => {
      this.acquired.push(target);
      if (this.failing.has(target)) throw new Error(`cannot create ${target}`);
      return `state:${target}`;
    },
    release: (target: string) => {
      this.released.push(target);
    },
  };

  encode(r: FlotillaRecord, target: string) {
    expect(target).toBe(`state:${(r.value as { t: string }).t}`);
    return { payload: r.value, bytes: 10 };
  }

  async flush(rows: Encoded<unknown>[], target: string): Promise<readonly RowFailure[]> {
    this.statements.push({ target, ids: rows.map((r) => r.record.id) });
    return NO_FAILURES;
  }

  classify(): ErrorKind {
    return 'other';
  }

  async close() {}
}

function targetedSink(driver: TargetedDriver) {
  return new DatabaseSink<unknown, string>(
    driver,
    { batch: batchSchema.parse({ max_rows: 2 }), circuit: circuitSchema.parse({}), timeout: 1 },
    { kind: 'fake', lastPerId: true },
    { topology: 'unit', group: 'unit', baseDir: '.', logger: pino({ level: 'silent' }) },
  );
}

describe('DatabaseSink with targets', () => {
  it('groups a batch per target (order kept within one), refuses records without a target', async () => {
    const driver = new TargetedDriver();
    const rejected: string[] = [];
    const input = [
      record('1', { t: 'a' }),
      record('2', { t: 'b' }),
      record('3', {}),
      record('4', { t: 'a' }),
      record('5', { t: 'a' }),
      // The same id in two targets is two rows: last-per-id is per target.
      record('2', { t: 'a' }),
    ];
    await targetedSink(driver).write(input, { reject: (r) => rejected.push(r.id) });
    expect(rejected).toEqual(['3']);
    expect(driver.statements).toEqual([
      { target: 'state:a', ids: ['1', '4'] },
      { target: 'state:a', ids: ['5', '2'] },
      { target: 'state:b', ids: ['2'] },
    ]);
    expect(driver.released).toEqual(['a', 'b']);
  });

  it('a target that cannot be prepared fails the write (retriable) and is released', async () => {
    const driver = new TargetedDriver();
    driver.failing.add('b');
    const err = await targetedSink(driver)
      .write([record('1', { t: 'a' }), record('2', { t: 'b' })], { reject: () => expect.unreachable() })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkWriteError);
    expect((err as Error).message).toMatch(/cannot create b/);
    expect(driver.acquired).toEqual(['a', 'b']);
    expect(driver.released).toEqual(['a']);
  });
});

describe('tenancy options in topologies', () => {
  const topology = (sink: string) => `name: t
source: { kind: embedded, topic: in }
sinks:
  - kind: discard
${sink}`;

  const problems = (yaml: string): string => {
    try {
      parseAndValidate(yaml, 'topo.yaml', topologySchema, {});
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
    return '';
  };

  it('names the YAML path and line of an unsupported strategy', () => {
    expect(
      problems(
        topology(`  - kind: mongodb
    url: mongodb://x/
    collection: c
    tenancy:
      strategy: schema`),
      ),
    ).toMatch(
      /^topo\.yaml:9:\d+: sinks\[1\]\.tenancy\.strategy: the mongodb sink does not support tenancy strategy 'schema' \(supported: row, database\)/,
    );
    expect(
      problems(
        topology(`  - kind: clickhouse
    url: http://x
    table: t
    tenancy: { strategy: database }`),
      ),
    ).toMatch(
      /sinks\[1\]\.tenancy\.strategy: the clickhouse sink does not support tenancy strategy 'database'/,
    );
    expect(
      problems(
        topology(`  - kind: redis
    url: redis://x
    key: k
    tenancy: { strategy: schema }`),
      ),
    ).toMatch(/sinks\[1\]\.tenancy\.strategy: the redis sink does not support/);
  });

  it('asks for create_table where tenant tables are created, and refuses a fixed namespace', () => {
    const pg = problems(
      topology(`  - kind: postgres
    url: postgres://x/db
    table: t
    schema: app
    tenancy: { strategy: schema }`),
    );
    expect(pg).toMatch(
      /sinks\[1\]\.create_table: tenancy strategy schema creates each tenant's table on first use/,
    );
    expect(pg).toMatch(/sinks\[1\]\.schema: with tenancy strategy schema/);
    expect(
      problems(
        topology(`  - kind: clickhouse
    url: http://x
    table: t
    create_table: { columns: { n: Int64 }, order_by: [id] }
    tenancy: { strategy: row }`),
      ),
    ).toMatch(/sinks\[1\]\.create_table\.order_by: must contain the tenant column 'tenant'/);
    expect(
      problems(
        topology(`  - kind: mongodb
    url: mongodb://x/
    database: fixed
    collection: c
    tenancy: { strategy: database }`),
      ),
    ).toMatch(/sinks\[1\]\.database: with tenancy strategy database/);
    expect(
      problems(
        topology(`  - kind: mongodb
    url: mongodb://x/
    collection: c`),
      ),
    ).toMatch(/sinks\[1\]\.database: missing required key/);
  });

  it('accepts every supported combination', () => {
    const ok = [
      `  - { kind: postgres, url: postgres://x/db, table: t, tenancy: { strategy: row } }`,
      `  - { kind: postgres, url: postgres://x/db, table: t, create_table: { columns: { n: int } }, tenancy: { strategy: database, prefix: org_ } }`,
      `  - { kind: clickhouse, url: http://x, table: t, create_table: { columns: { n: Int64 } }, tenancy: { strategy: schema } }`,
      `  - { kind: mongodb, url: mongodb://x/, collection: c, tenancy: { strategy: database, field: meta.org } }`,
      `  - { kind: redis, url: redis://x, key: 'k:{host}', tenancy: { strategy: row } }`,
    ];
    for (const sink of ok) expect(problems(topology(sink))).toBe('');
  });
});
