/**
 * `npm run bench -- kafka [--records N] [--rounds R]`: records/s over N ≥ 1M 200-byte JSON
 * records already in a topic, (1) consumed by raw KafkaJS (eachBatch, no work) — the client's
 * limit here, (2) through a pass-through topology (decode JSON → null sink), (3) through
 * decode → Kafka sink. Rounds interleave the three; figures are medians; ratios are (2)/(1)
 * and (3)/(1) from the same run. `--only raw|passThrough|kafkaSink` measures one (profiling).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Kafka } from 'kafkajs';
import type { FlotillaRecord } from '../src/core/record.js';
import { createKafka, parseBrokers } from '../src/kafka/client.js';
import { createLogger } from '../src/observability/logger.js';
import { buildParts, Worker } from '../src/runtime/worker.js';
import { loadTopology } from '../src/topology/load.js';
import { median, note, printFigures, round, withPeakMemory } from './_lib.js';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '3' },
    only: { type: 'string' },
  },
});
const N = Number(values.records);
const ROUNDS = Number(values.rounds);
const PARTITIONS = 6;
const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
const logger = createLogger({ bench: 'kafka' }).child({}, { level: 'warn' });
const kafka = createKafka({ brokers: parseBrokers(brokers), clientId: 'flotilla-bench', logger });
const topic = `bench-json-200b-${N}`;
const run = Date.now().toString(36);

/** The i-th record: a metric as JSON, padded to exactly 200 bytes. */
function record(i: number): string {
  const base = `{"ts":${1767225600000 + i * 10},"tenant":"t${i % 4}","host":"host-${i % 20}","metric":"cpu","value":${(i % 1000) / 10},"pad":"`;
  return `${base}${'x'.repeat(200 - base.length - 2)}"}`;
}

async function ensureInput(k: Kafka): Promise<void> {
  const admin = k.admin();
  await admin.connect();
  try {
    if ((await admin.listTopics()).includes(topic)) {
      const have = (await admin.fetchTopicOffsets(topic)).reduce((s, p) => s + Number(p.high), 0);
      if (have === N) {
        note(`input: ${topic} already holds ${N} records`);
        return;
      }
      await admin.deleteTopics({ topics: [topic] });
      await new Promise((r) => setTimeout(r, 2000));
    }
    await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
  note(`input: producing ${N} records of 200 bytes to ${topic}`);
  const producer = k.producer();
  await producer.connect();
  const batch = 10_000;
  for (let i = 0; i < N; i += batch) {
    const messages = Array.from({ length: Math.min(batch, N - i) }, (_, j) => ({
      key: `k${(i + j) % 1000}`,
      value: record(i + j),
    }));
    await producer.send({ topic, messages, acks: -1 });
  }
  await producer.disconnect();
}

/** (1) Raw KafkaJS: eachBatch counting messages, nothing else. Timed from the first batch. */
async function raw(): Promise<number> {
  const consumer = kafka.consumer({
    groupId: `bench-raw-${run}-${Math.random()}`,
    maxBytesPerPartition: 1024 * 1024,
    maxWaitTimeInMs: 500,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let count = 0;
  let first = 0;
  let last = 0;
  await new Promise<void>((resolve) => {
    void consumer.run({
      partitionsConsumedConcurrently: 4,
      eachBatch: async ({ batch }) => {
        first ||= performance.now();
        count += batch.messages.length;
        if (count >= N && !last) {
          last = performance.now();
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  return N / ((last - first) / 1000);
}

/** (2) and (3): a topology run in this process, timed from its first sink write to N acknowledged. */
async function topology(sinkYaml: string): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-bench-'));
  const file = path.join(dir, 'bench.yaml');
  writeFileSync(
    file,
    `name: bench
group: bench-topology-${run}-${Math.random().toString(36).slice(2)}
source: { kind: kafka, brokers: "${brokers}", topics: [${topic}] }
steps:
  - { kind: decode, format: json }
sinks:
  - ${sinkYaml}
`,
  );
  const loaded = loadTopology(file);
  const parts = await buildParts(loaded, logger);
  const sink = parts.sinks[0];
  if (!sink) throw new Error('no sink');
  const write = sink.write.bind(sink);
  let count = 0;
  let first = 0;
  let last = 0;
  const worker = new Worker(loaded, parts, logger);
  const running = worker.run();
  await new Promise<void>((resolve) => {
    sink.write = async (records: FlotillaRecord[], ctx) => {
      first ||= performance.now();
      await write(records, ctx);
      count += records.length;
      if (count >= N && !last) {
        last = performance.now();
        resolve();
      }
    };
  });
  await worker.stop();
  await running;
  return N / ((last - first) / 1000);
}

async function main(): Promise<void> {
  await ensureInput(kafka);
  const figures = { raw: [] as number[], passThrough: [] as number[], kafkaSink: [] as number[] };
  const heap = { raw: 0, passThrough: 0, kafkaSink: 0 };
  let rss = 0;
  const outputs: string[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const modes: [keyof typeof figures, () => Promise<number>][] = [
      ['raw', raw],
      ['passThrough', () => topology('{ kind: discard }')],
      [
        'kafkaSink',
        () => {
          const out = `bench-out-${run}-${r}`;
          outputs.push(out);
          return topology(`{ kind: kafka, brokers: "${brokers}", topic: ${out}, compression: lz4 }`);
        },
      ],
    ];
    for (const [mode, measure] of modes.filter(([m]) => !values.only || m === values.only)) {
      const m = await withPeakMemory(measure);
      figures[mode].push(m.result);
      heap[mode] = Math.max(heap[mode], m.peakHeapMiB);
      rss = Math.max(rss, m.peakRssMiB);
      note(
        `round ${r}/${ROUNDS} ${mode}: ${Math.round(m.result)} records/s (heap peak ${Math.round(m.peakHeapMiB)} MiB)`,
      );
    }
  }
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: outputs }).catch(() => undefined);
  await admin.disconnect();
  const raw1 = median(figures.raw);
  const pass2 = median(figures.passThrough);
  const sink3 = median(figures.kafkaSink);
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
    peak_heap_mib: {
      raw: Math.round(heap.raw),
      pass_through: Math.round(heap.passThrough),
      kafka_sink: Math.round(heap.kafkaSink),
    },
    peak_rss_mib: Math.round(rss),
  });
}

await main();
