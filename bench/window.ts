/**
 * `npm run bench -- window [--records N] [--rounds R] [--only MODE] [--inflight N] [--state S]`:
 * records/s through the window step on N ≥ 1M 200-byte JSON metrics already in a topic, keyed by
 * host (1,000 hosts, each reporting every 10 s of event time), against the pass-through figure of
 * the same run:
 *   passThrough  decode JSON → discard sink
 *   tumbling     decode → 1-minute tumbling window per host (count, avg, p95) → discard
 *   sliding      decode → 5-minute window sliding by 1 minute, same aggregates → discard
 * The window runs are the real worker path: state checkpointed to a compacted Kafka changelog
 * after every batch. Each run is timed from 5 % of the input acknowledged (group join and state
 * restore left out) to all of it. Rounds interleave the modes; figures are medians; ratios are
 * against the pass-through median. Also per mode: this process's CPU µs per record (all threads,
 * GC included; steadier than records/s on a shared machine, and its ratio is what the throughput
 * ratio would be if the worker were CPU-bound), peak memory, the window step's stateStats() at the
 * end of the input, and the load average. `--only MODE` runs one mode (profiling); `--inflight N`
 * sets the source's max_inflight_records for every mode; `--state memory` keeps window state in
 * the process instead of the changelog (diagnostic: the step's own cost without checkpoints).
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { MemoryStateStore } from '../src/runtime/state-store.js';
import type { WorkerParts } from '../src/runtime/worker.js';
import { type StateStats, WindowStep } from '../src/steps/window/index.js';
import {
  benchKafka,
  benchTopologyYaml,
  deleteTopics,
  ensureInputTopic,
  median,
  meterInput,
  note,
  printFigures,
  round,
  runTimed,
  withPeakMemory,
} from './_lib.js';

const modes = ['passThrough', 'tumbling', 'sliding'] as const;
type Mode = (typeof modes)[number];

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '3' },
    only: { type: 'string' },
    state: { type: 'string', default: 'kafka' },
    inflight: { type: 'string' },
  },
});
const N = Number(values.records);
const ROUNDS = Number(values.rounds);
if (values.only !== undefined && !modes.includes(values.only as Mode)) {
  throw new Error(`--only: expected one of ${modes.join(', ')}, got '${values.only}'`);
}
if (values.state !== 'kafka' && values.state !== 'memory') {
  throw new Error(`--state: expected kafka or memory, got '${values.state}'`);
}
/** Diagnostic: `memory` keeps window state in process (no changelog), isolating the step's own cost. */
const STATE_IN_MEMORY = values.state === 'memory';
/** The source's `max_inflight_records` for every mode (default: the source's own). */
const INFLIGHT = values.inflight === undefined ? undefined : Number(values.inflight);
if (INFLIGHT !== undefined && !(Number.isInteger(INFLIGHT) && INFLIGHT > 0)) {
  throw new Error(`--inflight: expected a number of records > 0, got '${values.inflight}'`);
}
const PARTITIONS = 6;
const KEYS = 1000;
const TARGETS = { tumbling: 0.7, sliding: 0.5 };
const { brokers, kafka, logger } = benchKafka('window');
const topic = `bench-window-json-200b-${N}`;
const run = Date.now().toString(36);

/**
 * The i-th record: host i mod 1,000 reporting every 10 s (event time advances 10 ms per record,
 * in order), a latency-like value spread over two orders of magnitude, padded to 200 bytes.
 */
function record(i: number): string {
  const value = Math.round(Math.exp(((i * 7919) % 1000) / 200) * 100) / 100;
  const base = `{"ts":${1767225600000 + i * 10},"tenant":"t${i % 4}","host":"host-${i % KEYS}","metric":"latency_ms","value":${value},"pad":"`;
  return `${base}${'x'.repeat(200 - base.length - 2)}"}`;
}

const input = {
  topic,
  partitions: PARTITIONS,
  records: N,
  description: `of 200 bytes (${KEYS} hosts)`,
  message: (i: number) => ({ key: `host-${i % KEYS}`, value: record(i) }),
};

const AGGREGATES =
  '{ readings: { op: count }, mean: { op: avg, field: value }, latency: { op: quantiles, field: value, quantiles: [0.95] } }';
const WINDOWS: Record<Exclude<Mode, 'passThrough'>, string> = {
  tumbling: 'type: tumbling, size: 1m',
  sliding: 'type: sliding, size: 5m, slide: 1m',
};

function windowStepOf(parts: WorkerParts): WindowStep {
  const step = parts.steps.find((s) => s instanceof WindowStep);
  if (!step) throw new Error('the topology has no window step');
  return step as WindowStep;
}

interface ModeRun {
  perSecond: number;
  /** CPU microseconds of this process per record (all threads, GC included). */
  cpuPerRecord: number;
  /** Window results the sink received in the run (none for pass-through). */
  results: number;
  state?: StateStats;
}

