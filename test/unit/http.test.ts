import { Counter, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlotillaError } from '../../src/core/errors.js';
import {
  DEFAULT_HTTP_PORT,
  type HttpServer,
  Readiness,
  resolveHttpPort,
  startHttpServer,
} from '../../src/observability/http.js';
import { metrics, registry } from '../../src/observability/metrics.js';

describe('HTTP endpoints', () => {
  const checks = new Readiness();
  let server: HttpServer;
  const get = (path: string, init?: RequestInit) => fetch(`${server.url}${path}`, init);

  beforeAll(async () => {
    server = await startHttpServer({ port: 0, host: '127.0.0.1', readiness: checks });
  });
  afterAll(async () => {
    await server.stop();
  });

  it('binds an ephemeral port when asked for 0', () => {
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
  });

  it('serves the process registry on /metrics in the Prometheus text format', async () => {
    metrics.consumerLag.set({ topology: 'http-test', topic: 'orders', partition: '2' }, 17);
    metrics.recordsIn.inc({ topology: 'http-test', step: 'decode' }, 5);
    const res = await get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(registry.contentType);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const body = await res.text();
    expect(body).toContain('# TYPE flotilla_consumer_lag gauge');
    expect(body).toContain('flotilla_consumer_lag{topology="http-test",topic="orders",partition="2"} 17');
    expect(body).toContain('flotilla_step_records_in_total{topology="http-test",step="decode"} 5');
    expect(body).toContain('# TYPE flotilla_commit_seconds histogram');
    expect(body).toContain('# TYPE flotilla_consumer_restarts_total counter');
    expect(body).toMatch(/^process_resident_memory_bytes \d+/m);
  });

  it('answers /health with 200 and a JSON body', async () => {
    const res = await get('/health');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as { status: string; pid: number; uptime_seconds: number };
    expect(body.status).toBe('ok');
    expect(body.pid).toBe(process.pid);
    expect(body.uptime_seconds).toBeGreaterThanOrEqual(0);
  });

  it('answers /ready with 503 naming what is not ready, then 200 once every check passes', async () => {
    let joined = false;
    let sinkHealthy = true;
    const removeJoined = checks.register('consumer joined', () => joined);
    const removeSink = checks.register('sink clickhouse', () =>
      sinkHealthy ? { ok: true } : { ok: false, detail: 'circuit open' },
    );

    let res = await get('/ready');
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({
      ready: false,
      failing: ['consumer joined'],
      checks: [
        { name: 'consumer joined', ok: false },
        { name: 'sink clickhouse', ok: true },
      ],
    });

    joined = true;
    res = await get('/ready');
    expect(res.status).toBe(200);
    expect(((await res.json()) as { ready: boolean }).ready).toBe(true);

    sinkHealthy = false;
    res = await get('/ready');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({
      failing: ['sink clickhouse'],
      checks: [
        { name: 'consumer joined', ok: true },
        { name: 'sink clickhouse', ok: false, detail: 'circuit open' },
      ],
    });

    removeSink();
    removeJoined();
    expect((await get('/ready')).status).toBe(200);
  });

  it('counts a check that throws as not ready, with the error as detail', async () => {
    const remove = checks.register('broken', () => {
      throw new Error('no connection');
    });
    const res = await get('/ready');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({
      failing: ['broken'],
      checks: [{ name: 'broken', ok: false, detail: 'check failed: no connection' }],
    });
    remove();
  });

  it('answers 404 for other paths and 405 for other methods', async () => {
    const missing = await get('/nope');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({
      error: 'no route /nope',
      routes: ['/metrics', '/health', '/ready'],
    });
    const post = await get('/metrics', { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('serves another registry when given one, and fails clearly when the port is taken', async () => {
    const own = new Registry();
    new Counter({ name: 'only_here_total', help: 'x', registers: [own] }).inc(3);
    const other = await startHttpServer({ port: 0, host: '127.0.0.1', registry: own });
    try {
      expect(await (await fetch(`${other.url}/metrics`)).text()).toContain('only_here_total 3');
      await expect(startHttpServer({ port: other.port, host: '127.0.0.1' })).rejects.toThrow(
        new RegExp(`cannot serve /metrics, /health and /ready on 127\\.0\\.0\\.1:${other.port}: EADDRINUSE`),
      );
    } finally {
      await other.stop();
    }
  });
});

describe('resolveHttpPort', () => {
  it('takes --port over FLOTILLA_HTTP_PORT over the default; off disables', () => {
    expect(resolveHttpPort(undefined, {})).toBe(DEFAULT_HTTP_PORT);
    expect(resolveHttpPort(undefined, { FLOTILLA_HTTP_PORT: '9100' })).toBe(9100);
    expect(resolveHttpPort('9200', { FLOTILLA_HTTP_PORT: '9100' })).toBe(9200);
    expect(resolveHttpPort('0', {})).toBe(0);
    expect(resolveHttpPort('off', { FLOTILLA_HTTP_PORT: '9100' })).toBeNull();
    expect(resolveHttpPort(undefined, { FLOTILLA_HTTP_PORT: 'off' })).toBeNull();
  });

  it('names the setting and the value it refuses', () => {
    expect(() => resolveHttpPort('http', {})).toThrow(
      new FlotillaError("--port: expected a port number 0-65535 or 'off', got 'http'"),
    );
    expect(() => resolveHttpPort(undefined, { FLOTILLA_HTTP_PORT: '70000' })).toThrow(
      "FLOTILLA_HTTP_PORT: expected a port number 0-65535 or 'off', got '70000'",
    );
  });
});
