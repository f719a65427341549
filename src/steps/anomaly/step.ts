import type { ComponentContext, ComponentDefinition, Step, StepContext } from '../../core/component.js';
import { RecordError } from '../../core/errors.js';
import type { FlotillaRecord } from '../../core/record.js';
import { type FieldPath, toEpochMs } from '../quality/fields.js';
import { type DetectorSpec, SeriesDetector, type SeriesState, type Verdict } from './detector.js';
import { anomalyMetrics } from './metrics.js';
import {
  type AnomalyStepConfig,
  anomalyStepSchema,
  applyTuning,
  defaultSpec,
  type Tuning,
  tuningSchema,
} from './schema.js';
import { type PartitionState, SeriesTable } from './series-table.js';
import { AnomalyStateError } from './types.js';

/** Parameters for one series, e.g. from a model registry: tuning options and optionally a trained state. */
export interface ModelParameters extends Tuning {
  /** A detector snapshot (taken with the resulting spec) to start the series from. */
  state?: SeriesState;
}

/** The fields the step adds to each record value. */
export interface AnomalyFields {
  anomaly_score: number;
  is_anomaly: boolean;
  expected: number | null;
  lower: number | null;
  upper: number | null;
}

/** The key of a series: its key fields' values, as JSON (a missing field counts as null). */
export function seriesKeyOf(values: unknown[]): string {
  return JSON.stringify(values.map((v) => v ?? null));
}

/** A finite number, or a string that is one (CSV-born values); anything else is not a value. */
function numericValue(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && v.trim() !== '') {
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);

/**
 * The `anomaly` step: per series (key fields of the record value), each record is scored in
 * order by its series' detector, then learned. State is held per partition of the input, so
 * it can be checkpointed and restored with the partition (`snapshot`/`restore`/`release`).
 */
export class AnomalyStep implements Step {
  private readonly spec: DetectorSpec;
  private readonly tables = new Map<string, SeriesTable>();
  /** Series-specific parameters set through `setModelParameters`. */
  private readonly perSeries = new Map<string, { spec: DetectorSpec; state?: SeriesState }>();
  private readonly labels: { topology: string; step: string };
  private readonly closers: (() => Promise<void>)[] = [];

  constructor(
    readonly name: string,
    private readonly config: AnomalyStepConfig,
    private readonly ctx: Pick<ComponentContext, 'topology' | 'logger'>,
  ) {
    this.spec = applyTuning(defaultSpec, config);
    this.labels = { topology: ctx.topology, step: name };
  }

  process(records: FlotillaRecord[], ctx: StepContext): FlotillaRecord[] {
    const table = this.table(ctx.topic, ctx.partition);
    const out: FlotillaRecord[] = [];
    let flagged = 0;
    let late = 0;
    for (const record of records) {
      try {
        const { value, time, key } = this.read(record);
        // read() returns finite numbers only, so the detector always gives a verdict.
        const verdict = table.get(key).observe(value, time) as Verdict;
        const fields: AnomalyFields = {
          anomaly_score: verdict.score,
          is_anomaly: verdict.score >= this.config.threshold,
          expected: verdict.expected,
          lower: verdict.lower,
          upper: verdict.upper,
        };
        if (fields.is_anomaly) flagged++;
        if (verdict.late) late++;
        // Object.assign, not a second spread: merging two spreads is several times slower in V8.
        out.push({ ...record, value: Object.assign({}, record.value, fields) });
      } catch (err) {
        if (!(err instanceof RecordError)) throw err;
        ctx.deadLetter(record, err.reason, err);
      }
    }
    anomalyMetrics.flagged.inc(this.labels, flagged);
    anomalyMetrics.late.inc(this.labels, late);
    this.reportSeries();
    return out;
  }

  private read(record: FlotillaRecord): { value: number; time: number; key: string } {
    const v = record.value;
    if (!isObject(v)) throw new RecordError('anomaly: the record value is not an object', 'anomaly');
    const { config } = this;
    const value = numericValue(config.value.read(v));
    if (value === null) {
      throw new RecordError(`anomaly: no numeric value at '${config.value.text}'`, 'anomaly');
    }
    const time = config.time ? toEpochMs(config.time.read(v)) : record.timestamp;
    if (time === null) {
      throw new RecordError(`anomaly: no timestamp at '${(config.time as FieldPath).text}'`, 'anomaly');
    }
    return { value, time, key: seriesKeyOf(config.series_key.map((p) => p.read(v))) };
  }

  /**
   * The hook for a model registry: from now on the series `seriesKey` (see `seriesKeyOf`) is
   * scored with these parameters, starting from `params.state` when given, else from scratch.
   */
  setModelParameters(seriesKey: string, params: ModelParameters): void {
    this.perSeries.set(seriesKey, this.resolve(params));
    for (const table of this.tables.values()) table.rebuild(seriesKey);
  }

