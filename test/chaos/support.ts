import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import avro from 'avsc';
import type { Admin, Consumer, Kafka, KafkaMessage, Producer } from 'kafkajs';
import pg from 'pg';
import { pino } from 'pino';
import { type ProduceResult, produceRecords, UNREGISTERED_SCHEMA_ID } from '../../src/cli/produce.js';
import { AvroCodec, type AvroSchema, readAvroSchema } from '../../src/kafka/avro.js';
import { parseBrokers } from '../../src/kafka/client.js';
import { type MetricRecord, syntheticRecords } from '../../src/sources/synthetic.js';
import {
  brokers,
  createTopic,
  spawnWorker,
  unique,
  type WorkerProcess,
  writeTopology,
} from '../support/kafka.js';
import { repoRoot, servicesScript, serviceUrl, tcpReachable } from '../support/services.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait.js';
import {
  computeOracle,
  FILTER_EXPR,
  GRACE_MS,
  type InputRecord,
  type Metric,
  type Oracle,
  resultMismatch,
  WINDOW_MS,
  type WindowResult,
} from './oracle.js';

export const PARTITIONS = 4;
/**
 * Event time of the first record (`syntheticRecords` spaces records 10 ms apart): an hour
 * boundary 2-3 hours ago. Results are stamped with their event time, and the broker deletes
 * messages older than its retention (24 h here) — a fixed date in the past would lose them.
 */
const T0 = Math.floor(Date.now() / 3600_000 - 2) * 3600_000;
const SPACING_MS = 10;
/** The sentinels' event time: far enough ahead to close every window of the run. */
const SENTINEL_TS = T0 + 30 * 24 * 3600_000;
const SENTINEL_TENANT = 'zz-end';
const silent = pino({ level: 'silent' });
const metricSchemaFile = path.join(repoRoot, 'schemas/metric.avsc');

const since = (start: number) => `${((Date.now() - start) / 1000).toFixed(1)}s`;

// ---------------------------------------------------------------------------------------------
// Shared services

export type StoppableService = 'kafka' | 'postgres';

/** `scripts/services.sh VERB SERVICE`; rejects with its output when it fails. */
export function services(verb: 'up' | 'down' | 'status', service: StoppableService): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('bash', [servicesScript, verb, service], { timeout: 180_000 }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`services.sh ${verb} ${service} failed: ${err.message}\n${stdout}${stderr}`))
        : resolve(),
    );
  });
}

/** Every service a scenario may stop is up again (after a failed or timed-out scenario too). */
export async function ensureServicesUp(): Promise<void> {
  for (const service of ['kafka', 'postgres'] as const) {
    const up = await services('status', service).then(
      () => true,
      () => false,
    );
    if (!up) {
      console.warn(`[chaos] ${service} is down after a scenario: starting it again`);
      await services('up', service);
    }
  }
}

/** When a service was cut off and restored, for the report. */
export interface Outage {
  what: string;
  /** The cut began (e.g. `services.sh down` called). */
  downAt: number;
  /** The cut is complete (e.g. `services.sh down` returned). */
  stoppedAt: number;
  /** Restored: the service answers again. */
  upAt: number;
}

/**
 * Cuts a service off for `downMs` (counted from the cut), running `whileDown` meanwhile, and
 * always restores it, even when `whileDown` throws.
 */
async function outage(
  what: string,
  cut: () => Promise<void>,
  restore: () => Promise<void>,
  downMs: number,
  whileDown: () => Promise<void>,
): Promise<Outage> {
  const downAt = Date.now();
  let stoppedAt = downAt;
  try {
    await cut();
    stoppedAt = Date.now();
    await whileDown();
    await sleep(Math.max(0, stoppedAt + downMs - Date.now()));
  } finally {
    await restore();
  }
  return { what, downAt, stoppedAt, upAt: Date.now() };
}

/**
 * Stops a shared service (`scripts/services.sh down`) for `downMs` and always starts it again.
 * Other engineers use these services: keep `downMs` short.
 */
export function withServiceDown(
  service: StoppableService,
  downMs: number,
  whileDown: () => Promise<void> = async () => {},
): Promise<Outage> {
  return outage(
    service,
    () => services('down', service),
    () => services('up', service),
    downMs,
    whileDown,
  );
}

// ---------------------------------------------------------------------------------------------
// Workers

/** A `flotilla run` child process of a scenario. */
export class ChaosWorker {
  readonly startedAt = Date.now();
  /** Stopped or killed by the scenario (not an exit of its own). */
  ended = false;

  constructor(
    readonly proc: WorkerProcess,
    readonly label: string,
    readonly env: Record<string, string>,
  ) {}

  get pid(): number {
    return this.proc.child.pid as number;
  }

  alive(): boolean {
    return this.proc.child.exitCode === null && this.proc.child.signalCode === null;
  }

  /** Partitions it holds now, from its latest 'partitions assigned' log line. */
  assigned(): Set<number> {
    const last = this.proc
      .logs()
      .split('\n')
      .filter((l) => l.includes('partitions assigned'))
      .at(-1);
    if (!last) return new Set();
    const { assignment } = JSON.parse(last) as { assignment: Record<string, number[]> };
    return new Set(Object.values(assignment).flat());
  }

