import path from 'node:path';
import {
  type ComponentContext,
  type DeadLetterWriter,
  isStatefulStep,
  type Sink,
  type Source,
  type SourceBatch,
  type StateEntry,
  type StatefulStep,
  type StateStore,
  type Step,
} from '../core/component.js';
import {
  ComponentConfigError,
  ConfigError,
  FlotillaError,
  isTransient,
  StateFencedError,
} from '../core/errors.js';
import type { DeadLetter, FlotillaRecord } from '../core/record.js';
import type { CompiledExpression } from '../expr/index.js';
import type { Logger } from '../observability/logger.js';
import { metrics } from '../observability/metrics.js';
import { sinkKinds } from '../sinks/index.js';
import { sourceKinds } from '../sources/index.js';
import { scopeOf } from '../steps/expression-step.js';
import { stepKinds } from '../steps/index.js';
import type { LoadedTopology } from '../topology/load.js';
import { groupOf } from '../topology/schema.js';
import { CheckpointQueue } from './checkpoint-queue.js';
import { EmbeddedDeadLetters } from './dead-letter.js';
import { retryUntilStopped } from './retry.js';
import { isSnapshottingStep, SnapshotState } from './snapshot-state.js';
import { latestPerKey, MemoryStateStore } from './state-store.js';

/**
 * How long one sink's outage may hold a partition when the topology has other sinks: they must
 * not wait forever, and a quarter of an hour rides out a restart or a failover.
 */
const DEFAULT_GIVE_UP_AFTER_MS = 15 * 60_000;

/** Per sink, how long its outage may hold a partition (ms), or undefined: as long as it takes. */
export function giveUpAfterOf(
  sinks: readonly { give_up_after?: number | 'never' }[],
): (number | undefined)[] {
  return sinks.map(({ give_up_after: after }) => {
    if (after === 'never') return undefined;
    return after ?? (sinks.length > 1 ? DEFAULT_GIVE_UP_AFTER_MS : undefined);
  });
}

/** A sink retried past its `give_up_after`. */
class SinkGaveUp extends Error {
  constructor(readonly reason: unknown) {
    super('sink gave up');
  }
}

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
    group: groupOf(config),
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
  const steps = await Promise.all(
    config.steps.map((s, i) =>
      at(['steps', i], async () => {
        const step = await create<Step>(stepKinds, s, ctx);
        // Whole-snapshot state is checkpointed like window state.
        return isSnapshottingStep(step) && !isStatefulStep(step) ? new SnapshotState(step) : step;
      }),
    ),
  );
  const source = await at(['source'], () =>
    create<Source>(sourceKinds, config.source, { ...ctx, stateful: steps.some(isStatefulStep) }),
  );
  const deadLetterTopic = config.dead_letter?.topic ?? `${config.name}.dlq`;
  return {
    source,
    steps,
    sinks: await Promise.all(
      config.sinks.map((s, i) => at(['sinks', i], () => create<Sink>(sinkKinds, s, ctx))),
    ),
    deadLetters: source.deadLetterWriter?.(deadLetterTopic) ?? new EmbeddedDeadLetters(deadLetterTopic),
  };
}

/** A stateful step of the topology, where it sits and where its state is checkpointed. */
interface StateSlot {
  step: StatefulStep;
  index: number;
  store: StateStore;
}

/** Work for one partition: records entering the steps at `from`, and what to checkpoint after. */
interface Pending {
  topic: string;
  partition: number;
  records: FlotillaRecord[];
  from: number;
}

const TICK_MS = 1000;
/** What a batch of a partition revoked since it was handed over yields: nothing. */
const NOTHING_PROCESSED = () => ({
  records: [] as FlotillaRecord[],
  snapshots: new Map<StateSlot, StateEntry[]>(),
});
/**
 * Sink retries back off to at most this: a database back from an outage is written to within
 * seconds (the circuit breaker keeps the retries cheap meanwhile).
 */
const SINK_MAX_BACKOFF_MS = 5000;

/**
 * Runs one topology: each batch goes through the steps in order, then to every sink and the
 * dead-letter writer at once; the handler resolves — and the source commits — only when all
 * of them have acknowledged and the state the batch changed is checkpointed. A failing sink
 * is retried with backoff while its partition waits (backpressure), never skipped.
 */
