/**
 * `npm run bench -- kafka [--records N] [--rounds R]`: records/s over N ≥ 1M 200-byte JSON
 * records already in a topic, (1) consumed by raw KafkaJS (eachBatch, no work) — the client's
 * limit here, (2) through a pass-through topology (decode JSON → null sink), (3) through
 * decode → Kafka sink, (4) the raw KafkaJS producer on the same values — with (1), the
 * client's own limit for consume → produce. Rounds interleave them; figures are medians;
 * ratios are (2)/(1), (3)/(1) and (3)/client-consume-produce from the same run.
 * `--only raw|rawNoCommit|passThrough|kafkaSink|rawProduce` measures one (profiling), or several, comma-separated.
 * Each mode also reports the process's CPU µs per record over its timed span: steadier than
 * records/s on a shared machine.
 */
import { parseArgs } from 'node:util';
import { CompressionTypes, Partitioners } from 'kafkajs';
import {
  benchKafka,
  benchTopologyYaml,
  deleteTopics,
  ensureInputTopic,
  median,
  meterFirstSink,
  note,
  printFigures,
  round,
  runTimed,
  Throughput,
  withPeakMemory,
} from './_lib.js';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '3' },
    only: { type: 'string' },
  },
});
const N = Number(values.records);
const ROUNDS = Number(values.rounds);
const only = values.only?.split(',');
const PARTITIONS = 6;
const { brokers, kafka, logger } = benchKafka('kafka');
const topic = `bench-json-200b-${N}`;
const run = Date.now().toString(36);
/** Output topics of this run, deleted at the end. */
const outputs: string[] = [];

/** The i-th record: a metric as JSON, padded to exactly 200 bytes. */
function record(i: number): string {
  const base = `{"ts":${1767225600000 + i * 10},"tenant":"t${i % 4}","host":"host-${i % 20}","metric":"cpu","value":${(i % 1000) / 10},"pad":"`;
  return `${base}${'x'.repeat(200 - base.length - 2)}"}`;
}

const input = {
  topic,
  partitions: PARTITIONS,
  records: N,
  description: 'of 200 bytes',
  message: (i: number) => ({ key: `k${i % 1000}`, value: record(i) }),
};

/** Records/s of a mode and the process's CPU µs per record over the same span. */
interface Measured {
  perSecond: number;
  cpuPerRecord: number;
}

/**
 * (1) Raw KafkaJS: eachBatch counting messages, nothing else. Timed from the first batch. With
 * KafkaJS's defaults it commits after every batch (`raw`); `rawNoCommit` turns that off and only
 * reads, which no consumer group that must resume can do: it bounds what reading alone costs.
 */