  /** Log lines (JSON) whose message matches. */
  lines(message: RegExp): Record<string, unknown>[] {
    return this.proc
      .logs()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => message.test(String(l.msg)));
  }

  /** Resident set size now (kB), from /proc; undefined once the process is gone. */
  rssKb(): number | undefined {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      return m ? Number(m[1]) : undefined;
    } catch {
      return undefined;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reading topics

export interface TailMessage {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  value: Buffer;
  headers: Record<string, string>;
}

/**
 * Follows topics from their beginning in a group of its own and keeps every message, each
 * (topic, partition, offset) once. A consumer that stops making progress (a broker restart can
 * leave it crashed or stuck) is replaced by a new one, which reads from the beginning again: the
 * messages already kept are skipped.
 */
export class TopicTail {
  readonly messages: TailMessage[] = [];
  private readonly seen = new Set<string>();
  /** `topic/partition` → next offset to read. */
  private readonly positions = new Map<string, number>();
  private consumer: Consumer | undefined;

  private constructor(
    private readonly kafka: Kafka,
    private readonly admin: Admin,
    readonly topics: string[],
  ) {}

  static async follow(kafka: Kafka, admin: Admin, topics: string[]): Promise<TopicTail> {
    const tail = new TopicTail(kafka, admin, topics);
    await tail.start();
    return tail;
  }

  private async start(): Promise<void> {
    await this.consumer?.disconnect().catch(() => undefined);
    const consumer = this.kafka.consumer({ groupId: unique('chaos-tail'), maxWaitTimeInMs: 100 });
    this.consumer = consumer;
    await consumer.connect();
    await consumer.subscribe({ topics: this.topics, fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => this.keep(batch.topic, batch.partition, batch.messages),
    });
  }

  private keep(topic: string, partition: number, messages: KafkaMessage[]): void {
    for (const m of messages) {
      const id = `${topic}/${partition}/${m.offset}`;
      if (this.seen.has(id)) continue;
      this.seen.add(id);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(m.headers ?? {})) if (v !== undefined) headers[k] = String(v);
      this.messages.push({
        topic,
        partition,
        offset: Number(m.offset),
        key: m.key?.toString() ?? null,
        value: m.value ?? Buffer.alloc(0),
        headers,
      });
      const key = `${topic}/${partition}`;
      this.positions.set(key, Math.max(this.positions.get(key) ?? 0, Number(m.offset) + 1));
    }
  }

  /** Waits until everything in the topics now (their end offsets) has been read. */
  async catchUp(timeoutMs = 60_000): Promise<void> {
    const wanted: [string, number][] = [];
    for (const topic of this.topics) {
      for (const o of await this.admin.fetchTopicOffsets(topic)) {
        if (Number(o.high) > 0) wanted.push([`${topic}/${o.partition}`, Number(o.high)]);
      }
    }
    const what = `reading ${this.topics.join(', ')} to their end`;
    const done = () => wanted.every(([key, high]) => (this.positions.get(key) ?? 0) >= high);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const stuck = await waitFor(what, done, Math.min(20_000, deadline - Date.now())).then(
        () => false,
        () => true,
      );
      if (!stuck) return;
      if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms ${what}`);
      await this.start().catch(() => undefined);
    }
  }

  of(topic: string): TailMessage[] {
    return this.messages.filter((m) => m.topic === topic);
  }

  async stop(): Promise<void> {
    await this.consumer?.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------
// A scenario's run

export type InputFormat = 'json' | 'avro';

export interface RunOptions {
  scenario: string;
  format?: InputFormat;
  /** Consumer group session timeout of the workers (a SIGKILLed member is noticed after it). */
  sessionTimeoutMs?: number;
  /** Records fetched but not acknowledged, at most, per worker. */
  maxInflightRecords?: number;
  /** The workers reach PostgreSQL through a TCP proxy that `cutPostgres` can cut. */
  postgresProxy?: boolean;
  /** How often acknowledged offsets are committed. */
  commitIntervalMs?: number;
}

/** One call of the producer: a contiguous range of the seeded record sequence. */
interface Segment {
  /** Index of its first record in the run's sequence (event time T0 + index × 10 ms). */
  first: number;
  count: number;
  seed: number;
  /** Avro writer schema: v1 (schemas/metric.avsc) or v2 (v1 + an optional `unit`). */
  schema: 'json' | 'v1' | 'v2';
  injectedPoison: number;
}

/** The committed offsets and what the sinks held right after, at one moment. */
interface CoverageSnapshot {
  label: string;
  at: number;
  committed: number[];
  output: Set<string>;
  postgres: Set<string>;
  deadLetters: Set<string>;
}

/** One sample of the group's committed offsets and the input's end offsets. */
interface CommitSample {
  at: number;
  committed: number[];
  ends: number[];
}

/** A fault and the moment from which its recovery is timed. */
interface Fault {
  label: string;
  at: number;
}

export interface ScenarioReport {
  scenario: string;
  recordsIn: number;
  resultsOut: number;
  expectedResults: number;
  /** Input records missing from the results (missing windows and short counts). */
  lost: number;
  /** Input records counted twice in the results after dedupe by id. */
  duplicated: number;
  /** Extra, identical copies of results in the output topic (what dedupe by id removes). */
  reemitted: number;
  /** Result ids written with different values. */
  conflicts: number;
  /** Results counting records that carry the field added by schema evolution (`unit`). */
  unitResults: number;
  filtered: number;
  deadLetters: number;
  injectedPoison: number;
  faults: number;
  recoveryMaxS: number | undefined;
  recoveryMedianS: number | undefined;
  peakRssMb: number;
  seconds: number;
  coverageChecks: number;
  notes: string[];
  problems: string[];
}

/** v2 of the metric schema: v1 plus an optional field (a BACKWARD-compatible change). */
export function metricSchemaV2(): RecordSchema {
  const v1 = readAvroSchema(metricSchemaFile) as RecordSchema;
  return { ...v1, fields: [...v1.fields, { name: 'unit', type: ['null', 'string'], default: null }] };
}

/** An Avro record schema, as far as the suite edits one. */
export interface RecordSchema {
  type: 'record';
  name: string;
  fields: unknown[];
}

/** The unit a v2 record carries: set for latency readings only, so `with_unit` counts something. */
const unitOf = (metric: string) => (metric === 'latency_ms' ? 'ms' : null);

/**
 * A scenario's topics, table, workers and observers. It produces the seeded record set in
 * segments, runs workers as child processes, samples committed offsets and worker memory,
 * takes coverage snapshots at faults, and finally checks every sink against the oracle.
 */
export class ChaosRun {
  readonly topology: string;
  readonly input: string;
  readonly output: string;
  readonly deadLetterTopic: string;
  readonly group: string;
  readonly table: string;
  readonly file: string;
  readonly workers: ChaosWorker[] = [];
  readonly notes: string[] = [];
  readonly faults: Fault[] = [];
  readonly started = Date.now();
  private readonly segments: Segment[] = [];
  private readonly snapshots: CoverageSnapshot[] = [];
  readonly commitSamples: CommitSample[] = [];
  readonly memorySamples: { at: number; pid: number; rssKb: number }[] = [];
  private readonly regressions: string[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private next = 0;
  private seed: number;
  private producer: Producer | undefined;
  private codec: AvroCodec | undefined;
  /** Avro writer types by registry id (the oracle decodes the input with them). */
  private readonly avroTypes = new Map<number, { type: avro.Type; schema: 'v1' | 'v2' }>();
  private tail: TopicTail | undefined;
  private readonly pool: pg.Pool;
  private proxy: TcpProxy | undefined;
  /** What went wrong in the harness or around it (not in the workers), reported as problems. */
  private readonly harnessProblems: string[] = [];
  private sampling = false;

  private constructor(
    private readonly kafka: Kafka,
    private readonly admin: Admin,
    readonly options: Required<RunOptions>,
  ) {
    const id = unique(options.scenario);
    this.topology = `chaos-${options.scenario}`;
    this.input = `${id}-in`;
    this.output = `${id}-out`;
    this.deadLetterTopic = `${id}-dlq`;
    this.group = `${id}-group`;
    this.table = `chaos_${id.replace(/[^A-Za-z0-9]/g, '_')}`;
    this.seed = [...options.scenario].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);
    this.pool = new pg.Pool({ connectionString: serviceUrl('PG_URL'), max: 2 });
    this.pool.on('error', () => undefined); // an idle connection dropped by a PostgreSQL stop
    this.file = writeTopology(this.yaml());
  }

  static async open(kafka: Kafka, admin: Admin, options: RunOptions): Promise<ChaosRun> {
    const run = new ChaosRun(kafka, admin, {
      format: 'json',
      sessionTimeoutMs: 6000,
      maxInflightRecords: 4000,
      postgresProxy: false,
      commitIntervalMs: 200,
      ...options,
    });
    if (run.options.postgresProxy) {
      const { hostname, port } = new URL(serviceUrl('PG_URL'));
      run.proxy = new TcpProxy({ host: hostname, port: Number(port || 5432) });
      await run.proxy.up();
    }
    await createTopic(admin, run.input, PARTITIONS);
    await createTopic(admin, run.output, 3);
    await createTopic(admin, run.deadLetterTopic, 1);
    run.tail = await TopicTail.follow(kafka, admin, [run.output, run.deadLetterTopic]);
    run.producer = kafka.producer();
    await run.producer.connect();
    if (run.options.format === 'avro') {
      run.codec = new AvroCodec(serviceUrl('SCHEMA_REGISTRY_URL'));
      const v1 = await run.codec.register(run.subject, metricSchemaFile);
      run.avroTypes.set(v1, { type: avro.Type.forSchema(readAvroSchema(metricSchemaFile)), schema: 'v1' });
    }
    run.startSampling();
    return run;
  }

  /** The registry subject of the input's values (what `flotilla produce --format avro` registers). */
  get subject(): string {
    return `${this.input}-value`;
  }

  log(message: string): void {
    console.log(`[chaos ${this.options.scenario} +${since(this.started)}] ${message}`);
  }

  private yaml(): string {
    const { format, sessionTimeoutMs, maxInflightRecords, commitIntervalMs } = this.options;
    const decode =
      format === 'avro'
        ? '{ kind: decode, format: avro, registry: { url: "${SCHEMA_REGISTRY_URL}" } }'
        : '{ kind: decode, format: json }';
    return `name: ${this.topology}
group: ${this.group}
source:
  kind: kafka
  topics: [${this.input}]
  commit_interval_ms: ${commitIntervalMs}
  heartbeat_interval_ms: ${Math.round(sessionTimeoutMs / 10)}
  session_timeout_ms: ${sessionTimeoutMs}
  max_inflight_records: ${maxInflightRecords}
  stall_timeout_ms: 30000
steps:
  - ${decode}
  - { kind: filter, name: no-disk-io, expr: "${FILTER_EXPR}" }
  - kind: window
    type: tumbling
    size: ${WINDOW_MS}ms
    grace: ${GRACE_MS}ms
    idle_timeout: 1h
    time: { field: ts }
    group_by: [tenant, host]
    aggregates:
      total: { op: sum, field: value }
      low: { op: min, field: value }
      high: { op: max, field: value }
      mean: { op: avg, field: value }
      with_unit: { op: count, field: unit }
sinks:
  - { kind: kafka, topic: ${this.output} }
  - kind: postgres
    url: \${PG_URL}
    table: ${this.table}
    timeout: 5
    circuit: { failures: 5, cooldown: 5 }
    columns:
      tenant: value.key.tenant
      host: value.key.host
      window_start: window_start
      window_end: window_end
      count: count
      total: total
      low: low
      high: high
      mean: mean
      with_unit: with_unit
    create_table:
      columns:
        tenant: text
        host: text
        window_start: bigint
        window_end: bigint
        count: bigint
        total: double precision
        low: double precision
        high: double precision
        mean: double precision
        with_unit: bigint
dead_letter: { topic: ${this.deadLetterTopic} }
`;
  }

  // --- workers -------------------------------------------------------------------------------

  startWorker(env: Record<string, string> = {}): ChaosWorker {
    const viaProxy: Record<string, string> = {};
    if (this.proxy) {
      const url = new URL(serviceUrl('PG_URL'));
      url.port = String(this.proxy.port);
      viaProxy.PG_URL = url.toString();
    }
    const w = new ChaosWorker(
      spawnWorker(this.file, { FLOTILLA_HTTP_PORT: 'off', ...viaProxy, ...env }),
      `w${this.workers.length + 1}`,
      env,
    );
    this.workers.push(w);
    return w;
  }

  /**
   * Acts as the process supervisor a fleet runs under (systemd, Docker `restart: on-failure`, see
   * docs/fleet.md): a worker that exits on its own is started again, and the exit is noted.
   */
  supervise(): void {
    this.timers.push(
      setInterval(() => {
        for (const w of this.workers) {
          if (w.ended || w.alive()) continue;
          w.ended = true;
          const crash = w.lines(/consumer crashed/).at(-1)?.err as { message?: string } | undefined;
          const why = crash?.message ?? tailOf(w, 3);
          this.notes.push(
            `${w.label} exited with ${w.proc.child.exitCode ?? w.proc.child.signalCode} (${why}); restarted`,
          );
          this.log(`${w.label} exited on its own (${why}); starting another`);
          this.startWorker(w.env);
        }
      }, 500),
    );
  }

  live(): ChaosWorker[] {
    return this.workers.filter((w) => w.alive());
  }

  async waitAssigned(w: ChaosWorker, timeoutMs = 60_000): Promise<void> {
    await waitFor(
      `${w.label} to be assigned partitions`,
      () => w.assigned().size > 0 || !w.alive(),
      timeoutMs,
    );
    if (!w.alive()) throw new Error(`${w.label} exited before joining:\n${tailOf(w)}`);
  }

  /**
   * Cuts the workers off PostgreSQL for `downMs`: through the proxy when the run has one (the
   * shared server keeps running for everyone else), else by stopping the server. A stopped server
   * that answers again before the end — another test run's global setup starts missing services —
   * is a problem of the run: the outage was shorter than asked.
   */
  async cutPostgres(downMs: number, whileDown: () => Promise<void>): Promise<Outage> {
    const proxy = this.proxy;
    if (proxy)
      return outage(
        'postgres (proxy)',
        () => proxy.down(),
        () => proxy.up(),
        downMs,
        whileDown,
      );
    const { hostname, port } = new URL(serviceUrl('PG_URL'));
    let watch: NodeJS.Timeout | undefined;
    let backAt: number | undefined;
    const result = await withServiceDown('postgres', downMs, async () => {
      watch = setInterval(() => {
        void tcpReachable(hostname, Number(port || 5432)).then((up) => {
          if (up) backAt ??= Date.now();
        });
      }, 1000);
      await whileDown();
    }).finally(() => clearInterval(watch));
    if (backAt !== undefined && backAt < result.upAt - 2000) {
      this.harnessProblems.push(
        `PostgreSQL answered again ${((backAt - result.stoppedAt) / 1000).toFixed(1)} s into the outage: another process started it`,
      );
    }
    return result;
  }

  /** SIGKILLs a worker and notes the fault (recovery is timed from now). */
  async kill(w: ChaosWorker, label = `kill ${w.label}`): Promise<void> {
    w.ended = true;
    w.proc.child.kill('SIGKILL');
    await w.proc.exited;
    this.fault(label);
  }

  /** SIGTERM: the worker drains, commits, leaves the group; it must exit 0. */
  async stop(w: ChaosWorker): Promise<void> {
    w.ended = true;
    w.proc.child.kill('SIGTERM');
    const code = await w.proc.exited;
    if (code !== 0) throw new Error(`${w.label} exited with ${code} on SIGTERM:\n${tailOf(w)}`);
  }

  fault(label: string, at = Date.now()): void {
    this.faults.push({ label, at });
  }

  // --- producing -----------------------------------------------------------------------------

  /**
   * Produces the next `count` records of the run's seeded sequence with `flotilla produce`'s
   * producer (JSON, or Avro v1 through the registry), `poison` of them made bad on purpose.
   */
  async produce(count: number, rate: number, poison = 0): Promise<ProduceResult> {
    const segment = this.nextSegment(count, this.options.format === 'avro' ? 'v1' : 'json');
    const result = await produceRecords({
      preset: 'metrics',
      count,
      rate,
      seed: segment.seed,
      startTime: T0 + segment.first * SPACING_MS,
      format: this.options.format,
      topic: this.input,
      poison,
      batchSize: 1000,
      // One batch at a time: concurrent batches may land out of order, and records more than
      // the window grace behind would be late.
      inFlight: 1,
      target: { kind: 'kafka', brokers: parseBrokers(brokers()), partitions: PARTITIONS, compression: 'lz4' },
      registryUrl: serviceUrl('SCHEMA_REGISTRY_URL'),
      progress: { logger: silent },
      logger: silent,
    });
    if (result.records !== count) throw new Error(`produced ${result.records} of ${count} records`);
    segment.injectedPoison = result.poison;
    return result;
  }

  /** Registers the evolved schema (v2: an optional `unit`) under the input's subject; returns its id. */
  async registerV2(): Promise<number> {
    const codec = this.codec as AvroCodec;
    const schema = metricSchemaV2() as AvroSchema;
    const id = await codec.registerSchema(this.subject, schema);
    this.avroTypes.set(id, { type: avro.Type.forSchema(schema), schema: 'v2' });
    return id;
  }

  /** Produces the next `count` records written with the v2 schema, at `rate` per second. */
  async produceV2(count: number, rate: number): Promise<void> {
    const [id] = [...this.avroTypes].find(([, t]) => t.schema === 'v2') ?? [];
    if (id === undefined) throw new Error('register v2 first');
    const writer = await (this.codec as AvroCodec).writer(id);
    const segment = this.nextSegment(count, 'v2');
    const values = generate(segment);
    const perTick = Math.max(1, Math.round(rate / 20));
    for (let i = 0; i < count; i += perTick) {
      const tick = Date.now();
      const messages = values
        .slice(i, i + perTick)
        .map(({ key, value }) => ({ key, value: writer.encode(value) }));
      await (this.producer as Producer).send({ topic: this.input, messages, acks: -1 });
      await sleep(Math.max(0, tick + 50 - Date.now()));
    }
  }

  private nextSegment(count: number, schema: Segment['schema']): Segment {
    const segment: Segment = { first: this.next, count, seed: ++this.seed, schema, injectedPoison: 0 };
    this.segments.push(segment);
    this.next += count;
    return segment;
  }

  /**
   * One record per partition far ahead in event time, so that every window of the run closes
   * (their own windows, one per sentinel, stay open).
   */
  async sendSentinels(): Promise<void> {
    const messages = await Promise.all(
      Array.from({ length: PARTITIONS }, async (_, partition) => {
        const value = {
          ts: SENTINEL_TS,
          tenant: SENTINEL_TENANT,
          host: `p${partition}`,
          region: '-',
          metric: 'end',
          value: 0,
        };
        return { key: `${SENTINEL_TENANT}/p${partition}`, partition, value: await this.encode(value) };
      }),
    );
    await (this.producer as Producer).send({ topic: this.input, messages, acks: -1 });
  }

  private async encode(value: Record<string, unknown>): Promise<Buffer> {
    if (this.options.format === 'json') return Buffer.from(JSON.stringify(value));
    const [id] = [...this.avroTypes].at(-1) as [number, unknown];
    return (await (this.codec as AvroCodec).writer(id)).encode({ ...value, labels: {} });
  }

  // --- observing -----------------------------------------------------------------------------

  private startSampling(): void {
    this.timers.push(
      setInterval(() => void this.sampleCommits(), 250),
      setInterval(() => {
        const at = Date.now();
        for (const w of this.live()) {
          const rssKb = w.rssKb();
          if (rssKb !== undefined) this.memorySamples.push({ at, pid: w.pid, rssKb });
        }
      }, 500),
    );
  }

  private async sampleCommits(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const at = Date.now();
      const [committed, ends] = await Promise.all([this.committed(), this.ends()]);
      const previous = this.commitSamples.at(-1);
      committed.forEach((c, p) => {
        const before = previous?.committed[p] ?? 0;
        if (c < before)
          this.regressions.push(`partition ${p}: committed offset went back from ${before} to ${c}`);
      });
      this.commitSamples.push({ at, committed, ends });
    } catch {
      // The broker is being restarted: no sample.
    } finally {
      this.sampling = false;
    }
  }

  /** The group's committed offset per input partition (0 where none). */
  async committed(): Promise<number[]> {
    const [res] = await this.admin.fetchOffsets({ groupId: this.group, topics: [this.input] });
    const out = new Array<number>(PARTITIONS).fill(0);
    for (const p of res?.partitions ?? []) out[p.partition] = Math.max(0, Number(p.offset));
    return out;
  }

  async ends(): Promise<number[]> {
    const out = new Array<number>(PARTITIONS).fill(0);
    for (const o of await this.admin.fetchTopicOffsets(this.input)) out[o.partition] = Number(o.high);
    return out;
  }

  /** Waits until every input partition with records left at `since` has committed more. */
  async waitResumed(since: number, timeoutMs: number): Promise<void> {
    await waitFor(
      'every input partition consumed again',
      () => {
        const base = this.commitSamples.find((s) => s.at >= since);
        const last = this.commitSamples.at(-1);
        if (!base || !last || last === base) return false;
        return base.committed.every((c, p) => c >= (base.ends[p] ?? 0) || (last.committed[p] ?? 0) > c);
      },
      timeoutMs,
    );
  }

  committedTotal(): number {
    return (this.commitSamples.at(-1)?.committed ?? []).reduce((a, b) => a + b, 0);
  }

  /** Waits until the group has committed every record in the input now. */
  async waitCommitted(timeoutMs: number): Promise<void> {
    const ends = await this.ends();
    await waitFor(
      'every input record committed',
      async () => (await this.committed()).every((c, p) => c >= (ends[p] ?? 0)),
      timeoutMs,
    ).catch((err: unknown) => {
      this.log(`not drained: committed ${this.commitSamples.at(-1)?.committed} of ${ends}`);
      for (const w of this.live()) this.log(`${w.label} last logs:\n${tailOf(w)}`);
      throw err;
    });
  }

  /**
   * Reads the committed offsets, then what the sinks hold: whatever the offsets promise must
   * already be there (checked against the oracle at the end).
   */
  async snapshot(label: string): Promise<void> {
    const at = Date.now();
    const committed = await this.committed();
    const tail = this.tail as TopicTail;
    await tail.catchUp();
    const { rows } = await this.pool
      .query<{ id: string }>(`SELECT id FROM ${this.table}`)
      .catch((err: unknown) => {
        // Not created before the first window closes.
        if ((err as { code?: string }).code === '42P01') return { rows: [] };
        throw err;
      });
    this.snapshots.push({
      label,
      at,
      committed,
      output: new Set(tail.of(this.output).map((m) => m.key ?? '')),
      postgres: new Set(rows.map((r) => r.id)),
      deadLetters: new Set(tail.of(this.deadLetterTopic).map(coordinates)),
    });
  }

  /** Peak RSS (MB) of the workers over [from, to). */
  peakRssMb(from = 0, to = Number.POSITIVE_INFINITY): number {
    let peak = 0;
    for (const s of this.memorySamples) if (s.at >= from && s.at < to) peak = Math.max(peak, s.rssKb);
    return Math.round(peak / 1024);
  }

  /**
   * Seconds from each fault until every input partition that had records waiting then has its
   * committed offset move past where it was.
   */
  recoveries(): number[] {
    return this.faults.map((f) => {
      const base = this.commitSamples.find((s) => s.at >= f.at);
      if (!base) return Number.NaN;
      const waiting = base.committed.flatMap((c, p) => (c < (base.ends[p] ?? 0) ? [p] : []));
      const done = this.commitSamples.find(
        (s) => s.at >= base.at && waiting.every((p) => (s.committed[p] ?? 0) > (base.committed[p] ?? 0)),
      );
      return done ? (done.at - f.at) / 1000 : Number.NaN;
    });
  }

  // --- the checker ---------------------------------------------------------------------------

  /**
   * Reads every sink after the run drained and compares with the oracle: the input is the
   * seeded record set; every closed window is in the topic and the table with the oracle's
   * values; no id carries two values; dead letters are exactly the poison; received = emitted
   * + filtered + dead-lettered; no committed offset was ahead of the sinks at any snapshot;
   * committed offsets never went back.
   */
  async check(): Promise<ScenarioReport> {
    const problems: string[] = [];
    const tail = this.tail as TopicTail;
    await tail.catchUp();
    const inputTail = await TopicTail.follow(this.kafka, this.admin, [this.input]);
    await inputTail.catchUp(120_000);
    await inputTail.stop();

    const raw = inputTail.messages;
    const sentinels = raw.filter((m) => m.key?.startsWith(`${SENTINEL_TENANT}/`)).length;
    const input: InputRecord[] = raw.map((m) => ({
      partition: m.partition,
      offset: m.offset,
      value: this.decode(m.value),
    }));
    problems.push(...this.checkKnownSet(raw, input));
    if (sentinels !== PARTITIONS)
      problems.push(`${sentinels} sentinels in the input, expected ${PARTITIONS}`);
    const oracle = computeOracle(this.topology, input);
    if (oracle.open !== PARTITIONS)
      problems.push(`${oracle.open} records in windows left open, expected only the sentinels`);

    // The output topic: every message of an id must carry the same value.
    const fromTopic = new Map<string, WindowResult>();
    const valuesById = new Map<string, Set<string>>();
    let reemitted = 0;
    for (const m of tail.of(this.output)) {
      const id = m.key ?? '';
      const text = m.value.toString();
      const values = valuesById.get(id) ?? new Set();
      if (valuesById.has(id)) reemitted++;
      values.add(text);
      valuesById.set(id, values);
      fromTopic.set(id, JSON.parse(text) as WindowResult);
    }
    const conflicts = [...valuesById].filter(([, v]) => v.size > 1);
    for (const [id, v] of conflicts.slice(0, 5))
      problems.push(`result ${id} written with ${v.size} values: ${[...v].join(' | ')}`);
    if (conflicts.length > 5) problems.push(`… ${conflicts.length} conflicting ids in all`);

    const { rows } = await this.pool.query<WindowResult & { id: string }>(
      `SELECT id, count, total, low, high, mean, with_unit FROM ${this.table}`,
    );
    const fromTable = new Map(rows.map((r) => [r.id, r]));
    const topicCmp = compareResults('topic', fromTopic, oracle, problems);
    const tableCmp = compareResults('table', fromTable, oracle, problems);

    // Dead letters, deduplicated by the source coordinates in their headers.
    const dead = new Map<string, string>();
    for (const m of tail.of(this.deadLetterTopic))
      dead.set(coordinates(m), m.headers['flotilla.reason'] ?? '');
    diffSets('dead letter', new Set(dead.keys()), new Set(oracle.deadLetters.keys()), problems);
    const decodeDead = [...dead.values()].filter((r) => r === 'decode').length;
    const injectedPoison = this.segments.reduce((a, s) => a + s.injectedPoison, 0);
    if (decodeDead !== injectedPoison)
      problems.push(`${decodeDead} decode dead letters, ${injectedPoison} poison records injected`);

    // The counts add up, from what the system reports: committed input, results, dead letters.
    const received = (await this.committed()).reduce((a, b) => a + b, 0) - sentinels;
    const emitted = rows.reduce((a, r) => a + Number(r.count), 0);
    if (received !== emitted + oracle.filtered + dead.size) {
      problems.push(
        `received ${received} ≠ emitted ${emitted} + filtered ${oracle.filtered} + dead-lettered ${dead.size}`,
      );
    }

    problems.push(...this.checkCoverage(oracle), ...this.regressions.slice(0, 5), ...this.harnessProblems);
    const recoveries = this.recoveries();
    if (recoveries.some(Number.isNaN))
      problems.push(
        `no recovery seen after: ${this.faults
          .filter((_, i) => Number.isNaN(recoveries[i]))
          .map((f) => f.label)
          .join(', ')}`,
      );
    const sorted = recoveries.filter((r) => !Number.isNaN(r)).sort((a, b) => a - b);
    return {
      scenario: this.options.scenario,
      recordsIn: raw.length - sentinels,
      resultsOut: fromTable.size,
      expectedResults: oracle.windows.size,
      lost: Math.max(topicCmp.lost, tableCmp.lost),
      duplicated: Math.max(topicCmp.doubled, tableCmp.doubled),
      reemitted,
      conflicts: conflicts.length,
      unitResults: rows.filter((r) => Number(r.with_unit) > 0).length,
      filtered: oracle.filtered,
      deadLetters: dead.size,
      injectedPoison,
      faults: this.faults.length,
      recoveryMaxS: sorted.at(-1),
      recoveryMedianS: sorted[Math.floor(sorted.length / 2)],
      peakRssMb: this.peakRssMb(),
      seconds: Math.round((Date.now() - this.started) / 1000),
      coverageChecks: this.snapshots.length,
      notes: this.notes,
      problems,
    };
  }

  private decode(value: Buffer): Metric | undefined {
    if (this.options.format === 'json') {
      try {
        return JSON.parse(value.toString()) as Metric;
      } catch {
        return undefined;
      }
    }
    const writer = value[0] === 0 && value.length > 5 ? this.avroTypes.get(value.readInt32BE(1)) : undefined;
    return writer ? (writer.type.fromBuffer(value.subarray(5)) as Metric) : undefined;
  }

  /** The input topic holds exactly the seeded records, each once; poison where the producer put it. */
  private checkKnownSet(raw: TailMessage[], input: InputRecord[]): string[] {
    const problems: string[] = [];
    const expected = this.segments.map((s) => ({ segment: s, values: generate(s) }));
    const seen = new Map<number, number>();
    const v1 = [...this.avroTypes.values()].find((t) => t.schema === 'v1')?.type;
    raw.forEach((m, i) => {
      if (m.key?.startsWith(`${SENTINEL_TENANT}/`)) return;
      const decoded = input[i]?.value;
      let ts: number | undefined;
      let matches: (want: Record<string, unknown>) => boolean;
      if (decoded) {
        ts = decoded.ts;
        matches = (want) =>
          Object.entries(want).every(
            ([k, v]) =>
              JSON.stringify((decoded as unknown as Record<string, unknown>)[k] ?? null) ===
              JSON.stringify(v),
          );
      } else if (this.options.format === 'json') {
        // Poison: the first half of the record's JSON.
        const text = m.value.toString();
        ts = Number(/"ts":(\d+)/.exec(text)?.[1]);
        matches = (want) => {
          const json = JSON.stringify(want);
          return text === json.slice(0, json.length >> 1);
        };
      } else {
        // Poison: the record's Avro body under a schema id the registry never hands out.
        const body =
          m.value.readInt32BE(1) === UNREGISTERED_SCHEMA_ID && v1
            ? (v1.fromBuffer(m.value.subarray(5)) as Metric)
            : undefined;
        ts = body?.ts;
        matches = (want) =>
          JSON.stringify({ ...body, labels: undefined }) === JSON.stringify({ ...want, labels: undefined });
      }
      const index = ts === undefined ? Number.NaN : (ts - T0) / SPACING_MS;
      const source = expected.find(({ segment: s }) => index >= s.first && index < s.first + s.count);
      const want = source?.values[index - (source?.segment.first ?? 0)];
      if (!want || !matches(want.value)) {
        if (problems.length < 5)
          problems.push(`input ${m.partition}/${m.offset} is not record ${index} of the seeded set`);
        return;
      }
      seen.set(index, (seen.get(index) ?? 0) + 1);
    });
    const total = this.segments.reduce((a, s) => a + s.count, 0);
    const twice = [...seen.values()].filter((n) => n > 1).length;
    if (seen.size !== total || twice > 0) {
      problems.push(
        `input holds ${seen.size} of the ${total} seeded records, ${twice} of them more than once`,
      );
    }
    return problems;
  }

  /** At every snapshot, each window closed by a committed record was in both sinks, each dead letter in the DLQ. */
  private checkCoverage(oracle: Oracle): string[] {
    const problems: string[] = [];
    for (const s of this.snapshots) {
      let missing = 0;
      let example = '';
      for (const [id, w] of oracle.windows) {
        if (w.closeOffset >= (s.committed[w.partition] ?? 0)) continue;
        if (!s.output.has(id) || !s.postgres.has(id)) {
          missing++;
          example ||= `${id} (closed at ${w.partition}/${w.closeOffset}; topic ${s.output.has(id)}, table ${s.postgres.has(id)})`;
        }
      }
      for (const key of oracle.deadLetters.keys()) {
        const [p, o] = key.split('/').map(Number) as [number, number];
        if (o < (s.committed[p] ?? 0) && !s.deadLetters.has(key)) {
          missing++;
          example ||= `dead letter ${key}`;
        }
      }
      if (missing > 0) {
        problems.push(
          `at '${s.label}' offsets ${s.committed} were committed but ${missing} of their outputs were not in the sinks, e.g. ${example}`,
        );
      }
    }
    return problems;
  }

  /** Stops everything the run started; drops its topics and table unless asked to keep them. */
  async close(keep: boolean): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const w of this.workers) {
      if (w.alive()) {
        if (w.proc.child.signalCode === null) w.proc.child.kill('SIGCONT');
        w.proc.child.kill('SIGKILL');
      }
      await w.proc.exited;
    }
    await this.tail?.stop().catch(() => undefined);
    await this.proxy?.down();
    await this.producer?.disconnect().catch(() => undefined);
    const logs = path.join(repoRoot, 'out', 'chaos-logs', this.group);
    mkdirSync(logs, { recursive: true });
    for (const w of this.workers) writeFileSync(path.join(logs, `${w.label}.log`), w.proc.logs());
    if (keep) {
      this.log(`worker logs in ${logs}`);
      this.log(
        `kept for inspection: topics ${this.input}, ${this.output}, ${this.deadLetterTopic}; table ${this.table}; topology ${this.file}`,
      );
    } else {
      await this.admin
        .deleteTopics({
          topics: [this.input, this.output, this.deadLetterTopic, `${this.group}.window.changelog`],
        })
        .catch(() => undefined);
      await this.pool.query(`DROP TABLE IF EXISTS ${this.table}`).catch(() => undefined);
    }
    await this.pool.end();
  }
}

/** The seeded records of a segment, in order (the generator is stateful: always from the start). */
function generate(s: Segment): { key: string; value: Record<string, unknown> }[] {
  const make = syntheticRecords('metrics', s.seed, T0 + s.first * SPACING_MS);
  return Array.from({ length: s.count }, (_, i) => {
    const { key, value } = make(i) as { key: string; value: MetricRecord };
    return { key, value: s.schema === 'v2' ? { ...value, unit: unitOf(value.metric) } : { ...value } };
  });
}

/** `partition/offset` of the input record a dead letter came from. */
function coordinates(m: TailMessage): string {
  return `${m.headers['flotilla.source.partition']}/${m.headers['flotilla.source.offset']}`;
}

function diffSets(what: string, got: Set<string>, want: Set<string>, problems: string[]): void {
  const missing = [...want].filter((k) => !got.has(k));
  const extra = [...got].filter((k) => !want.has(k));
  if (missing.length > 0)
    problems.push(`${missing.length} ${what}s missing, e.g. ${missing.slice(0, 3).join(', ')}`);
  if (extra.length > 0)
    problems.push(`${extra.length} unexpected ${what}s, e.g. ${extra.slice(0, 3).join(', ')}`);
}

/** Compares a sink's results (deduplicated by id) with the oracle; counts lost and doubled input records. */
function compareResults(
  sink: string,
  got: Map<string, Partial<WindowResult>>,
  oracle: Oracle,
  problems: string[],
): { lost: number; doubled: number } {
  let lost = 0;
  let doubled = 0;
  const wrong: string[] = [];
  for (const [id, { result, partition }] of oracle.windows) {
    const g = got.get(id);
    const count = g ? Number(g.count) : 0;
    lost += Math.max(0, result.count - count);
    doubled += Math.max(0, count - result.count);
    const why = g ? resultMismatch(g, result) : 'missing';
    if (why) wrong.push(`${id} (partition ${partition}): ${why}`);
  }
  const extra = [...got.keys()].filter((id) => !oracle.windows.has(id));
  if (wrong.length > 0)
    problems.push(
      `${sink}: ${wrong.length} of ${oracle.windows.size} results differ from the oracle, e.g. ${wrong.slice(0, 3).join('; ')}`,
    );
  if (extra.length > 0)
    problems.push(
      `${sink}: ${extra.length} results the oracle does not have, e.g. ${extra.slice(0, 3).join(', ')}`,
    );
  return { lost, doubled };
}

/** The last log lines of a worker, for failure messages. */
export function tailOf(w: ChaosWorker, lines = 30): string {
  return w.proc.logs().split('\n').slice(-lines).join('\n');
}

// ---------------------------------------------------------------------------------------------
// The report

const fixed = (n: number | undefined, digits = 1) =>
  n === undefined || Number.isNaN(n) ? '–' : n.toFixed(digits);

/** The table printed at the end of the suite (markdown, so docs/chaos.md can take it as is). */
export function formatTable(reports: ScenarioReport[]): string {
  const head = [
    'scenario',
    'records in',
    'results out',
    'lost',
    'duplicated',
    're-emitted (deduped)',
    'dead letters / injected',
    'faults',
    'recovery max (median) s',
    'peak RSS MB',
    'time s',
    'ok',
  ];
  const rows = reports.map((r) => [
    r.scenario,
    String(r.recordsIn),
    `${r.resultsOut} / ${r.expectedResults}`,
    String(r.lost),
    String(r.duplicated),
    String(r.reemitted),
    `${r.deadLetters} / ${r.injectedPoison}`,
    String(r.faults),
    `${fixed(r.recoveryMaxS)} (${fixed(r.recoveryMedianS)})`,
    String(r.peakRssMb),
    String(r.seconds),
    r.problems.length === 0 ? 'yes' : `NO (${r.problems.length})`,
  ]);
  return [head, head.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

/** Writes the reports to out/chaos.json (and returns the path). */
export function writeReport(reports: ScenarioReport[]): string {
  const dir = path.join(repoRoot, 'out');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'chaos.json');
  writeFileSync(file, `${JSON.stringify({ at: new Date().toISOString(), reports }, null, 2)}\n`);
  return file;
}
