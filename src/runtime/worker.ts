import path from 'node:path';
import type {
  ComponentContext,
  DeadLetterWriter,
  Sink,
  Source,
  SourceBatch,
  Step,
} from '../core/component.js';
import { ComponentConfigError, ConfigError, FlotillaError, isTransient } from '../core/errors.js';
import type { DeadLetter, FlotillaRecord } from '../core/record.js';
import type { Logger } from '../observability/logger.js';
import { metrics } from '../observability/metrics.js';
import { sinkKinds } from '../sinks/index.js';
import { sourceKinds } from '../sources/index.js';
import { stepKinds } from '../steps/index.js';
import type { LoadedTopology } from '../topology/load.js';
import { EmbeddedDeadLetters } from './dead-letter.js';
import { retryUntilStopped } from './retry.js';

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

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
  // A config that validated but cannot be used (a module that does not load...) is reported
  // like a validation problem: file, line and YAML path.
  const at = async <T>(path: (string | number)[], make: () => Promise<T>): Promise<T> => {
    try {
      return await make();
    } catch (err) {
      if (!(err instanceof ComponentConfigError)) throw err;
      const where = path
        .map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`))
        .join('')
        .slice(1);
      throw new ConfigError([
        {
          file: topology.file,
          ...topology.locate(path, err.key),
          path: `${where}.${err.key}`,
          message: err.message,
        },
      ]);
    }
  };
  const source = await at(['source'], () => create<Source>(sourceKinds, config.source, ctx));
  const deadLetterTopic = config.dead_letter?.topic ?? `${config.name}.dlq`;
  return {
    source,
    steps: await Promise.all(
      config.steps.map((s, i) => at(['steps', i], () => create<Step>(stepKinds, s, ctx))),
    ),
    sinks: await Promise.all(
      config.sinks.map((s, i) => at(['sinks', i], () => create<Sink>(sinkKinds, s, ctx))),
    ),
    deadLetters: source.deadLetterWriter?.(deadLetterTopic) ?? new EmbeddedDeadLetters(deadLetterTopic),
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
  private failure: Error | undefined;
  private readonly name: string;
  /** Per partition: the step processing of its latest batch (see `handle`). */
  private readonly stepChains = new Map<string, Promise<void>>();

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
    if (this.failure) throw this.failure;
  }

  /** Stops fetching; `run` resolves once in-flight batches are acknowledged and committed. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.parts.source.stop();
  }

  /**
   * A source may hand over a partition's next batch before the previous one is acknowledged:
   * steps still see each partition's batches one at a time and in order (stateful steps rely
   * on it), while sink writes of consecutive batches overlap.
   */
  private handle(batch: SourceBatch): Promise<void> {
    const key = `${batch.topic}\u0000${batch.partition}`;
    const started = performance.now();
    const dead: DeadLetter[] = [];
    const processed = (this.stepChains.get(key) ?? Promise.resolve()).then(() => this.runSteps(batch, dead));
    const chain = processed.then(
      () => undefined,
      () => undefined,
    );
    this.stepChains.set(key, chain);
    void chain.then(() => {
      if (this.stepChains.get(key) === chain) this.stepChains.delete(key);
    });
    processed.catch((err: unknown) => this.fail(err));
    return processed.then(async (records) => {
      await Promise.all(this.parts.sinks.map((sink) => this.writeToSink(sink, records, dead)));
      // After the sinks: a row a database refuses for good is dead-lettered like a step's reject.
      if (dead.length > 0) await this.writeDeadLetters(dead);
      metrics.batchSeconds.observe(
        { topology: this.name, partition: String(batch.partition) },
        (performance.now() - started) / 1000,
      );
    });
  }

  /**
   * A step that throws for a whole batch (rather than dead-lettering records) is a bug or an
   * outage it cannot ride out: stop the topology, commit what was acknowledged, and let `run`
   * reject, rather than skip the batch or retry a step that may have half-updated its state.
   */
  private fail(err: unknown): void {
    if (this.stopping) return;
    this.failure ??= err instanceof Error ? err : new Error(String(err));
    this.logger.error({ err }, 'a step failed for a whole batch; stopping the topology');
    void this.stop();
  }

  private async runSteps(batch: SourceBatch, dead: DeadLetter[]): Promise<FlotillaRecord[]> {
    let records: FlotillaRecord[] = batch.records;
    for (const step of this.parts.steps) {
      const before = dead.length;
      const labels = { topology: this.name, step: step.name };
      metrics.recordsIn.inc(labels, records.length);
      const input = records;
      let rejected: DeadLetter[] = [];
      records = await retryUntilStopped(
        () => {
          rejected = [];
          return Promise.resolve(
            step.process(input, {
              topic: batch.topic,
              partition: batch.partition,
              deadLetter: (record, reason, error) =>
                rejected.push({ record, step: step.name, reason, error: errorText(error) }),
            }),
          );
        },
        () => this.stopping,
        (err, attempt) => {
          if (!isTransient(err)) throw err;
          this.logger.warn(
            { step: step.name, attempt, err },
            'step waiting on an outage; retrying the batch',
          );
        },
      );
      dead.push(...rejected);
      metrics.recordsOut.inc(labels, records.length);
      if (dead.length > before) metrics.recordsFailed.inc(labels, dead.length - before);
    }
    return records;
  }

  private async writeToSink(sink: Sink, records: FlotillaRecord[], dead: DeadLetter[]): Promise<void> {
    if (records.length === 0) return;
    const labels = { topology: this.name, sink: sink.name };
    const end = metrics.sinkFlushSeconds.startTimer(labels);
    let rejected: DeadLetter[] = [];
    await retryUntilStopped(
      () => {
        // A retried batch is written whole again: only the last attempt's rejects count.
        rejected = [];
        return sink.write(records, {
          reject: (record, error) =>
            rejected.push({ record, step: sink.name, reason: 'sink', error: errorText(error) }),
        });
      },
      () => this.stopping,
      (err, attempt) => {
        metrics.sinkErrors.inc(labels);
        this.logger.warn({ sink: sink.name, attempt, err }, 'sink write failed; retrying');
      },
    );
    end();
    dead.push(...rejected);
    metrics.sinkRecords.inc(labels, records.length - rejected.length);
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
