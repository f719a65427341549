import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** One registry per process; names and labels are fixed (docs/metrics.md is the reference table). */
export const registry = new Registry();

// process_* and nodejs_* (CPU, memory, event-loop lag, GC); they keep no timer alive at exit.
collectDefaultMetrics({ register: registry });

const latencyBuckets = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

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
    buckets: latencyBuckets,
    registers: [registry],
  }),
  batchSeconds: new Histogram({
    name: 'flotilla_batch_seconds',
    help: 'Time from a batch entering the steps to every effect acknowledged.',
    labelNames: ['topology', 'partition'] as const,
    buckets: latencyBuckets,
    registers: [registry],
  }),
  consumerLag: new Gauge({
    name: 'flotilla_consumer_lag',
    help: 'Records in the partition past the acknowledged (next committed) offset: high watermark - acked.',
    labelNames: ['topology', 'topic', 'partition'] as const,
    registers: [registry],
  }),
  commitSeconds: new Histogram({
    name: 'flotilla_commit_seconds',
    help: 'Time to commit offsets to the source.',
    labelNames: ['topology'] as const,
    buckets: latencyBuckets,
    registers: [registry],
  }),
  inflightRecords: new Gauge({
    name: 'flotilla_inflight_records',
    help: 'Records fetched but not yet acknowledged by every sink (bounded by the topology limits).',
    labelNames: ['topology'] as const,
    registers: [registry],
  }),
  inflightBytes: new Gauge({
    name: 'flotilla_inflight_bytes',
    help: 'Bytes of the records counted by flotilla_inflight_records.',
    labelNames: ['topology'] as const,
    registers: [registry],
  }),
  pausedPartitions: new Gauge({
    name: 'flotilla_paused_partitions',
    help: 'Partitions paused because in-flight limits are reached or a sink or the dead-letter topic is behind.',
    labelNames: ['topology'] as const,
    registers: [registry],
  }),
  consumerRestarts: new Counter({
    name: 'flotilla_consumer_restarts_total',
    help: 'Consumer restarts; reason stall (no progress while lag grows) or crash.',
    labelNames: ['topology', 'reason'] as const,
    registers: [registry],
  }),
};
