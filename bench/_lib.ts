/**
 * Shared pieces of the benchmarks: medians, peak memory, the closing JSON line; and for the
 * Kafka ones, the pre-produced input topic and a topology run in this process, timed.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { type Kafka, Partitioners } from 'kafkajs';
import type { FlotillaRecord } from '../src/core/record.js';
import { createKafka, parseBrokers } from '../src/kafka/client.js';
import { createLogger, type Logger } from '../src/observability/logger.js';
import { buildParts, Worker, type WorkerParts } from '../src/runtime/worker.js';
import { loadTopology } from '../src/topology/load.js';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/**
 * Samples RSS and heap every 50 ms while `run` runs; returns its result, the peaks in MiB and
 * the milliseconds spent in garbage collection meanwhile.
 */
export async function withPeakMemory<T>(
  run: () => Promise<T>,
): Promise<{ result: T; peakRssMiB: number; peakHeapMiB: number; gcMs: number }> {
  let rss = 0;
  let heap = 0;
  let gcMs = 0;
  const gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMs += e.duration;
  });
  gc.observe({ entryTypes: ['gc'] });
  const sample = () => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    heap = Math.max(heap, m.heapUsed);
  };
  const timer = setInterval(sample, 50);
  try {
    const result = await run();
    sample();
    return { result, peakRssMiB: rss / 2 ** 20, peakHeapMiB: heap / 2 ** 20, gcMs };
  } finally {
    clearInterval(timer);
    gc.disconnect();
  }
}

/** Progress on stderr, so stdout carries only the figures. */
export const note = (text: string) => process.stderr.write(`${text}\n`);

/** The last line of every benchmark: one JSON object of figures. */
export function printFigures(figures: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}

export const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

/** What a Kafka benchmark talks to: KAFKA_BROKERS (default the local broker), quiet logs. */
export function benchKafka(bench: string): { brokers: string; kafka: Kafka; logger: Logger } {
  const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
  const logger = createLogger({ bench }).child({}, { level: 'warn' });
  const kafka = createKafka({ brokers: parseBrokers(brokers), clientId: 'flotilla-bench', logger });
  return { brokers, kafka, logger };
}

/** A topic of pre-produced benchmark input. */
export interface InputTopic {
  topic: string;
  partitions: number;
  records: number;
  /** How the records are described in progress notes, e.g. 'of 200 bytes'. */
  description: string;
  /** The i-th record; the default partitioner places it by key. */
  message(i: number): { key: string; value: string };
}

/**
 * Makes sure `input.topic` holds exactly `input.records` records (re-created and produced
 * otherwise), so every run and every mode reads the same data.
 */