export class Worker {
  private stopping = false;
  private failure: Error | undefined;
  private readonly name: string;
  /** Per partition: the step processing of its latest batch (see `handle`). */
  private readonly stepChains = new Map<string, Promise<void>>();
  /** Per partition: its checkpoints since it was (last) assigned, in order. */
  private readonly checkpoints = new Map<
    number,
    { generation: number; queue: CheckpointQueue<Map<StateSlot, StateEntry[]>> }
  >();
  /** Partitions whose state another worker claimed: nothing more of them is processed here. */
  private readonly lost = new Map<number, StateFencedError>();
  /** Per partition: bumped on revocation, so batches handed over before it are dropped. */
  private readonly generations = new Map<number, number>();
  /** Partitions whose state is restored (or being restored). */
  private readonly restored = new Map<number, Promise<void>>();
  private readonly stateful: StateSlot[];
  private readonly routes: ((r: FlotillaRecord) => boolean)[];
  /** Per sink: ms of retrying before a batch is dead-lettered for it (undefined: never). */
  private readonly giveUpAfter: (number | undefined)[];
  private ticker: NodeJS.Timeout | undefined;

  constructor(
    readonly topology: LoadedTopology,
    readonly parts: WorkerParts,
    private readonly logger: Logger,
  ) {
    this.name = topology.config.name;
    this.stateful = parts.steps.flatMap((step, index) =>
      isStatefulStep(step) ? [{ step, index, store: this.stateStore(step.name) }] : [],
    );
    this.routes = topology.config.sinks.map((s) => {
      const when = (s as { when?: CompiledExpression }).when;
      return when ? (r: FlotillaRecord) => when.test(scopeOf(r)) : () => true;
    });
    this.giveUpAfter = giveUpAfterOf(topology.config.sinks);
  }

  /** State belongs to the consumer group's progress: one changelog per group and step. */
  private stateStore(step: string): StateStore {
    const name = `${groupOf(this.topology.config)}.${step}.changelog`;
    return this.parts.source.stateStore?.(name) ?? new MemoryStateStore(name);
  }

  async run(): Promise<void> {
    this.logger.info({ source: this.parts.source.kind }, 'topology started');
    if (this.stateful.length > 0) {
      this.ticker = setInterval(() => this.tick(), TICK_MS);
      this.ticker.unref();
    }
    try {
      await this.parts.source.run((batch) => this.handle(batch), {
        revoked: (_topic, partitions) => this.release(partitions),
      });
    } finally {
      clearInterval(this.ticker);
      await this.close();
    }
    if (this.failure) throw this.failure;
  }

  /** Stops fetching; `run` resolves once in-flight batches are acknowledged and committed. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.parts.source.stop();
  }

  private handle(batch: SourceBatch): Promise<void> {
    return this.enqueue({ topic: batch.topic, partition: batch.partition, records: batch.records, from: 0 });
  }

  /**
   * A source may hand over a partition's next batch before the previous one is acknowledged:
   * steps still see each partition's batches one at a time and in order (stateful steps rely
   * on it), while sink writes of consecutive batches overlap. Checkpoints are written in order.
   */
  private enqueue(work: Pending): Promise<void> {
    const lost = this.lost.get(work.partition);
    // Not acknowledged: the source commits nothing more of it until it gives the partition up.
    if (lost) return Promise.reject(lost);
    const key = `${work.topic}\u0000${work.partition}`;
    const started = performance.now();
    const dead: DeadLetter[] = [];
    const generation = this.generations.get(work.partition) ?? 0;
    const processed = (this.stepChains.get(key) ?? Promise.resolve()).then(async () => {
      // Revoked since it was handed over: the new owner re-reads it; state here is gone.
      if ((this.generations.get(work.partition) ?? 0) !== generation) return NOTHING_PROCESSED();
      await this.restore(work.partition);
      const out = await this.runSteps(work, generation, dead);
      // The input is not needed any more: a batch waiting on sinks and its checkpoint must not
      // keep it alive (it would outlive the young generation and make the GC copy it).
      work.records = [];
      return out;
    });
    const chain = processed.then(
      () => undefined,
      () => undefined,
    );
    this.stepChains.set(key, chain);
    void chain.then(() => {
      if (this.stepChains.get(key) === chain) this.stepChains.delete(key);
    });
    processed.catch((err: unknown) => this.fail(err));
    const delivered = processed.then(async ({ records }) => {
      await Promise.all(
        this.parts.sinks.map((sink, i) => {
          const route = this.routes[i];
          return this.writeToSink(sink, route ? records.filter(route) : records, dead, this.giveUpAfter[i]);
        }),
      );
      // After the sinks: a row a database refuses for good is dead-lettered like a step's reject.
      if (dead.length > 0) await this.writeDeadLetters(dead);
    });
    // State last, and in the order the steps saw the batches: a crash before it replays the
    // batch against the old state, which gives the same results under the same ids.
    const done =
      this.stateful.length === 0
        ? delivered
        : this.checkpoint(
            work.partition,
            generation,
            delivered.then(() => processed).then(({ snapshots }) => snapshots),
          );
    return done.then(() => {
      metrics.batchSeconds.observe(
        { topology: this.name, partition: String(work.partition) },
        (performance.now() - started) / 1000,
      );
    });
  }

