import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sink } from '../../src/core/component.js';
import { type CheckResult, Readiness, startHttpServer } from '../../src/observability/http.js';
import { registry } from '../../src/observability/metrics.js';
import { Fleet } from '../../src/runtime/fleet.js';
import { SinkHealth } from '../../src/sinks/shared/health.js';
import { writeTopology } from '../support/kafka.js';
import { connectOrExplain, type ServiceKey, serviceUrl } from '../support/services.js';
import { addressOf, withAddress } from '../support/sink-subjects.js';
import { StreamInput } from '../support/stream-input.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait.js';

const RUN = `sinkhealth_${process.pid}`;
const FAILED = 'sink health check failed: not ready until it answers';
const ANSWERS = 'sink health check answers again';

/** A logger that keeps its lines, and how many of them say `msg` about `sink`. */
function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const count = (msg: string, sink: string) => lines.filter((l) => l.msg === msg && l.sink === sink).length;
  return { logger, count };
}

/** The value of a metric with exactly these labels among its own; undefined when it has no such series. */
async function metricValue(name: string, labels: Record<string, string>): Promise<number | undefined> {
  const values = (await registry.getSingleMetric(name)?.get())?.values ?? [];
  return values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))?.value;
}

/** Sum of a metric's series that carry these labels. */
async function metricSum(name: string, labels: Record<string, string>): Promise<number> {
  const values = (await registry.getSingleMetric(name)?.get())?.values ?? [];
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((sum, v) => sum + v.value, 0);
}

/** A sink whose check takes `delayMs` (ignoring the abort signal) and fails while `failing`. */
class FakeSink implements Sink {
  calls = 0;
  running = 0;
  maxRunning = 0;
  failing = false;

  constructor(
    readonly name: string,
    private readonly delayMs = 0,
  ) {}

  async check(): Promise<void> {
    this.calls++;
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      await sleep(this.delayMs);
      if (this.failing) throw new Error('fake service does not answer');
    } finally {
      this.running--;
    }
  }

  async write(): Promise<void> {}
  async close(): Promise<void> {}
}

describe('SinkHealth, the prober', () => {
  it('checks a sink one call at a time, even when a check outlasts the interval', async () => {
    const slow = new FakeSink('slow', 150);
    const health = new SinkHealth([slow], `${RUN}_slow`, pino({ level: 'silent' }), {
      intervalMs: 30,
      timeoutMs: 20,
    });
    health.start();
    await sleep(700);
    health.stop();
    expect(slow.maxRunning).toBe(1);
    // 700 ms of 150 ms checks back to back: about 5, not one per 30 ms interval.
    expect(slow.calls).toBeGreaterThanOrEqual(3);
    expect(slow.calls).toBeLessThanOrEqual(6);
  });

  it('reports a failing check in readiness and the gauge, logs each change once, and stops', async () => {
    const sink = new FakeSink('flaky');
    const topology = `${RUN}_flaky`;
    const labels = { topology, sink: 'flaky' };
    const { logger, count } = capturingLogger();
    const health = new SinkHealth([sink], topology, logger, { intervalMs: 30 });
    health.start();
    await waitFor('the first check', async () => (await metricValue('flotilla_sink_up', labels)) === 1);
    expect(health.readiness(sink)).toEqual({ ok: true });

    sink.failing = true;
    await waitFor('the sink reported down', () => !health.readiness(sink).ok);
    expect(health.readiness(sink)).toEqual({ ok: false, detail: 'fake service does not answer' });
    expect(await metricValue('flotilla_sink_up', labels)).toBe(0);
    const failedAt = sink.calls;
    await waitFor('five more failed checks', () => sink.calls >= failedAt + 5);
    expect(count(FAILED, 'flaky')).toBe(1);

    sink.failing = false;
    await waitFor('the sink reported up', () => health.readiness(sink).ok);
    expect(await metricValue('flotilla_sink_up', labels)).toBe(1);
    expect(count(ANSWERS, 'flaky')).toBe(1);

    health.stop();
    const calls = sink.calls;
    await sleep(150);
    expect(sink.calls).toBe(calls);
    expect(await metricValue('flotilla_sink_up', labels)).toBeUndefined();
  });
});

/** One database sink of the topology, reached through its own proxy. */
interface Subject {
  sink: string;
  service: ServiceKey;
  /** What the check's error names. */
  named: RegExp;
  config(url: string): Record<string, unknown>;
}

const SUBJECTS: Subject[] = [
  {
    sink: 'pg',
    service: 'PG_URL',
    named: /^sink 'pg': PostgreSQL does not answer \((connection|timeout)\)/,
    config: (url) => ({ kind: 'postgres', url, table: `${RUN}_never_written` }),
  },
  {
    sink: 'cache',
    service: 'REDIS_URL',
    named: /^sink 'cache': Redis does not answer \((connection|timeout)\)/,
    config: (url) => ({ kind: 'redis', url, key: `${RUN}:{id}` }),
  },
  {
    sink: 'ch',
    service: 'CLICKHOUSE_URL',
    named: /^sink 'ch': ClickHouse does not answer \((connection|timeout)\)/,
    config: (url) => ({ kind: 'clickhouse', url, table: `${RUN}_never_written` }),
  },
  {
    sink: 'docs',
    service: 'MONGO_URL',
    named: /^sink 'docs': MongoDB does not answer \((connection|timeout)\)/,
    config: (url) => ({ kind: 'mongodb', url, database: RUN, collection: 'never_written' }),
  },
];

