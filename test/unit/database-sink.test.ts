import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { FlotillaRecord } from '../../src/core/record.js';
import { registry } from '../../src/observability/metrics.js';
import { classifyClickHouseError } from '../../src/sinks/clickhouse.js';
import { classifyPostgresError } from '../../src/sinks/postgres.js';
import { compileKeyTemplate } from '../../src/sinks/redis.js';
import { CircuitBreaker, type CircuitState } from '../../src/sinks/shared/breaker.js';
import { batchSchema, circuitSchema, compileFieldExpression } from '../../src/sinks/shared/config.js';
import {
  DatabaseSink,
  type Encoded,
  lastPerId,
  type RowFailure,
  type SinkDriver,
} from '../../src/sinks/shared/database-sink.js';
import {
  CircuitOpenError,
  type ErrorKind,
  RowRefusedError,
  SinkWriteError,
} from '../../src/sinks/shared/errors.js';
import { RowMapper } from '../../src/sinks/shared/rows.js';

const record = (id: string, value: unknown = { n: 1 }): FlotillaRecord => ({
  id,
  key: null,
  value,
  timestamp: 0,
  headers: {},
  source: { topic: 't', partition: 0, offset: id },
});
const records = (n: number, bad: Set<number> = new Set()) =>
  Array.from({ length: n }, (_, i) => record(`r${i}`, bad.has(i) ? { bad: true } : { n: i }));

class DataError extends Error {
  constructor(readonly at: number) {
    super(`bad row at ${at}`);
  }
}
class DownError extends Error {}

/**
 * An in-memory table that refuses a statement holding a `{ bad: true }` value (naming the first
 * such row when `hints`), and fails every statement while `down`.
 */
class FakeDriver implements SinkDriver<unknown> {
  readonly table = new Map<string, unknown>();
  statements: number[] = [];
  down = false;
  hints = false;
  perRow = false;

  encode(r: FlotillaRecord) {
    if ((r.value as { refuse?: boolean }).refuse) throw new RowRefusedError('refused before the database');
    return { payload: r.value, bytes: JSON.stringify(r.value).length };
  }

  async flush(rows: Encoded<unknown>[]): Promise<readonly RowFailure[]> {
    this.statements.push(rows.length);
    if (this.down) throw new DownError('connection refused');
    const bad = rows.findIndex((r) => (r.payload as { bad?: boolean }).bad);
    if (bad >= 0 && !this.perRow) throw new DataError(bad);
    const failures: RowFailure[] = [];
    rows.forEach((r, index) => {
      if ((r.payload as { bad?: boolean }).bad) failures.push({ index, error: new DataError(index) });
      else this.table.set(r.record.id, r.payload);
    });
    return failures;
  }

  classify(err: unknown): ErrorKind {
    return err instanceof DataError ? 'row' : 'connection';
  }

  failedRow(err: unknown) {
    return this.hints && err instanceof DataError ? err.at : undefined;
  }

  async close() {}
}

function sinkOf(driver: FakeDriver, batch = {}, circuit = {}, lastPerIdOption = true, topology = 'unit') {
  return new DatabaseSink(
    driver,
    { batch: batchSchema.parse(batch), circuit: circuitSchema.parse(circuit), timeout: 1, name: 'fake' },
    { kind: 'fake', lastPerId: lastPerIdOption },
    { topology, group: 'unit', baseDir: '.', logger: pino({ level: 'silent' }) },
  );
}

/**
 * The values of a metric for one topology, as `name{label=value,…}` → value, without the labels
 * every sink metric has (a histogram's values are named `_bucket`, `_sum`, `_count`).
 */
async function metricValues(name: string, topology: string): Promise<Record<string, number>> {
  const values = (await registry.getSingleMetric(name)?.get())?.values ?? [];
  const out: Record<string, number> = {};
  for (const v of values) {
    if (v.labels.topology !== topology) continue;
    const extra = Object.entries(v.labels)
      .filter(([k]) => !['topology', 'sink', 'kind', 'le'].includes(k))
      .map(([k, x]) => `${k}=${x}`);
    out[`${(v as { metricName?: string }).metricName ?? name}{${extra.join(',')}}`] = v.value;
  }
  return out;
}

async function write(sink: DatabaseSink<unknown>, rs: FlotillaRecord[]) {
  const rejected: string[] = [];
  await sink.write(rs, { reject: (r) => rejected.push(r.id) });
  return rejected.sort();
}

