import { Counter, Histogram, Registry } from 'prom-client';

/** One registry per process; names and labels are fixed (see the README's metrics table). */
export const registry = new Registry();

export const metrics = {
  recordsIn: new Counter({
    name: 'flotilla_step_records_in_total',
    help: 'Records that entered a step.',
    labelNames: ['topology', 'step'] as const,
    registers: [registry],
  }),
  recordsOut: new Counter({
    name: 'flotilla_step_records_out_total',
    help: 'Records a step passed on.',
    labelNames: ['topology', 'step'] as const,
    registers: [registry],
  }),
  recordsFailed: new Counter({
    name: 'flotilla_step_records_failed_total',
    help: 'Records a step rejected.',
    labelNames: ['topology', 'step'] as const,
    registers: [registry],
  }),
  deadLettered: new Counter({
    name: 'flotilla_dead_lettered_total',
    help: 'Records written to the dead-letter topic.',
    labelNames: ['topology', 'step', 'reason'] as const,
    registers: [registry],
  }),
  sinkRecords: new Counter({
    name: 'flotilla_sink_records_total',
    help: 'Records a sink acknowledged.',
    labelNames: ['topology', 'sink'] as const,
    registers: [registry],
  }),
  sinkErrors: new Counter({
    name: 'flotilla_sink_errors_total',
    help: 'Failed sink writes (each is retried).',
    labelNames: ['topology', 'sink'] as const,
    registers: [registry],
  }),
  sinkFlushSeconds: new Histogram({
    name: 'flotilla_sink_flush_seconds',
    help: 'Time for a sink to acknowledge a batch.',
    labelNames: ['topology', 'sink'] as const,
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  }),
  batchSeconds: new Histogram({
    name: 'flotilla_batch_seconds',
    help: 'Time from a batch entering the steps to every effect acknowledged.',
    labelNames: ['topology', 'partition'] as const,
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  }),
};
