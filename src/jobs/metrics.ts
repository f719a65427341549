import { Counter, Gauge, Histogram } from 'prom-client';
import { registry } from '../observability/metrics.js';

/** Metrics of pipeline runs and of the model registry (docs/pipelines.md, docs/models.md). */
export const jobMetrics = {
  tasks: new Counter({
    name: 'flotilla_pipeline_task_attempts_total',
    help: 'Pipeline task attempts by outcome (completed, retrying, failed).',
    labelNames: ['pipeline', 'task', 'outcome'] as const,
    registers: [registry],
  }),
  taskSeconds: new Histogram({
    name: 'flotilla_pipeline_task_seconds',
    help: 'Duration of pipeline task attempts.',
    labelNames: ['pipeline', 'task'] as const,
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 1800],
    registers: [registry],
  }),
  runs: new Counter({
    name: 'flotilla_pipeline_runs_total',
    help: 'Pipeline runs finished, by outcome (completed, failed).',
    labelNames: ['pipeline', 'outcome'] as const,
    registers: [registry],
  }),
  modelLoads: new Counter({
    name: 'flotilla_model_loads_total',
    help: 'Model versions a watcher loaded (applied) or refused (failed validation or could not be read).',
    labelNames: ['model', 'outcome'] as const,
    registers: [registry],
  }),
  modelVersion: new Gauge({
    name: 'flotilla_model_version',
    help: 'Model version a watcher applied last (0: none yet).',
    labelNames: ['model'] as const,
    registers: [registry],
  }),
};