/** One timed run of `mode` in a fresh consumer group; `changelogs` collects topics to delete. */
async function measure(mode: Mode, changelogs: string[]): Promise<ModeRun> {
  const group = `bench-window-${mode}-${run}-${Math.random().toString(36).slice(2)}`;
  const steps = ['{ kind: decode, format: json }'];
  if (mode !== 'passThrough') {
    steps.push(
      `{ kind: window, name: window, ${WINDOWS[mode]}, time: { field: ts }, group_by: [host], allowed_lateness: 5s, aggregates: ${AGGREGATES} }`,
    );
    if (!STATE_IN_MEMORY) changelogs.push(`${group}.window.changelog`);
  }
  const yaml = benchTopologyYaml({
    brokers,
    topic,
    group,
    steps,
    sink: '{ kind: discard }',
    source: INFLIGHT === undefined ? '' : `max_inflight_records: ${INFLIGHT}`,
  });
  const out: ModeRun = { perSecond: 0, cpuPerRecord: 0, results: 0 };
  const throughput = await runTimed(
    yaml,
    logger,
    (parts) => {
      if (STATE_IN_MEMORY) parts.source.stateStore = (name) => new MemoryStateStore(name);
      const sink = parts.sinks[0];
      if (sink && mode !== 'passThrough') {
        const write = sink.write.bind(sink);
        sink.write = (records, ctx) => {
          out.results += records.length;
          return write(records, ctx);
        };
      }
      return meterInput(parts, N);
    },
    (parts) => {
      if (mode !== 'passThrough') out.state = windowStepOf(parts).stateStats();
    },
  );
  out.perSecond = throughput.perSecond();
  out.cpuPerRecord = throughput.cpuPerRecord();
  return out;
}

const loadAverage = () => loadavg().map((x) => round(x, 2));

async function main(): Promise<void> {
  await ensureInputTopic(kafka, input);
  const loadAtStart = loadAverage();
  const selected = modes.filter((m) => !values.only || m === values.only);
  const figures: Record<Mode, number[]> = { passThrough: [], tumbling: [], sliding: [] };
  const cpu: Record<Mode, number[]> = { passThrough: [], tumbling: [], sliding: [] };
  const heap: Record<Mode, number> = { passThrough: 0, tumbling: 0, sliding: 0 };
  const state: Partial<Record<Mode, StateStats>> = {};
  const results: Partial<Record<Mode, number>> = {};
  let rss = 0;
  const changelogs: string[] = [];
  try {
    for (let r = 1; r <= ROUNDS; r++) {
      for (const mode of selected) {
        const m = await withPeakMemory(() => measure(mode, changelogs));
        figures[mode].push(m.result.perSecond);
        cpu[mode].push(m.result.cpuPerRecord);
        heap[mode] = Math.max(heap[mode], m.peakHeapMiB);
        rss = Math.max(rss, m.peakRssMiB);
        if (m.result.state) state[mode] = m.result.state;
        if (mode !== 'passThrough') results[mode] = m.result.results;
        note(
          `round ${r}/${ROUNDS} ${mode}: ${Math.round(m.result.perSecond)} records/s, ` +
            `${m.result.cpuPerRecord.toFixed(2)} CPU µs/record (heap peak ${Math.round(m.peakHeapMiB)} MiB, load ${loadAverage().join(' ')})`,
        );
      }
    }
  } finally {
    await deleteTopics(kafka, changelogs);
  }
  const pass = median(figures.passThrough);
  const passCpu = median(cpu.passThrough);
  const ran = (mode: Mode) => figures[mode].length > 0;
  const perSecond = (mode: Mode) => (ran(mode) ? Math.round(median(figures[mode])) : null);
  const ratio = (mode: Mode) => (ran(mode) && pass ? round(median(figures[mode]) / pass) : null);
  const cpuPerRecord = (mode: Mode) => (ran(mode) ? round(median(cpu[mode]), 2) : null);
  // What the ratio would be if the run were bound by this process's CPU alone.
  const cpuRatio = (mode: Mode) => (ran(mode) && passCpu ? round(passCpu / median(cpu[mode])) : null);
  printFigures({
    bench: 'window',
    records: N,
    record_bytes: 200,
    keys: KEYS,
    partitions: PARTITIONS,
    rounds: ROUNDS,
    window_state: values.state,
    max_inflight_records: INFLIGHT ?? 'default',
    pass_through_per_s: perSecond('passThrough'),
    tumbling_per_s: perSecond('tumbling'),
    sliding_per_s: perSecond('sliding'),
    ratio_tumbling: ratio('tumbling'),
    ratio_sliding: ratio('sliding'),
    targets: TARGETS,
    rounds_per_s: Object.fromEntries(selected.map((m) => [m, figures[m].map(Math.round)])),
    cpu_us_per_record: Object.fromEntries(selected.map((m) => [m, cpuPerRecord(m)])),
    cpu_ratio_tumbling: cpuRatio('tumbling'),
    cpu_ratio_sliding: cpuRatio('sliding'),
    window_results: results,
    state,
    peak_heap_mib: Object.fromEntries(selected.map((m) => [m, Math.round(heap[m])])),
    peak_rss_mib: Math.round(rss),
    load_average: { start: loadAtStart, end: loadAverage() },
  });
}

await main();