export async function ensureInputTopic(kafka: Kafka, input: InputTopic): Promise<void> {
  const { topic, records: n } = input;
  const admin = kafka.admin();
  await admin.connect();
  try {
    if ((await admin.listTopics()).includes(topic)) {
      const have = (await admin.fetchTopicOffsets(topic)).reduce((s, p) => s + Number(p.high), 0);
      if (have === n) {
        note(`input: ${topic} already holds ${n} records`);
        return;
      }
      await admin.deleteTopics({ topics: [topic] });
      await new Promise((r) => setTimeout(r, 2000));
    }
    await admin.createTopics({ topics: [{ topic, numPartitions: input.partitions }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
  note(`input: producing ${n} records ${input.description} to ${topic}`);
  // The Java client's partitioner (KafkaJS's default, named so it does not warn).
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const batch = 10_000;
  for (let i = 0; i < n; i += batch) {
    const messages = Array.from({ length: Math.min(batch, n - i) }, (_, j) => input.message(i + j));
    await producer.send({ topic, messages, acks: -1 });
  }
  await producer.disconnect();
}

/** Deletes topics a benchmark created (outputs, changelogs); those that do not exist are skipped. */
export async function deleteTopics(kafka: Kafka, topics: string[]): Promise<void> {
  if (topics.length === 0) return;
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const doomed = topics.filter((t) => existing.has(t));
    if (doomed.length > 0) await admin.deleteTopics({ topics: doomed }).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
}

/**
 * A topology reading `topic` from the start in a fresh consumer group; steps and sink as YAML
 * flow maps, `source` extra Kafka source options (e.g. `max_inflight_records: 100000`).
 */
export function benchTopologyYaml(t: {
  brokers: string;
  topic: string;
  group: string;
  steps: string[];
  sink: string;
  source?: string;
}): string {
  return `name: bench
group: ${t.group}
source: { kind: kafka, brokers: "${t.brokers}", topics: [${t.topic}]${t.source ? `, ${t.source}` : ''} }
steps:
${t.steps.map((s) => `  - ${s}\n`).join('')}sinks:
  - ${t.sink}
`;
}

/**
 * Times `total` records through a run. The clock starts at the first `start()`, or — with a
 * `warmup` — once `warmup` records are done (they are not counted: group join and state
 * restore stay out of the figure); it stops when `total` records are done. The process's CPU
 * time (all threads, GC included) is taken over the same span: on a shared machine it says
 * what the work costs when wall-clock rates are skewed by other load.
 */
export class Throughput {
  readonly finished: Promise<void>;
  private resolve: () => void = () => undefined;
  private done = 0;
  private first = 0;
  private firstCount = 0;
  private firstCpu: NodeJS.CpuUsage | undefined;
  private last = 0;
  private cpuMicros = 0;

  constructor(
    private readonly total: number,
    private readonly warmup = 0,
  ) {
    this.finished = new Promise((r) => {
      this.resolve = r;
    });
  }

  start(): void {
    if (this.warmup === 0 && this.first === 0) this.startClock();
  }

  add(records: number): void {
    this.done += records;
    if (this.warmup > 0 && this.first === 0 && this.done >= this.warmup) {
      this.startClock();
      this.firstCount = this.done;
    }
    if (this.done >= this.total && !this.last) {
      this.last = performance.now();
      const cpu = process.cpuUsage(this.firstCpu);
      this.cpuMicros = cpu.user + cpu.system;
      this.resolve();
    }
  }

  private startClock(): void {
    this.first = performance.now();
    this.firstCpu = process.cpuUsage();
  }

  perSecond(): number {
    return (this.total - this.firstCount) / ((this.last - this.first) / 1000);
  }

  /** CPU microseconds of this process per record timed. */
  cpuPerRecord(): number {
    return this.cpuMicros / (this.total - this.firstCount);
  }
}

/** Counts records written to the topology's first sink: clock from its first write. */
export function meterFirstSink(parts: WorkerParts, total: number): Throughput {
  const sink = parts.sinks[0];
  if (!sink) throw new Error('no sink');
  const throughput = new Throughput(total);
  const write = sink.write.bind(sink);
  sink.write = async (records: FlotillaRecord[], ctx) => {
    throughput.start();
    await write(records, ctx);
    throughput.add(records.length);
  };
  return throughput;
}

/**
 * Counts input records once the worker has acknowledged them (sinks written, state
 * checkpointed: what a commit waits for), after a warm-up of 5 % of them. Works whatever the
 * steps emit, e.g. a window step's few results.
 */
export function meterInput(parts: WorkerParts, total: number): Throughput {
  const throughput = new Throughput(total, Math.ceil(total / 20));
  const { source } = parts;
  const run = source.run.bind(source);
  source.run = (handler, events) =>
    run(async (batch) => {
      await handler(batch);
      throughput.add(batch.records.length);
    }, events);
  return throughput;
}

/**
 * Runs a topology in this process until `meter` has timed it, then stops it; `atEnd` sees the
 * parts (e.g. a step's state) before the stop.
 */
export async function runTimed(
  yaml: string,
  logger: Logger,
  meter: (parts: WorkerParts) => Throughput,
  atEnd?: (parts: WorkerParts) => void,
): Promise<Throughput> {
  const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-bench-'));
  const file = path.join(dir, 'bench.yaml');
  writeFileSync(file, yaml);
  const loaded = loadTopology(file);
  const parts = await buildParts(loaded, logger);
  const throughput = meter(parts);
  const worker = new Worker(loaded, parts, logger);
  const running = worker.run();
  await Promise.race([
    throughput.finished,
    running.then(() => {
      throw new Error('the topology stopped before every record was through');
    }),
  ]);
  atEnd?.(parts);
  await worker.stop();
  await running;
  return throughput;
}
