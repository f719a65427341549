import { Counter, Gauge } from 'prom-client';
import { registry } from '../../observability/metrics.js';

const labelNames = ['topology', 'step'] as const;

export const anomalyMetrics = {
  flagged: new Counter({
    name: 'flotilla_anomaly_flagged_total',
    help: 'Records an anomaly step flagged (score at or above its threshold).',
    labelNames,
    registers: [registry],
  }),
  late: new Counter({
    name: 'flotilla_anomaly_out_of_order_total',
    help: 'Records scored but not learned because their time was before their series’ latest.',
    labelNames,
    registers: [registry],
  }),
  evicted: new Counter({
    name: 'flotilla_anomaly_series_evicted_total',
    help: 'Series whose state an anomaly step dropped (least recently seen) to stay within max_series.',
    labelNames,
    registers: [registry],
  }),
  series: new Gauge({
    name: 'flotilla_anomaly_series',
    help: 'Series an anomaly step holds state for, over its partitions.',
    labelNames,
    registers: [registry],
  }),
};
