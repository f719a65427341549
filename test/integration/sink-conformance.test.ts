import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FlotillaRecord } from '../../src/core/record.js';
import type { DatabaseSink } from '../../src/sinks/shared/database-sink.js';
import { CircuitOpenError, SinkWriteError } from '../../src/sinks/shared/errors.js';
import { writeTopology } from '../support/kafka.js';
import { serviceUrl } from '../support/services.js';
import {
  addressOf,
  BAD_VALUE,
  createSink,
  type KindedSubject,
  makeRecord,
  SINK_DEFINITIONS,
  SINK_SUBJECTS,
  type StoredRow,
  value,
  withAddress,
} from '../support/sink-subjects.js';
import { StreamInput, startWorker } from '../support/stream-input.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait.js';

/** Writes like the worker does and returns what the sink rejected. */
async function write(sink: DatabaseSink<unknown>, records: FlotillaRecord[]) {
  const rejected: { record: FlotillaRecord; error: unknown }[] = [];
  await sink.write(records, { reject: (record, error) => rejected.push({ record, error }) });
  return rejected;
}

function batch(prefix: string, from: number, to: number, pad = 0): FlotillaRecord[] {
  const out: FlotillaRecord[] = [];
  for (let i = from; i < to; i++) out.push(makeRecord(`${prefix}/${i}`, value(i, pad)));
  return out;
}