  /** Reads the partition's state back before its first batch (once per assignment). */
  private restore(partition: number): Promise<void> {
    if (this.stateful.length === 0) return Promise.resolve();
    let restoring = this.restored.get(partition);
    if (!restoring) {
      const generation = this.generations.get(partition) ?? 0;
      const assigned = () => (this.generations.get(partition) ?? 0) === generation;
      restoring = Promise.all(
        this.stateful.map(async ({ step, store }) => {
          const entries = await retryUntilStopped(
            async () => {
              // Revoked meanwhile: claiming now would fence the partition's new owner.
              if (!assigned()) return undefined;
              // Fence any earlier owner first, so that what is read is final.
              await store.claim(partition);
              return store.read(partition);
            },
            () => this.stopping,
            (err, attempt) =>
              this.logger.warn(
                { step: step.name, partition, attempt, err },
                'state restore failed; retrying',
              ),
          );
          // A read that outlived the assignment must not install state the step no longer owns.
          if (entries === undefined || !assigned()) return;
          step.restore(partition, entries);
          this.logger.info({ step: step.name, partition, entries: entries.length }, 'state restored');
        }),
      ).then(() => undefined);
      const settled = restoring;
      this.restored.set(partition, settled);
      settled.catch(() => {
        if (this.restored.get(partition) === settled) this.restored.delete(partition);
      });
    }
    return restoring;
  }

  private release(partitions: number[]): void {
    for (const p of partitions) {
      this.generations.set(p, (this.generations.get(p) ?? 0) + 1);
      this.restored.delete(p);
      this.lost.delete(p);
      this.checkpoints.delete(p);
      for (const { step } of this.stateful) step.releasePartition(p);
    }
  }

  /**
   * Writes `snapshots` once they resolve, after (or together with) every checkpoint of the
   * partition enqueued before, unless the partition was revoked since the batch was handed over.
   */
  private checkpoint(
    partition: number,
    generation: number,
    snapshots: Promise<Map<StateSlot, StateEntry[]>>,
  ): Promise<void> {
    let current = this.checkpoints.get(partition);
    if (current?.generation !== generation) {
      current = {
        generation,
        queue: new CheckpointQueue((writes) => this.writeState(partition, generation, writes)),
      };
      this.checkpoints.set(partition, current);
    }
    return current.queue.enqueue(snapshots);
  }

  private async writeState(
    partition: number,
    generation: number,
    writes: Map<StateSlot, StateEntry[]>[],
  ): Promise<void> {
    // Revoked meanwhile: the new owner has restored and writes this state now; a late write
    // from here would land after its writes and roll the changelog back.
    if ((this.generations.get(partition) ?? 0) !== generation) return;
    try {
      await Promise.all(
        this.stateful.map((slot) => {
          const entries = latestPerKey(writes.map((w) => w.get(slot) ?? []));
          return retryUntilStopped(
            () => slot.store.write(partition, entries),
            () => this.stopping,
            (err, attempt) => {
              if (!isTransient(err)) throw err;
              this.logger.error(
                { step: slot.step.name, partition, attempt, err },
                'checkpoint failed; retrying',
              );
            },
          );
        }),
      );
    } catch (err) {
      if (err instanceof StateFencedError) {
        // Evicted from the group (frozen, cut off) and not told yet: the partition belongs to
        // another worker, which restored its state; nothing of it is committed from here.
        if ((this.generations.get(partition) ?? 0) === generation) this.lost.set(partition, err);
        this.logger.warn({ partition, err }, 'partition claimed by another worker; giving it up');
      } else {
        this.fail(err, 'a checkpoint cannot be written; stopping the topology');
      }
      throw err;
    }
  }