describe('DatabaseSink', () => {
  it('cuts a batch into statements of at most max_rows rows and max_bytes bytes', async () => {
    const driver = new FakeDriver();
    await write(sinkOf(driver, { max_rows: 4 }), records(10));
    expect(driver.statements).toEqual([4, 4, 2]);

    const byBytes = new FakeDriver();
    const sink = sinkOf(byBytes, { max_rows: 1000, max_bytes: 1024 });
    // 100 bytes each: 10 fit in 1024.
    await write(
      sink,
      Array.from({ length: 25 }, (_, i) => record(`b${i}`, { s: 'x'.repeat(92) })),
    );
    expect(byBytes.statements).toEqual([10, 10, 5]);
    expect(sink.stats.largestStatementBytes).toBeLessThanOrEqual(1024);
    // A row larger than max_bytes is sent alone rather than never.
    await write(sink, [record('big', { s: 'x'.repeat(5000) })]);
    expect(byBytes.statements.at(-1)).toBe(1);
    expect(byBytes.table.size).toBe(26);
  });

  it('bisects a refused statement down to the bad rows and lands the rest', async () => {
    const driver = new FakeDriver();
    const bad = new Set([3, 41, 77]);
    expect(await write(sinkOf(driver, { max_rows: 100 }), records(100, bad))).toEqual(['r3', 'r41', 'r77']);
    expect(driver.table.size).toBe(97);
    // O(bad × log n) statements, not one per row.
    expect(driver.statements.length).toBeLessThan(40);
  });

  it('splits at the row the database names, and still confirms it alone', async () => {
    const driver = new FakeDriver();
    driver.hints = true;
    expect(await write(sinkOf(driver, { max_rows: 100 }), records(100, new Set([60])))).toEqual(['r60']);
    expect(driver.statements).toEqual([100, 60, 1, 39]);
    expect(driver.table.size).toBe(99);
  });

  it('rejects rows a driver reports per row, and rows refused while encoding', async () => {
    const driver = new FakeDriver();
    driver.perRow = true;
    const input = [...records(5, new Set([2])), record('refused', { refuse: true })];
    expect(await write(sinkOf(driver), input)).toEqual(['r2', 'refused']);
    expect(driver.statements).toEqual([5]);
    expect([...driver.table.keys()]).toEqual(['r0', 'r1', 'r3', 'r4']);
  });

  it('keeps the last record of an id in a batch when asked', async () => {
    const driver = new FakeDriver();
    await write(sinkOf(driver), [record('a', { n: 1 }), record('b', { n: 2 }), record('a', { n: 3 })]);
    expect(driver.table.get('a')).toEqual({ n: 3 });
    expect(driver.statements).toEqual([2]);
    expect(lastPerId([record('x'), record('y')]).map((r) => r.id)).toEqual(['x', 'y']);
  });

  it('throws retriable errors, opens the circuit, fails fast while open, and closes after a good probe', async () => {
    const driver = new FakeDriver();
    const sink = sinkOf(driver, {}, { failures: 2, cooldown: 0.05 });
    driver.down = true;
    for (let i = 0; i < 2; i++) {
      await expect(write(sink, records(3))).rejects.toMatchObject({ kind: 'connection' });
    }
    expect(sink.healthy()).toBe(false);
    const tried = driver.statements.length;
    await expect(write(sink, records(3))).rejects.toBeInstanceOf(CircuitOpenError);
    expect(driver.statements.length).toBe(tried);

    driver.down = false;
    await new Promise((r) => setTimeout(r, 60));
    expect(await write(sink, records(3))).toEqual([]);
    expect(sink.healthy()).toBe(true);
  });

  it('batches by time: writes arriving within batch.linger go to the database as one statement', async () => {
    const driver = new FakeDriver();
    const sink = sinkOf(driver, { linger: '40ms' });
    const first = write(sink, records(3));
    await new Promise((r) => setTimeout(r, 10));
    const second = write(sink, [record('late', { n: 9 })]);
    await Promise.all([first, second]);
    expect(driver.statements).toEqual([4]);
    // Without linger each write is its own statement.
    const eager = new FakeDriver();
    const unbatched = sinkOf(eager);
    await Promise.all([write(unbatched, records(3)), write(unbatched, [record('late')])]);
    expect(eager.statements).toEqual([3, 1]);
  });

  it('counts rows, bytes, statement latency, refused rows and errors by kind', async () => {
    const topology = 'unit-metrics';
    const driver = new FakeDriver();
    driver.perRow = true;
    const sink = sinkOf(driver, { max_rows: 4 }, { failures: 1, cooldown: 60 }, true, topology);
    // 6 rows of {"n":i} (7 bytes) in two statements, one refused by the database.
    expect(await write(sink, records(6, new Set([5])))).toEqual(['r5']);
    driver.down = true;
    await expect(write(sink, records(1))).rejects.toBeInstanceOf(SinkWriteError);
    await expect(write(sink, records(1))).rejects.toBeInstanceOf(CircuitOpenError);
    expect(await metricValues('flotilla_sink_rows_written_total', topology)).toEqual({
      'flotilla_sink_rows_written_total{}': 5,
    });
    expect(await metricValues('flotilla_sink_bytes_written_total', topology)).toEqual({
      'flotilla_sink_bytes_written_total{}': 35,
    });
    expect(await metricValues('flotilla_sink_rows_rejected_total', topology)).toEqual({
      'flotilla_sink_rows_rejected_total{}': 1,
    });
    const latency = await metricValues('flotilla_sink_statement_seconds', topology);
    expect(latency['flotilla_sink_statement_seconds_count{}']).toBe(2);
    expect(await metricValues('flotilla_sink_statement_errors_total', topology)).toEqual({
      'flotilla_sink_statement_errors_total{error=row}': 1,
      'flotilla_sink_statement_errors_total{error=connection}': 1,
      'flotilla_sink_statement_errors_total{error=circuit_open}': 1,
    });
    expect(await metricValues('flotilla_sink_circuit_state', topology)).toEqual({
      'flotilla_sink_circuit_state{}': 2,
    });
  });

  it('wraps a retriable error with the sink name and kind', async () => {
    const driver = new FakeDriver();
    driver.down = true;
    const err = await write(sinkOf(driver), records(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkWriteError);
    expect((err as Error).message).toBe("sink 'fake': connection error: connection refused");
  });
});

describe('CircuitBreaker', () => {
  it('lets one probe through when half-open; a failed probe reopens it', () => {
    let now = 0;
    const states: CircuitState[] = [];
    const breaker = new CircuitBreaker(
      's',
      { failures: 3, cooldown: 1 },
      (s) => states.push(s),
      () => now,
    );
    for (let i = 0; i < 3; i++) breaker.failed(new Error('x'), breaker.enter());
    expect(breaker.current).toBe('open');
    expect(() => breaker.enter()).toThrow(CircuitOpenError);
    now = 1000;
    expect(breaker.enter()).toBe(true);
    expect(() => breaker.enter()).toThrow(/circuit open/);
    breaker.failed(new Error('still down'), true);
    expect(breaker.current).toBe('open');
    now = 1500;
    expect(() => breaker.enter()).toThrow(CircuitOpenError);
    now = 2000;
    breaker.succeeded(breaker.enter());
    expect(states).toEqual(['open', 'half-open', 'open', 'half-open', 'closed']);
  });
});

describe('RowMapper and key templates', () => {
  it('maps declared columns from field paths and expressions', () => {
    const mapper = new RowMapper(
      {
        host: compileFieldExpression('host'),
        region: compileFieldExpression('labels.region'),
        pct: compileFieldExpression('value.cpu * 100'),
        rid: compileFieldExpression('id'),
      },
      ['id'],
    );
    const row = mapper.map(record('r1', { host: 'h', labels: { region: 'eu' }, cpu: 0.5 }));
    expect(row).toEqual({ host: 'h', region: 'eu', pct: 50, rid: 'r1' });
  });

  it('refuses a value that is not an object, or that has a field the sink writes itself', () => {
    const mapper = new RowMapper(undefined, ['id']);
    expect(() => mapper.map(record('r', 42))).toThrow(RowRefusedError);
    expect(() => mapper.map(record('r', { id: 7 }))).toThrow(/field 'id'/);
    expect(() => new RowMapper({ id: compileFieldExpression('x') }, ['id'])).toThrow(/reserved/);
  });

  it('renders key templates and refuses a missing part', () => {
    const t = compileKeyTemplate('latest:{tenant}:{lower(value.metric)}:{{tag}}');
    expect(t.render(record('r', { tenant: 'acme', metric: 'CPU' }))).toBe('latest:acme:cpu:{tag}');
    expect(() => t.render(record('r', { metric: 'cpu' }))).toThrow(/'\{tenant\}'.* is null/);
    expect(() => compileKeyTemplate('a:{b')).toThrow(/unclosed/);
  });
});

describe('error classification', () => {
  it('tells row errors from retriable ones', () => {
    const pg = (code: string) => classifyPostgresError(Object.assign(new Error('x'), { code }));
    expect(['22P02', '23505', '23502', '42804'].map(pg)).toEqual(['row', 'row', 'row', 'row']);
    expect(['08006', '57P01', '57014', '53300', '42P01'].map(pg)).toEqual([
      'connection',
      'connection',
      'timeout',
      'overloaded',
      'other',
    ]);
    expect(classifyPostgresError(Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }))).toBe(
      'connection',
    );
    const ch = (message: string) => classifyClickHouseError(new Error(message));
    expect(ch('Code: 27, e.displayText() = DB::Exception: Cannot parse input (at row 2)')).toBe('row');
    expect(ch('Code: 252, e.displayText() = DB::Exception: Too many parts')).toBe('overloaded');
    expect(ch('Code: 60, e.displayText() = DB::Exception: Table default.x does not exist')).toBe('other');
  });
});
