import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { FlotillaError } from '../core/errors.js';
import type { Logger } from './logger.js';
import { registry as defaultRegistry } from './metrics.js';

/** The port when neither `--port` nor FLOTILLA_HTTP_PORT says otherwise (Prometheus' exporter range). */
export const DEFAULT_HTTP_PORT = 9464;

/** A readiness check: true / `{ ok: true }` when ready; `detail` says why not. A throw counts as not ready. */
export type ReadinessCheck = () => boolean | { ok: boolean; detail?: string };

export interface CheckResult {
  name: string;
  ok: boolean;
  detail?: string;
}

/** What `/ready` asks: every registered check must pass. */
export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>();

  /** Adds a check (replacing one of the same name); returns a function that removes it. */
  register(name: string, check: ReadinessCheck): () => void {
    this.checks.set(name, check);
    return () => {
      if (this.checks.get(name) === check) this.checks.delete(name);
    };
  }

  /** Ready when every check passes; with no checks registered, ready. */
  evaluate(): { ready: boolean; checks: CheckResult[] } {
    const checks = [...this.checks].map(([name, check]): CheckResult => {
      try {
        const result = check();
        if (typeof result === 'boolean') return { name, ok: result };
        return result.detail === undefined
          ? { name, ok: result.ok }
          : { name, ok: result.ok, detail: result.detail };
      } catch (err) {
        return {
          name,
          ok: false,
          detail: `check failed: ${err instanceof Error ? err.message : String(err)}`,
        };
      }
    });
    return { ready: checks.every((c) => c.ok), checks };
  }
}

/** The process's readiness checks (the worker registers 'consumer joined', each sink's health...). */
export const readiness = new Readiness();

/**
 * The port from `--port` or FLOTILLA_HTTP_PORT (the flag wins), default 9464. `off` disables
 * the server (null); 0 lets the OS pick a free port (the address is logged).
 */
export function resolveHttpPort(flag?: string, env: NodeJS.ProcessEnv = process.env): number | null {
  const [source, raw] =
    flag !== undefined
      ? ['--port', flag]
      : env.FLOTILLA_HTTP_PORT
        ? ['FLOTILLA_HTTP_PORT', env.FLOTILLA_HTTP_PORT]
        : [undefined, undefined];
  if (raw === undefined) return DEFAULT_HTTP_PORT;
  if (raw === 'off') return null;
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65535) {
    throw new FlotillaError(`${source}: expected a port number 0-65535 or 'off', got '${raw}'`);
  }
  return port;
}

export interface HttpServerOptions {
  port: number;
  /** Default 0.0.0.0 (scraped from other hosts); tests use 127.0.0.1. */
  host?: string;
  registry?: Registry;
  readiness?: Readiness;
  logger?: Logger;
}

export interface HttpServer {
  /** The bound port (the OS's pick when asked for 0). */
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** Serves /metrics (Prometheus text), /health (liveness) and /ready (every readiness check passes). */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const metricsRegistry = options.registry ?? defaultRegistry;
  const checks = options.readiness ?? readiness;
  const started = Date.now();

  const routes: Record<string, (res: ServerResponse) => Promise<void> | void> = {
    '/metrics': async (res) => {
      const text = await metricsRegistry.metrics();
      res.writeHead(200, { 'content-type': metricsRegistry.contentType, 'cache-control': 'no-store' });
      res.end(text);
    },
    // Answering at all is the liveness proof: the event loop is turning.
    '/health': (res) =>
      sendJson(res, 200, { status: 'ok', pid: process.pid, uptime_seconds: (Date.now() - started) / 1000 }),
    '/ready': (res) => {
      const { ready, checks: results } = checks.evaluate();
      const failing = results.filter((c) => !c.ok).map((c) => c.name);
      sendJson(res, ready ? 200 : 503, { ready, failing, checks: results });
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const route = routes[path];
    if (!route) return sendJson(res, 404, { error: `no route ${path}`, routes: Object.keys(routes) });
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return sendJson(res, 405, { error: `method ${req.method} not allowed` });
    }
    await route(res);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      options.logger?.error({ err, url: req.url }, 'http endpoint failed');
      if (!res.headersSent) sendJson(res, 500, { error: err instanceof Error ? err.message : String(err) });
      else res.destroy();
    });
  });
  // Scrapers keep connections open; they must not hold up a shutdown.
  server.keepAliveTimeout = 5000;

  const host = options.host ?? '0.0.0.0';
  await new Promise<void>((resolve, reject) => {
    const fail = (err: NodeJS.ErrnoException) =>
      reject(
        new FlotillaError(
          `cannot serve /metrics, /health and /ready on ${host}:${options.port}: ${err.code ?? err.message}`,
          { cause: err },
        ),
      );
    server.once('error', fail);
    server.listen(options.port, host, () => {
      server.off('error', fail);
      resolve();
    });
  });
  server.on('error', (err) => options.logger?.error({ err }, 'http server error'));
  const { port } = server.address() as AddressInfo;
  const url = `http://${host === '0.0.0.0' ? 'localhost' : host}:${port}`;
  options.logger?.info({ url }, 'serving /metrics, /health and /ready');

  return {
    port,
    url,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
