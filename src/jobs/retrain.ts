import path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { type ModelParameters, seriesKeyOf } from '../steps/anomaly/index.js';
import { applyTuning, defaultSpec } from '../steps/anomaly/schema.js';
import { toEpochMs } from '../steps/quality/fields.js';
import { fitSeries, type SeriesHistory } from './fit.js';
import { anomalyStepOf } from './pipeline.js';
import type { RetrainTaskConfig } from './pipeline-schema.js';
import type { TaskOutput } from './store.js';
import { readInputs, TaskConfigError, type TaskExecutor } from './task-context.js';

/** History larger than the task allows to hold in memory. */
export class HistoryTooLargeError extends TaskConfigError {}

/** Series fitted between two yields to the event loop (BullMQ renews the task's lock meanwhile). */
const SERIES_PER_SLICE = 50;

function numeric(v: unknown): number | null {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) ? n : null;
}

/** Points of one series as they are read, in growable arrays. */
class SeriesPoints {
  times: number[] = [];
  values: number[] = [];

  /** Sorted by time (stable: equal times keep their order, as the step would learn them). */
  sorted(): SeriesHistory {
    const order = this.times
      .map((_, i) => i)
      .sort((a, b) => (this.times[a] as number) - (this.times[b] as number));
    return {
      times: Float64Array.from(order, (i) => this.times[i] as number),
      values: Float64Array.from(order, (i) => this.values[i] as number),
    };
  }
}

/**
 * Fits the anomaly step of a topology on the records of the task's needs, read with the step's
 * own `series_key`, `value` and `time`, and publishes the per-series parameters as a new model
 * version. Series with fewer than `min_points` points are left out (the step's defaults score them).
 */
export const runRetrain: TaskExecutor<RetrainTaskConfig> = async (config, ctx): Promise<TaskOutput> => {
  const step = anomalyStepOf(config, path.dirname(ctx.pipeline.file));
  const base = applyTuning(defaultSpec, step);
  const series = new Map<string, SeriesPoints>();
  let points = 0;
  let unreadable = 0;
  let from = Number.POSITIVE_INFINITY;
  let to = Number.NEGATIVE_INFINITY;
  for await (const page of readInputs(ctx)) {
    for (const record of page) {
      const v = record.value as Record<string, unknown>;
      const value = typeof v === 'object' && v !== null ? numeric(step.value.read(v)) : null;
      const time = value === null ? null : step.time ? toEpochMs(step.time.read(v)) : record.timestamp;
      if (value === null || time === null) {
        unreadable++;
        continue;
      }
      const key = seriesKeyOf(step.series_key.map((p) => p.read(v)));
      let s = series.get(key);
      if (!s) {
        s = new SeriesPoints();
        series.set(key, s);
      }
      s.times.push(time);
      s.values.push(value);
      from = Math.min(from, time);
      to = Math.max(to, time);
      if (++points > config.max_points) {
        throw new HistoryTooLargeError(
          `the history has more than ${config.max_points} points (max_points): narrow the query or raise it`,
        );
      }
    }
    ctx.progress(points);
  }

  const fitted = new Map<string, ModelParameters>();
  const models: Record<string, number> = {};
  let loss = 0;
  let baselineLoss = 0;
  let compared = 0;
  let done = 0;
  for (const [key, s] of series) {
    if (s.times.length < config.min_points) continue;
    const fit = fitSeries(s.sorted(), base, step.model !== undefined);
    fitted.set(key, fit.parameters);
    models[fit.model] = (models[fit.model] ?? 0) + 1;
    if (fit.loss !== null && fit.baselineLoss !== null) {
      loss += fit.loss;
      baselineLoss += fit.baselineLoss;
      compared++;
    }
    if (++done % SERIES_PER_SLICE === 0) await yieldToEventLoop();
  }
  const metrics = {
    points,
    unreadable_points: unreadable,
    series: fitted.size,
    skipped_series: series.size - fitted.size,
    models,
    // Mean one-step-ahead loss per point (lower is better): fitted parameters vs the step's own.
    mean_loss: compared ? loss / compared : null,
    mean_baseline_loss: compared ? baselineLoss / compared : null,
  };
  const version = await ctx.registry.publish(config.model, {
    series: fitted,
    trainingFrom: points ? from : null,
    trainingTo: points ? to : null,
    metrics,
    source: {
      pipeline: ctx.pipeline.config.name,
      run: `${ctx.runId}/${ctx.task}`,
      topology: path.resolve(path.dirname(ctx.pipeline.file), config.topology),
      step: step.name ?? 'anomaly',
    },
  });
  ctx.logger.info({ model: config.model, version, ...metrics }, 'model version published');
  return { rows: points, details: { model: config.model, version, series: fitted.size } };
};
