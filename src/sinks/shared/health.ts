import { setTimeout as sleep } from 'node:timers/promises';
import { Gauge } from 'prom-client';
import type { Sink } from '../../core/component.js';
import { FlotillaError } from '../../core/errors.js';
import type { Logger } from '../../observability/logger.js';
import { registry } from '../../observability/metrics.js';
import { errorMessage } from './errors.js';

export const DEFAULT_HEALTH_INTERVAL_MS = 5000;
export const DEFAULT_HEALTH_TIMEOUT_MS = 2000;

export interface SinkHealthOptions {
  /** Between the starts of two checks of a sink (default 5000). */
  intervalMs?: number;
  /** A check not answered by then fails as a timeout (default 2000, at most the interval). */
  timeoutMs?: number;
}

const up = new Gauge({
  name: 'flotilla_sink_up',
  help: "Whether a sink's last active health check (SELECT 1, PING...) answered: 1 yes, 0 no.",
  labelNames: ['topology', 'sink'] as const,
  registers: [registry],
});

type CheckedSink = Sink & Required<Pick<Sink, 'check'>>;

/** What the prober last saw of one sink. */
interface Probe {
  sink: CheckedSink;
  labels: { topology: string; sink: string };
  logger: Logger;
  /** The last check's error message; undefined once it answers (and before the first check). */
  error: string | undefined;
}

/** Readiness of one sink, as `/ready` shows it. */
export interface SinkReadiness {
  ok: boolean;
  detail?: string;
}

/**
 * Checks every sink that has `check`, every interval, while a topology runs, one check at a time
 * per sink (the next starts an interval after the previous one did, and never before it settled),
 * so an idle sink whose database goes away, or comes back, is reported without waiting for a
 * write. Logs a sink's check failing or answering again once, when that changes; `stop()` ends
 * it (its timers never keep the process alive).
 */
export class SinkHealth {
  private readonly probes = new Map<Sink, Probe>();
  private readonly stopping = new AbortController();
  private readonly intervalMs: number;
  private readonly timeoutMs: number;

  constructor(sinks: readonly Sink[], topology: string, logger: Logger, options: SinkHealthOptions = {}) {
    this.intervalMs = options.intervalMs ?? DEFAULT_HEALTH_INTERVAL_MS;
    this.timeoutMs = Math.min(options.timeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS, this.intervalMs);
    for (const sink of sinks) {
      if (!sink.check) continue;
      this.probes.set(sink, {
        sink: sink as CheckedSink,
        labels: { topology, sink: sink.name },
        logger: logger.child({ sink: sink.name }),
        error: undefined,
      });
    }
  }

  start(): void {
    for (const probe of this.probes.values()) void this.run(probe);
  }

  /** No check starts after this; a check under way is aborted and its outcome ignored. */
  stop(): void {
    if (this.stopping.signal.aborted) return;
    this.stopping.abort();
    for (const probe of this.probes.values()) up.remove(probe.labels);
  }

  /**
   * Ready when the sink says it is healthy (a database sink: circuit closed, and its last check
   * or write answered); a sink without `healthy()` is ready while its last check answered.
   */
  readiness(sink: Sink): SinkReadiness {
    const error = this.probes.get(sink)?.error;
    if (sink.healthy ? sink.healthy() : error === undefined) return { ok: true };
    return { ok: false, detail: error ?? 'cannot write now (circuit breaker not closed)' };
  }

  private async run(probe: Probe): Promise<void> {
    const { signal } = this.stopping;
    while (!signal.aborted) {
      const interval = sleep(this.intervalMs, undefined, { ref: false, signal }).catch(() => undefined);
      const deadline = AbortSignal.any([signal, deadlineSignal(this.timeoutMs)]);
      let error: string | undefined;
      try {
        await probe.sink.check(deadline);
      } catch (err) {
        error = errorMessage(err);
      }
      if (signal.aborted) return;
      this.record(probe, error);
      await interval;
    }
  }

  private record(probe: Probe, error: string | undefined): void {
    up.set(probe.labels, error === undefined ? 1 : 0);
    const was = probe.error;
    probe.error = error;
    if (error !== undefined && was === undefined) {
      probe.logger.warn({ error }, 'sink health check failed: not ready until it answers');
    } else if (error === undefined && was !== undefined) {
      probe.logger.info('sink health check answers again');
    }
  }
}

/**
 * Aborts after `ms` with a reason that says how long (AbortSignal.timeout's does not). Its timer
 * is not cleared when the check ends sooner: aborting then has no listener left; it never holds
 * the process.
 */
function deadlineSignal(ms: number): AbortSignal {
  const controller = new AbortController();
  setTimeout(() => controller.abort(new FlotillaError(`no reply within ${ms} ms`)), ms).unref();
  return controller.signal;
}