  /**
   * Windows held open by idle partitions close on a timer. Their results flow through the
   * steps after the stateful one, per partition, and every partition's state is checkpointed.
   */
  private tick(): void {
    // Only between batches: a batch processed after the tick would checkpoint the windows the
    // tick closed before the tick's results reach the sinks.
    if (this.stopping || this.stepChains.size > 0) return;
    const now = Date.now();
    for (const slot of this.stateful) {
      const byPartition = new Map<number, FlotillaRecord[]>();
      for (const r of slot.step.tick(now)) {
        const list = byPartition.get(r.source.partition) ?? [];
        list.push(r);
        byPartition.set(r.source.partition, list);
      }
      for (const [partition, records] of byPartition) {
        const topic = records[0]?.source.topic ?? '';
        void this.enqueue({ topic, partition, records, from: slot.index + 1 }).catch(() => undefined);
      }
    }
  }

  /**
   * A step that throws for a whole batch (rather than dead-lettering records) is a bug or an
   * outage it cannot ride out: stop the topology, commit what was acknowledged, and let `run`
   * reject, rather than skip the batch or retry a step that may have half-updated its state.
   */
  private fail(err: unknown, what = 'a step failed for a whole batch; stopping the topology'): void {
    if (this.stopping) return;
    this.failure ??= err instanceof Error ? err : new Error(String(err));
    this.logger.error({ err }, what);
    void this.stop();
  }

  private async runSteps(
    work: Pending,
    generation: number,
    dead: DeadLetter[],
  ): Promise<{ records: FlotillaRecord[]; snapshots: Map<StateSlot, StateEntry[]> }> {
    let records = work.records;
    const snapshots = new Map<StateSlot, StateEntry[]>();
    // A tick's results (from > 0) changed state outside any batch: checkpoint it with them.
    for (const slot of this.stateful) {
      if (slot.index < work.from) snapshots.set(slot, slot.step.snapshot(work.partition));
    }
    for (let i = work.from; i < this.parts.steps.length; i++) {
      // Revoked while its state was read or an earlier step ran: a stateful step must not run
      // on a partition this worker no longer owns (it would emit results from partial state).
      if ((this.generations.get(work.partition) ?? 0) !== generation) return NOTHING_PROCESSED();
      const step = this.parts.steps[i] as Step;
      const slot = this.stateful.find((s) => s.index === i);
      const before = dead.length;
      const labels = { topology: this.name, step: step.name };
      metrics.recordsIn.inc(labels, records.length);
      const input = records;
      let rejected: DeadLetter[] = [];
      records = await retryUntilStopped(
        async () => {
          rejected = [];
          const out = await step.process(input, {
            topic: work.topic,
            partition: work.partition,
            deadLetter: (record, reason, error) =>
              rejected.push({ record, step: step.name, reason, error: errorText(error) }),
          });
          // At once, before any other batch of the partition can change the state.
          if (slot) snapshots.set(slot, slot.step.snapshot(work.partition));
          return out;
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
    return { records, snapshots };
  }

  private async writeToSink(
    sink: Sink,
    records: FlotillaRecord[],
    dead: DeadLetter[],
    giveUpAfterMs: number | undefined,
  ): Promise<void> {
    if (records.length === 0) return;
    const labels = { topology: this.name, sink: sink.name };
    const end = metrics.sinkFlushSeconds.startTimer(labels);
    const started = Date.now();
    let rejected: DeadLetter[] = [];
    try {
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
          if (giveUpAfterMs !== undefined && Date.now() - started >= giveUpAfterMs) throw new SinkGaveUp(err);
        },
        SINK_MAX_BACKOFF_MS,
      );
    } catch (err) {
      if (!(err instanceof SinkGaveUp)) throw err;
      // A bounded outage: the batch goes to the dead-letter topic for this sink (to be
      // replayed into it later) and the partition moves on with the other sinks.
      this.logger.error(
        { sink: sink.name, records: records.length, err: err.reason },
        'sink gave up on a batch; dead-lettering it',
      );
      for (const record of records) {
        dead.push({ record, step: sink.name, reason: 'sink_unavailable', error: errorText(err.reason) });
      }
      return;
    }
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
      ...this.stateful.map((s) => s.store.close()),
      this.parts.deadLetters.close(),
    ]);
    this.logger.info('topology stopped');
  }
}