describe('active health checks of idle database sinks, on the real services', () => {
  const INTERVAL_MS = 300;
  let redis: Redis;
  let input: StreamInput;
  const proxies = new Map(SUBJECTS.map((s) => [s.sink, new TcpProxy(addressOf(serviceUrl(s.service)))]));

  beforeAll(async () => {
    redis = await connectOrExplain('REDIS_URL', async () => {
      const r = new Redis(serviceUrl('REDIS_URL'), { lazyConnect: true });
      await r.connect();
      return r;
    });
    input = new StreamInput(redis, serviceUrl('REDIS_URL'), `${RUN}-input`);
  });

  afterAll(async () => {
    for (const proxy of proxies.values()) await proxy.down();
    await input.drop();
    await redis.quit();
  });

  it('an idle sink whose database goes away is not ready within two intervals, naming the error, and ready again once it is back, with no write in between', async () => {
    for (const proxy of proxies.values()) await proxy.up();
    const name = `${RUN}_idle`;
    const sinks = SUBJECTS.map((s) => {
      const url = withAddress(serviceUrl(s.service), (proxies.get(s.sink) as TcpProxy).address);
      return { name: s.sink, timeout: 1, ...s.config(url) };
    });
    const file = writeTopology(`name: ${name}
${input.topologyLines()}
sinks:
${sinks.map((s) => `  - ${JSON.stringify(s)}`).join('\n')}
`);
    const readiness = new Readiness();
    const { logger, count } = capturingLogger();
    const fleet = new Fleet(logger, readiness, { sinkHealth: { intervalMs: INTERVAL_MS } });
    const server = await startHttpServer({ port: 0, host: '127.0.0.1', readiness });
    const check = (sink: string): CheckResult | undefined =>
      readiness.evaluate().checks.find((c) => c.name === `${name}/sink/${sink}`);
    const up = (sink: string) => metricValue('flotilla_sink_up', { topology: name, sink });
    try {
      await fleet.start([file]);
      for (const { sink } of SUBJECTS) {
        await waitFor(`a first check of ${sink} answered`, async () => (await up(sink)) === 1);
        expect(check(sink)).toEqual({ name: `${name}/sink/${sink}`, ok: true });
      }

      const downAt = Date.now();
      for (const proxy of proxies.values()) await proxy.down();
      const notReadyAfter = new Map<string, number>();
      await waitFor(
        'every sink not ready',
        () => {
          for (const { sink } of SUBJECTS) {
            if (!notReadyAfter.has(sink) && check(sink)?.ok === false)
              notReadyAfter.set(sink, Date.now() - downAt);
          }
          return notReadyAfter.size === SUBJECTS.length;
        },
        10_000,
      );
      for (const { sink, named } of SUBJECTS) {
        // The next check starts within an interval and gives up after at most another.
        expect(notReadyAfter.get(sink), sink).toBeLessThanOrEqual(2 * INTERVAL_MS + 300);
        expect(check(sink)?.detail, sink).toMatch(named);
        expect(await up(sink), sink).toBe(0);
      }
      const body = (await (await fetch(`${server.url}/ready`)).json()) as {
        ready: boolean;
        checks: CheckResult[];
      };
      expect(body.ready).toBe(false);
      expect(body.checks.find((c) => c.name === `${name}/sink/pg`)?.detail).toMatch(
        /PostgreSQL does not answer/,
      );

      // Several more failed checks: still one log line per sink.
      await sleep(4 * INTERVAL_MS);
      for (const { sink } of SUBJECTS) expect(count(FAILED, sink), sink).toBe(1);

      for (const proxy of proxies.values()) await proxy.up();
      for (const { sink } of SUBJECTS) {
        await waitFor(`${sink} ready again`, () => check(sink)?.ok === true, 15_000);
        expect(await up(sink), sink).toBe(1);
        expect(count(ANSWERS, sink), sink).toBe(1);
      }
      expect((await fetch(`${server.url}/ready`)).status).toBe(200);

      // All of it came from the checks: nothing was written, nothing failed, no circuit opened.
      expect(await metricSum('flotilla_sink_rows_written_total', { topology: name })).toBe(0);
      expect(await metricSum('flotilla_sink_statement_errors_total', { topology: name })).toBe(0);
      expect(await metricSum('flotilla_sink_circuit_state', { topology: name })).toBe(0);
    } finally {
      await fleet.stop();
      await fleet.done();
      await server.stop();
    }
    // Stopped with the worker: the series are gone.
    for (const { sink } of SUBJECTS) expect(await up(sink), sink).toBeUndefined();
  });
});
