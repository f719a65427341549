import { FlotillaError } from '../core/errors.js';
import { type HttpServer, readiness, resolveHttpPort, startHttpServer } from '../observability/http.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { Fleet } from '../runtime/fleet.js';
import type { Command } from './main.js';

export interface RunOptions {
  /** `--port` (else FLOTILLA_HTTP_PORT, else PORT as a Procfile runner sets it, else 9464). */
  port?: string | undefined;
  /** Milliseconds a SIGTERM/SIGINT drain may take before the process gives up (exit 1). */
  shutdownTimeoutMs?: number;
}

/** Starts /metrics, /health and /ready; a default port already taken (another worker) falls back to any free one. */
export async function startEndpoints(
  options: Pick<RunOptions, 'port'>,
  logger: Logger,
): Promise<HttpServer | undefined> {
  const explicit = options.port ?? process.env.FLOTILLA_HTTP_PORT ?? process.env.PORT;
  const port = resolveHttpPort(explicit, {});
  if (port === null) return undefined;
  try {
    return await startHttpServer({ port, logger });
  } catch (err) {
    // startHttpServer wraps the listen error: its code is on the cause.
    const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    if (code !== 'EADDRINUSE' || explicit !== undefined) throw err;
    const server = await startHttpServer({ port: 0, logger });
    logger.warn({ url: server.url }, `port ${port} is taken (another worker?): serving on a free port`);
    return server;
  }
}

/**
 * Runs topologies until they end or SIGINT/SIGTERM stops them: stop fetching, drain, flush,
 * commit, leave the group, exit 0 — or exit 1 if that takes longer than the deadline.
 * SIGHUP reloads changed topology files (an invalid one keeps the running version).
 */
export async function runTopologies(files: string[], options: RunOptions = {}): Promise<number> {
  const logger = createLogger();
  const fleet = new Fleet(logger, readiness);
  const server = await startEndpoints(options, logger);
  const deadlineMs = options.shutdownTimeoutMs ?? 30_000;
  let deadline: NodeJS.Timeout | undefined;
  const stop = (signal: string) => {
    if (deadline) return;
    logger.info({ signal, deadline_ms: deadlineMs }, 'stopping: draining in-flight batches');
    deadline = setTimeout(() => {
      logger.error(
        { deadline_ms: deadlineMs },
        'drain did not finish before the deadline; exiting without it',
      );
      process.exit(1);
    }, deadlineMs);
    deadline.unref();
    void fleet.stop();
  };
  const reload = () => {
    logger.info('SIGHUP: reloading topology files');
    void fleet.reload();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', reload);
  try {
    await fleet.start(files);
    await fleet.done();
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    process.off('SIGHUP', reload);
    clearTimeout(deadline);
    await server?.stop();
  }
  return 0;
}

function parseDeadline(raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms <= 0) {
    throw new FlotillaError(`--shutdown-timeout: expected milliseconds > 0, got '${String(raw)}'`);
  }
  return ms;
}

export const run: Command = {
  summary: 'run one or more topologies until stopped',
  needsFiles: true,
  options: {
    port: { type: 'string' },
    'shutdown-timeout': { type: 'string' },
  },
  usage: `Usage: flotilla run [--port N|off] [--shutdown-timeout MS] FILE...

Runs every topology FILE in this process until it ends or is stopped.

  --port N|off            HTTP port of /metrics, /health and /ready (default: FLOTILLA_HTTP_PORT,
                          else PORT, else 9464; if 9464 is taken, a free port, logged).
  --shutdown-timeout MS   how long SIGTERM/SIGINT may take to drain, flush and commit (default 30000);
                          past it the process exits 1.

Signals: SIGTERM/SIGINT drain in-flight batches, commit, leave the group and exit 0.
SIGHUP re-reads the files; a changed file that validates replaces its running version
(drained first); an invalid one is reported and the old version keeps running.`,
  async run({ positionals, values }) {
    return runTopologies(positionals, {
      port: values.port as string | undefined,
      shutdownTimeoutMs: parseDeadline(values['shutdown-timeout']),
    });
  },
};
