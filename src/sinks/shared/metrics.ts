import { Counter, Gauge, Histogram } from 'prom-client';
import { registry } from '../../observability/metrics.js';
import type { CircuitState } from './breaker.js';
import type { ErrorKind } from './errors.js';

/** `kind` is the sink's kind (postgres, clickhouse, …); `error` the ErrorKind or `circuit_open`. */
const labelNames = ['topology', 'sink', 'kind'] as const;

const rows = new Counter({
  name: 'flotilla_sink_rows_written_total',
  help: 'Rows a database sink wrote (acknowledged by the database).',
  labelNames,
  registers: [registry],
});
const bytes = new Counter({
  name: 'flotilla_sink_bytes_written_total',
  help: 'Encoded bytes of the rows a database sink wrote.',
  labelNames,
  registers: [registry],
});
const rejected = new Counter({
  name: 'flotilla_sink_rows_rejected_total',
  help: 'Rows a database refused for good (dead-lettered with reason sink).',
  labelNames,
  registers: [registry],
});
const statementSeconds = new Histogram({
  name: 'flotilla_sink_statement_seconds',
  help: 'Time for the database to acknowledge one statement (a sub-batch of at most max_rows/max_bytes).',
  labelNames,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});
const errors = new Counter({
  name: 'flotilla_sink_statement_errors_total',
  help: 'Failed statements and fast-failed writes of a database sink, by error kind.',
  labelNames: [...labelNames, 'error'] as const,
  registers: [registry],
});
const circuit = new Gauge({
  name: 'flotilla_sink_circuit_state',
  help: 'Circuit breaker of a database sink: 0 closed, 1 half-open, 2 open.',
  labelNames,
  registers: [registry],
});

const CIRCUIT_VALUE: Record<CircuitState, number> = { closed: 0, 'half-open': 1, open: 2 };

/** The metrics of one sink instance, with its labels bound. */
export class SinkMetrics {
  private readonly labels: Record<(typeof labelNames)[number], string>;

  constructor(topology: string, sink: string, kind: string) {
    this.labels = { topology, sink, kind };
    circuit.set(this.labels, 0);
  }

  statement(rowCount: number, byteCount: number, seconds: number): void {
    rows.inc(this.labels, rowCount);
    bytes.inc(this.labels, byteCount);
    statementSeconds.observe(this.labels, seconds);
  }

  rejected(count = 1): void {
    rejected.inc(this.labels, count);
  }

  error(error: ErrorKind | 'circuit_open'): void {
    errors.inc({ ...this.labels, error });
  }

  circuit(state: CircuitState): void {
    circuit.set(this.labels, CIRCUIT_VALUE[state]);
  }
}