/** Sorted (id, n) pairs: equal lists mean the same rows, once each. */
const sorted = (rows: StoredRow[]) =>
  rows.map((r) => ({ id: r.id, n: r.n })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
const expected = (records: FlotillaRecord[]) =>
  sorted(records.map((r) => ({ id: r.id, n: (r.value as { n: number }).n })));

const prefix = `sinkconf_${process.pid}`;

let redis: Redis;
beforeAll(() => {
  redis = new Redis(serviceUrl('REDIS_URL'));
});
afterAll(() => redis.quit());

describe.each(SINK_SUBJECTS)('sink conformance: %s', (name, makeSubject) => {
  let subject: KindedSubject;
  let url: string;
  const sinks: DatabaseSink<unknown>[] = [];
  const ids = `${name.replace(/\W+/g, '-')}`;

  const open = async (overrides: Record<string, unknown> = {}, at = url) => {
    const sink = await createSink(SINK_DEFINITIONS[subject.kind], {
      ...subject.config(at),
      timeout: 2,
      ...overrides,
    });
    sinks.push(sink);
    return sink;
  };

  beforeAll(() => {
    subject = makeSubject(`${prefix}_${name.replace(/\W+/g, '_')}`);
    url = serviceUrl(subject.service);
  });
  beforeEach(() => subject.reset());
  afterEach(async () => {
    await Promise.all(sinks.splice(0).map((s) => s.close()));
  });
  afterAll(() => subject.close());

  it('is idempotent: the same batch written twice gives the same rows, once each', async () => {
    const sink = await open();
    const records = batch(ids, 0, 25);
    expect(await write(sink, records)).toEqual([]);
    expect(await write(sink, records)).toEqual([]);
    expect(sorted(await subject.readBack())).toEqual(expected(records));
  });

  it('keeps the last record of an id within a batch (upsert sinks)', async () => {
    const sink = await open();
    const first = makeRecord(`${ids}/dup`, value(1));
    const last = makeRecord(`${ids}/dup`, value(2));
    expect(await write(sink, [first, ...batch(ids, 10, 13), last])).toEqual([]);
    const rows = (await subject.readBack()).filter((r) => r.id === first.id);
    // Stream-like sinks send both records, in order; upserts keep one row with the last value.
    expect(rows.map((r) => r.n)).toEqual(subject.lastPerId ? [2] : [1, 2]);
  });

  it("dead-letters a row the database refuses for good, with the database's error, and lands the rest", async () => {
    const sink = await open({ batch: { max_rows: 100 } });
    const good = batch(ids, 0, 12);
    const bad = makeRecord(`${ids}/bad`, BAD_VALUE);
    const rejected = await write(sink, [...good.slice(0, 5), bad, ...good.slice(5)]);
    expect(rejected.map((r) => r.record.id)).toEqual([bad.id]);
    const error = rejected[0]?.error;
    expect(error).toBeInstanceOf(Error);
    expect(error instanceof Error && error.message).toMatch(subject.rejection);
    expect(sorted(await subject.readBack())).toEqual(expected(good));
    expect(sink.healthy()).toBe(true);
  });

  it('throws retriable errors while unreachable, opens the circuit, then recovers with no loss and no duplicates', async () => {
    const proxy = new TcpProxy(addressOf(url));
    await proxy.up();
    try {
      const sink = await open(
        { timeout: 1, circuit: { failures: 2, cooldown: 0.3 } },
        withAddress(url, proxy.address),
      );
      const before = batch(ids, 0, 10);
      const during = batch(ids, 10, 20);
      expect(await write(sink, before)).toEqual([]);

      await proxy.down();
      for (let attempt = 0; attempt < 2; attempt++) {
        const err = await sink.write(during, { reject: () => expect.unreachable() }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(SinkWriteError);
        expect(['connection', 'timeout']).toContain((err as SinkWriteError).kind);
      }
      expect(sink.healthy()).toBe(false);
      const started = performance.now();
      await expect(sink.write(during, { reject: () => expect.unreachable() })).rejects.toBeInstanceOf(
        CircuitOpenError,
      );
      expect(performance.now() - started).toBeLessThan(50);

      await proxy.up();
      // As the worker does: retry the batch with backoff until it lands; no row is ever rejected.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const err = await write(sink, during).then(
          (rejected) => (rejected.length > 0 ? new Error(`rejected ${rejected.length}`) : undefined),
          (e: unknown) => e,
        );
        if (!err) break;
        expect(err instanceof SinkWriteError || err instanceof CircuitOpenError).toBe(true);
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 350));
      }
      expect(sink.healthy()).toBe(true);
      expect(sorted(await subject.readBack())).toEqual(expected([...before, ...during]));
    } finally {
      await proxy.down();
    }
  });

  it('in a worker: an outage mid-run holds reading within the in-flight bound and loses nothing; after the restart every record lands once, the refused one is dead-lettered', async () => {
    const input = new StreamInput(redis, serviceUrl('REDIS_URL'), `${prefix}-in-${ids}`);
    await input.drop();
    const proxy = new TcpProxy(addressOf(url));
    await proxy.up();
    const maxInflight = 400;
    const batchCount = 100;
    const sink = {
      ...subject.config(withAddress(url, proxy.address)),
      name: 'under_test',
      timeout: 1,
      circuit: { failures: 2, cooldown: 0.3 },
    };
    const file = writeTopology(`name: ${prefix}-${ids}
${input.topologyLines({ batch_count: batchCount, max_inflight_records: maxInflight, claim_idle_ms: 600_000 })}
steps: [{ kind: decode, format: json }]
sinks: [${JSON.stringify(sink)}]
`);
    const worker = await startWorker(file);
    const records = (values: unknown[], entryIds: string[]) =>
      values.map((v, i) => makeRecord(`${input.stream}/${entryIds[i]}`, v));
    try {
      const before = Array.from({ length: 200 }, (_, i) => value(i));
      const beforeIds = await input.add([...before.slice(0, 100), BAD_VALUE, ...before.slice(100)]);
      const [badId] = beforeIds.splice(100, 1);
      await input.waitAcknowledged();

      await proxy.down();
      const during = Array.from({ length: 2000 }, (_, i) => value(200 + i));
      const duringIds = await input.add(during);
      await waitFor(
        'the worker holding a full in-flight budget',
        async () => (await input.pending()) >= maxInflight,
      );
      // Retries go on; reading does not: the rest stays in Redis, not in the worker's memory.
      await new Promise((r) => setTimeout(r, 1000));
      const pending = await input.pending();
      expect(pending).toBeLessThan(maxInflight + batchCount);
      expect(await input.unread()).toBe(during.length - pending);
      expect(worker.parts.sinks[0]?.healthy?.()).toBe(false);

      await proxy.up();
      await input.waitAcknowledged(60_000);
      expect(worker.parts.sinks[0]?.healthy?.()).toBe(true);
      const landed = [...records(before, beforeIds), ...records(during, duringIds)];
      expect(sorted(await subject.readBack())).toEqual(expected(landed));
      const letters = await input.deadLetters();
      expect(letters).toHaveLength(1);
      expect(letters[0]).toMatchObject({
        'flotilla.reason': 'sink',
        'flotilla.step': 'under_test',
        'flotilla.source.offset': badId,
      });
      expect(letters[0]?.['flotilla.error']).toMatch(subject.rejection);
    } finally {
      await proxy.up();
      await worker.stop();
      await proxy.down();
      await input.drop();
    }
  });

  it('bounds statements by max_rows and max_bytes', async () => {
    const byRows = await open({ batch: { max_rows: 7 } });
    const first = batch(ids, 0, 30);
    await write(byRows, first);
    expect(byRows.stats.statements).toBe(5);
    expect(byRows.stats.largestStatementRows).toBe(7);

    const maxBytes = 1024;
    const byBytes = await open({ batch: { max_rows: 1000, max_bytes: maxBytes } });
    const second = batch(ids, 30, 60, 150);
    await write(byBytes, second);
    const { statements, bytes, largestStatementBytes } = byBytes.stats;
    expect(largestStatementBytes).toBeLessThanOrEqual(maxBytes);
    expect(largestStatementBytes).toBeGreaterThan(maxBytes / 2);
    expect(statements).toBeGreaterThanOrEqual(Math.ceil(bytes / maxBytes));
    expect(statements).toBeLessThan(30);
    expect(sorted(await subject.readBack())).toEqual(expected([...first, ...second]));
  });
});