async function raw(autoCommit: boolean): Promise<Measured> {
  const consumer = kafka.consumer({
    groupId: `bench-raw-${run}-${Math.random()}`,
    maxBytesPerPartition: 1024 * 1024,
    maxWaitTimeInMs: 500,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const throughput = new Throughput(N);
  await consumer.run({
    autoCommit,
    partitionsConsumedConcurrently: 4,
    eachBatch: async ({ batch }) => {
      throughput.start();
      throughput.add(batch.messages.length);
    },
  });
  await throughput.finished;
  await consumer.disconnect();
  return { perSecond: throughput.perSecond(), cpuPerRecord: throughput.cpuPerRecord() };
}

/**
 * The raw KafkaJS producer on the same data (values as read, 5,000 per send, LZ4, acks from all
 * replicas): with (1), the client's limit for consume → produce on one thread.
 */
async function rawProduce(): Promise<Measured> {
  const out = `bench-raw-out-${run}-${Math.random().toString(36).slice(2)}`;
  outputs.push(out);
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const started = performance.now();
  const cpu = process.cpuUsage();
  const batch = 5000;
  for (let i = 0; i < N; i += batch) {
    const messages = Array.from({ length: Math.min(batch, N - i) }, (_, j) => ({
      key: `${topic}/${(i + j) % PARTITIONS}/${i + j}`,
      value: record(i + j),
    }));
    await producer.send({ topic: out, messages, acks: -1, compression: CompressionTypes.LZ4 });
  }
  const secs = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  await producer.disconnect();
  return { perSecond: N / secs, cpuPerRecord: (used.user + used.system) / N };
}

/** (2) and (3): a topology run in this process, timed from its first sink write to N acknowledged. */
async function topology(sinkYaml: string): Promise<Measured> {
  const yaml = benchTopologyYaml({
    brokers,
    topic,
    group: `bench-topology-${run}-${Math.random().toString(36).slice(2)}`,
    steps: ['{ kind: decode, format: json }'],
    sink: sinkYaml,
  });
  const throughput = await runTimed(yaml, logger, (parts) => meterFirstSink(parts, N));
  return { perSecond: throughput.perSecond(), cpuPerRecord: throughput.cpuPerRecord() };
}

async function main(): Promise<void> {
  await ensureInputTopic(kafka, input);
  const figures = {
    raw: [] as number[],
    rawNoCommit: [] as number[],
    passThrough: [] as number[],
    kafkaSink: [] as number[],
    rawProduce: [] as number[],
  };
  const cpu: typeof figures = { raw: [], rawNoCommit: [], passThrough: [], kafkaSink: [], rawProduce: [] };
  const heap = { raw: 0, rawNoCommit: 0, passThrough: 0, kafkaSink: 0, rawProduce: 0 };
  let rss = 0;
  for (let r = 1; r <= ROUNDS; r++) {
    const modes: [keyof typeof figures, () => Promise<Measured>][] = [
      ['raw', () => raw(true)],
      ['rawNoCommit', () => raw(false)],
      ['passThrough', () => topology('{ kind: discard }')],
      [
        'kafkaSink',
        () => {
          const out = `bench-out-${run}-${r}`;
          outputs.push(out);
          return topology(`{ kind: kafka, brokers: "${brokers}", topic: ${out}, compression: lz4 }`);
        },
      ],
      ['rawProduce', rawProduce],
    ];
    for (const [mode, measure] of modes.filter(([m]) => !only || only.includes(m))) {
      const m = await withPeakMemory(measure);
      figures[mode].push(m.result.perSecond);
      cpu[mode].push(m.result.cpuPerRecord);
      heap[mode] = Math.max(heap[mode], m.peakHeapMiB);
      rss = Math.max(rss, m.peakRssMiB);
      note(
        `round ${r}/${ROUNDS} ${mode}: ${Math.round(m.result.perSecond)} records/s, ${round(m.result.cpuPerRecord, 2)} CPU µs/record (heap peak ${Math.round(m.peakHeapMiB)} MiB, GC ${Math.round(m.gcMs)} ms)`,
      );
    }
  }
  await deleteTopics(kafka, outputs);
  const raw1 = median(figures.raw);
  const readOnly = median(figures.rawNoCommit);
  const pass2 = median(figures.passThrough);
  const sink3 = median(figures.kafkaSink);
  const produce = median(figures.rawProduce);
  // Consuming and producing share one thread: the client alone could do at most this.
  const clientConsumeProduce = 1 / (1 / raw1 + 1 / produce);
  printFigures({
    bench: 'kafka',
    records: N,
    record_bytes: 200,
    partitions: PARTITIONS,
    rounds: ROUNDS,
    raw_kafkajs_per_s: Math.round(raw1),
    pass_through_per_s: Math.round(pass2),
    kafka_sink_per_s: Math.round(sink3),
    ratio_pass_through: round(pass2 / raw1),
    ratio_kafka_sink: round(sink3 / raw1),
    raw_kafkajs_no_commit_per_s: Math.round(readOnly),
    ratio_pass_through_to_no_commit: round(pass2 / readOnly),
    raw_kafkajs_produce_per_s: Math.round(produce),
    client_consume_produce_per_s: Math.round(clientConsumeProduce),
    ratio_kafka_sink_to_client_consume_produce: round(sink3 / clientConsumeProduce),
    cpu_us_per_record: {
      raw: round(median(cpu.raw), 2),
      raw_no_commit: round(median(cpu.rawNoCommit), 2),
      pass_through: round(median(cpu.passThrough), 2),
      kafka_sink: round(median(cpu.kafkaSink), 2),
      raw_produce: round(median(cpu.rawProduce), 2),
    },
    ratio_cpu_raw_to_pass_through: round(median(cpu.raw) / median(cpu.passThrough)),
    peak_heap_mib: {
      raw: Math.round(heap.raw),
      raw_no_commit: Math.round(heap.rawNoCommit),
      pass_through: Math.round(heap.passThrough),
      kafka_sink: Math.round(heap.kafkaSink),
      raw_produce: Math.round(heap.rawProduce),
    },
    peak_rss_mib: Math.round(rss),
  });
}

await main();