  /**
   * Replaces the parameters of every series at once (a model version from the registry): all
   * are checked before any is applied, so a model that does not fit changes nothing. Series
   * it does not name go back to the step's own configuration. `process` is synchronous, so
   * this always falls between two batches.
   */
  replaceModel(model: ReadonlyMap<string, ModelParameters>): void {
    const next = new Map<string, { spec: DetectorSpec; state?: SeriesState }>();
    for (const [key, params] of model) next.set(key, this.resolve(params));
    const changed = new Set([...this.perSeries.keys(), ...next.keys()]);
    this.perSeries.clear();
    for (const [key, custom] of next) this.perSeries.set(key, custom);
    for (const table of this.tables.values()) for (const key of changed) table.rebuild(key);
  }

  private resolve(params: ModelParameters): { spec: DetectorSpec; state?: SeriesState } {
    const { state, ...tuning } = params;
    const spec = applyTuning(this.spec, tuningSchema.parse(tuning));
    // Fail here, not on the next record of the series, if the state does not fit the spec.
    if (state) new SeriesDetector(spec).restore(state);
    return { spec, ...(state ? { state } : {}) };
  }

  /** Runs `stop` when the step closes (e.g. stops the registry watcher that feeds it models). */
  onClose(stop: () => Promise<void>): void {
    this.closers.push(stop);
  }

  async close(): Promise<void> {
    await Promise.all(this.closers.map((stop) => stop()));
  }

  /** The state of one input partition, as JSON data (checkpoint it with the partition's offsets). */
  snapshot(topic: string, partition: number): PartitionState {
    return this.table(topic, partition).snapshot();
  }

  /**
   * Restores a partition's state (on assignment, before its first batch). Series whose saved
   * state does not fit the configured model (e.g. `model` or `seasonal.slots` changed since the
   * checkpoint) start cold, with a warning, rather than stopping the topology.
   */
  restore(topic: string, partition: number, state: PartitionState): void {
    if (state?.version !== 1 || !Array.isArray(state.series)) {
      throw new AnomalyStateError(
        `anomaly step '${this.name}' of topology '${this.ctx.topology}': cannot restore the state of ` +
          `${topic}/${partition}: expected { version: 1, series: [...] }`,
      );
    }
    const misfits = this.table(topic, partition).restore(state);
    if (misfits.length > 0) {
      this.ctx.logger.warn(
        {
          topology: this.ctx.topology,
          step: this.name,
          topic,
          partition,
          series: misfits.length,
          first: { key: misfits[0]?.key, reason: misfits[0]?.error.message },
        },
        'saved state of some series does not fit the configured model; they start cold',
      );
    }
    this.reportSeries();
  }

  /** Forgets a partition's state (on revocation). */
  release(topic: string, partition: number): void {
    this.tables.delete(`${topic}\u0000${partition}`);
    this.reportSeries();
  }

  private table(topic: string, partition: number): SeriesTable {
    const id = `${topic}\u0000${partition}`;
    let table = this.tables.get(id);
    if (!table) {
      table = new SeriesTable(
        this.config.max_series,
        (key, state) => this.createDetector(key, state),
        () => anomalyMetrics.evicted.inc(this.labels),
      );
      this.tables.set(id, table);
    }
    return table;
  }

  private createDetector(key: string, state?: SeriesState): SeriesDetector {
    const custom = this.perSeries.get(key);
    const detector = new SeriesDetector(custom?.spec ?? this.spec);
    const initial = state ?? custom?.state;
    return initial ? detector.restore(initial) : detector;
  }

  private reportSeries(): void {
    let series = 0;
    for (const t of this.tables.values()) series += t.size;
    anomalyMetrics.series.set(this.labels, series);
  }
}

export const anomalyStep: ComponentDefinition<typeof anomalyStepSchema, AnomalyStep> = {
  kind: 'anomaly',
  description: anomalyStepSchema.description ?? '',
  schema: anomalyStepSchema,
  create: (config, ctx: ComponentContext) => {
    const step = new AnomalyStep(config.name ?? 'anomaly', config, ctx);
    return config.registry ? watchRegistry(step, config.registry, ctx) : step;
  },
};

/** Feeds the step the registry's current model, then each new version, until it closes. */
async function watchRegistry(
  step: AnomalyStep,
  option: NonNullable<AnomalyStepConfig['registry']>,
  ctx: ComponentContext,
): Promise<AnomalyStep> {
  // Loaded only when used: the registry brings PostgreSQL and Redis clients.
  const { watchModel } = await import('../../jobs/model-registry.js');
  const watcher = await watchModel(option, (model) => step.replaceModel(model), ctx.logger);
  step.onClose(() => watcher.stop());
  return step;
}
