import path from 'node:path';
import type {
  ComponentContext,
  DeadLetterWriter,
  Sink,
  Source,
  SourceBatch,
  Step,
} from '../core/component.js';
import { FlotillaError } from '../core/errors.js';
import type { DeadLetter, FlotillaRecord } from '../core/record.js';
import type { Logger } from '../observability/logger.js';
import { metrics } from '../observability/metrics.js';
import { sinkKinds } from '../sinks/index.js';
import { sourceKinds } from '../sources/index.js';
import { stepKinds } from '../steps/index.js';
import type { LoadedTopology } from '../topology/load.js';
import { EmbeddedDeadLetters } from './dead-letter.js';
import { retryUntilStopped } from './retry.js';

type Definition = { kind: string; create(config: never, ctx: ComponentContext): unknown };

function create<T>(
  kinds: readonly Definition[],
  config: { kind: string },
  ctx: ComponentContext,
): Promise<T> {
  const def = kinds.find((k) => k.kind === config.kind);
  // Validation already restricted kinds to the registry; this guards programmatic use.
  if (!def) throw new FlotillaError(`no component of kind '${config.kind}'`);
  return Promise.resolve(def.create(config as never, ctx) as T);
}

export interface WorkerParts {
  source: Source;
  steps: Step[];
  sinks: Sink[];
  deadLetters: DeadLetterWriter;
}

/** Builds the source, steps, sinks and dead-letter writer of a validated topology. */
export async function buildParts(topology: LoadedTopology, logger: Logger): Promise<WorkerParts> {
  const { config } = topology;
  const ctx: ComponentContext = {
    topology: config.name,
    group: config.group ?? `flotilla-${config.name}`,
    baseDir: path.dirname(topology.file),
    logger,
  };
  return {
    source: await create<Source>(sourceKinds, config.source, ctx),
    steps: await Promise.all(config.steps.map((s) => create<Step>(stepKinds, s, ctx))),
    sinks: await Promise.all(config.sinks.map((s) => create<Sink>(sinkKinds, s, ctx))),
    deadLetters: new EmbeddedDeadLetters(config.dead_letter?.topic ?? `${config.name}.dlq`),
  };
}

/**
 * Runs one topology: each batch goes through the steps in order, then to every sink and the
 * dead-letter writer at once; the handler resolves — and the source commits — only when all
 * of them have acknowledged. A failing sink is retried with backoff while its partition
 * waits (backpressure), never skipped.
 */
export class Worker {
  private stopping = false;
  private readonly name: string;

  constructor(
    readonly topology: LoadedTopology,
    readonly parts: WorkerParts,
    private readonly logger: Logger,
  ) {
    this.name = topology.config.name;
  }

  async run(): Promise<void> {
    this.logger.info({ source: this.parts.source.kind }, 'topology started');
    try {
      await this.parts.source.run((batch) => this.handle(batch));
    } finally {
      await this.close();
    }
  }

  /** Stops fetching; `run` resolves once in-flight batches are acknowledged and committed. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.parts.source.stop();
  }

  private async handle(batch: SourceBatch): Promise<void> {
    const started = performance.now();
    const dead: DeadLetter[] = [];
    let records: FlotillaRecord[] = batch.records;
    for (const step of this.parts.steps) {
      const before = dead.length;
      const labels = { topology: this.name, step: step.name };
      metrics.recordsIn.inc(labels, records.length);
      records = await step.process(records, {
        deadLetter: (record, reason, error) =>
          dead.push({
            record,
            step: step.name,
            reason,
            error: error instanceof Error ? error.message : String(error),
          }),
      });
      metrics.recordsOut.inc(labels, records.length);
      if (dead.length > before) metrics.recordsFailed.inc(labels, dead.length - before);
    }
    const writes = this.parts.sinks.map((sink) => this.writeToSink(sink, records));
    if (dead.length > 0) writes.push(this.writeDeadLetters(dead));
    await Promise.all(writes);
    metrics.batchSeconds.observe(
      { topology: this.name, partition: String(batch.partition) },
      (performance.now() - started) / 1000,
    );
  }

  private async writeToSink(sink: Sink, records: FlotillaRecord[]): Promise<void> {
    if (records.length === 0) return;
    const labels = { topology: this.name, sink: sink.name };
    const end = metrics.sinkFlushSeconds.startTimer(labels);
    await retryUntilStopped(
      () => sink.write(records),
      () => this.stopping,
      (err, attempt) => {
        metrics.sinkErrors.inc(labels);
        this.logger.warn({ sink: sink.name, attempt, err }, 'sink write failed; retrying');
      },
    );
    end();
    metrics.sinkRecords.inc(labels, records.length);
  }

  private async writeDeadLetters(dead: DeadLetter[]): Promise<void> {
    await retryUntilStopped(
      () => this.parts.deadLetters.write(dead),
      () => this.stopping,
      (err, attempt) => this.logger.error({ attempt, err }, 'dead-letter write failed; partition paused'),
    );
    for (const d of dead) metrics.deadLettered.inc({ topology: this.name, step: d.step, reason: d.reason });
  }

  private async close(): Promise<void> {
    await Promise.all([
      ...this.parts.steps.map((s) => s.close?.()),
      ...this.parts.sinks.map((s) => s.close()),
      this.parts.deadLetters.close(),
    ]);
    this.logger.info('topology stopped');
  }
}
