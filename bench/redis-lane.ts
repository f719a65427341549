/**
 * `npm run bench -- redis-lane [--rates 1000,5000,20000] [--seconds 10] [--rounds 3]`: latency
 * from XADD to sink acknowledgement on the Redis Streams lane. A producer process XADDs records
 * at a steady rate, each carrying its send time; this process runs the topology redis-stream →
 * decode json → discard sink, and the sink records (acknowledgement time − send time) for
 * every record. The first second of each run is warm-up and not counted.
 *
 * Each round also runs a baseline at the same rate (skip it with --no-baseline): a bare ioredis
 * XREADGROUP BLOCK loop that takes the time as soon as a reply arrives — the floor this machine
 * allows, to tell the lane's own cost from the machine's noise. Rounds interleave rates and
 * modes; the figures are medians over rounds. Source options can be overridden (--batch-count,
 * --block-ms, --max-inflight, --ack-interval) to compare settings.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import type { FlotillaRecord } from '../src/core/record.js';
import { createLogger } from '../src/observability/logger.js';
import { buildParts, Worker } from '../src/runtime/worker.js';
import { loadTopology } from '../src/topology/load.js';
import { median, note, printFigures, round } from './_lib.js';

const USAGE = `Usage: npm run bench -- redis-lane [options]
  --rates R1,R2,…     records/s to measure (default 1000,5000,20000)
  --seconds S         seconds per rate (default 10; the first is warm-up)
  --rounds N          rounds; figures are medians (default 3)
  --no-baseline       skip the bare XREADGROUP baseline
  --batch-count N, --block-ms N, --max-inflight N, --ack-interval N
                      override the source's batch_count, block_ms, max_inflight_records, ack_interval_ms`;

/** Prints what is wrong and the usage, and exits with status 2. */
function usageError(problem: string): never {
  console.error(`${problem}\n\n${USAGE}`);
  process.exit(2);
}

/** A non-negative integer option (positive unless `zero` is allowed). */
function intOption(option: string, text: string, zero = false): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < (zero ? 0 : 1)) {
    usageError(`--${option} must be a ${zero ? 'non-negative' : 'positive'} integer, got '${text}'`);
  }
  return n;
}

const options = {
  rates: { type: 'string', default: '1000,5000,20000' },
  seconds: { type: 'string', default: '10' },
  rounds: { type: 'string', default: '3' },
  'no-baseline': { type: 'boolean', default: false },
  'batch-count': { type: 'string' },
  'block-ms': { type: 'string' },
  'max-inflight': { type: 'string' },
  'ack-interval': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;
let parsed: ReturnType<typeof parseArgs<{ options: typeof options }>>;
try {
  parsed = parseArgs({ options });
} catch (err) {
  usageError((err as Error).message);
}
const { values } = parsed;
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const RATES = values.rates.split(',').map((r) => intOption('rates', r));
const SECONDS = intOption('seconds', values.seconds);
const ROUNDS = intOption('rounds', values.rounds);
const WARMUP_SECONDS = 1;
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const benchDir = path.dirname(fileURLToPath(import.meta.url));
const logger = createLogger({ bench: 'redis-lane' }).child({}, { level: 'warn' });
const run = Date.now().toString(36);

/** Source options of the topology: the defaults unless overridden on the command line. */
const sourceOverrides = Object.fromEntries(
  (
    [
      ['batch_count', 'batch-count'],
      ['block_ms', 'block-ms'],
      ['max_inflight_records', 'max-inflight'],
      ['ack_interval_ms', 'ack-interval'],
    ] as const
  ).flatMap(([key, flag]) => {
    const text = values[flag];
    return text === undefined ? [] : [[key, intOption(flag, text, key === 'ack_interval_ms')]];
  }),
);

/** Wall-clock milliseconds with sub-millisecond resolution, as the producer stamps them. */
const now = () => performance.timeOrigin + performance.now();

/** What the producer puts in each record's value. */
interface Stamp {
  sent: number;
  n: number;
}

/** Takes one record's times: when the consumer got it, and when it was acknowledged. */
type Recorder = (stamp: Stamp, handedAt: number, ackedAt: number) => void;

/** A consumer under test, running until `stop`. */
interface Subject {
  stop(): Promise<void>;
}

type Mode = 'lane' | 'baseline';

interface RunFigures {
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** p99 of the first leg: XADD → the consumer has the entry (Redis, XREADGROUP, scheduling). */
  readP99: number;
  /** p99 of this process's event-loop delay (a 1 ms timer's lateness): CPU starvation and pauses. */
  loopDelayP99: number;
  /** Records measured (after warm-up). */
  records: number;
  /** CPU over the run as a share of one core: this (the consumer's) process, the producer, Redis. */
  consumerCpu: number;
  producerCpu: number;
  redisCpu: number;
  /** Share of the run some task of the machine waited for a CPU (PSI cpu some), when readable. */
  cpuPressure: number | null;
}

/** The lane: the topology redis-stream → decode json → discard, run by a Worker in this process. */
async function startLane(stream: string, record: Recorder): Promise<Subject> {
  const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-bench-'));
  const file = path.join(dir, 'bench.yaml');
  const source = { kind: 'redis-stream', url, streams: [stream], start: 'earliest', ...sourceOverrides };
  writeFileSync(
    file,
    `name: bench-redis-lane
group: bench-redis-lane-${run}
source: ${JSON.stringify(source)}
steps:
  - { kind: decode, format: json }
sinks:
  - { kind: discard }
`,
  );
  const loaded = loadTopology(file);
  const parts = await buildParts(loaded, logger);
  const sink = parts.sinks[0];
  if (!sink) throw new Error('no sink');
  // When the source hands a batch over: splits the latency into the read leg and the worker's.
  const handedAt = new WeakMap<FlotillaRecord, number>();
  const sourceRun = parts.source.run.bind(parts.source);
  parts.source.run = (handler) =>
    sourceRun((batch) => {
      const t = now();
      for (const r of batch.records) handedAt.set(r, t);
      return handler(batch);
    });
  const write = sink.write.bind(sink);
  sink.write = async (records, ctx) => {
    await write(records, ctx);
    const acked = now();
    for (const r of records) record(r.value as Stamp, handedAt.get(r) ?? acked, acked);
  };
  const worker = new Worker(loaded, parts, logger);
  const running = worker.run();
  while (!parts.source.ready?.()) await new Promise((r) => setTimeout(r, 20));
  return {
    async stop() {
      await worker.stop();
      await running;
    },
  };
}

/** The baseline: a bare XREADGROUP BLOCK loop (XACK on a second connection), timed on arrival. */
async function startBaseline(stream: string, record: Recorder): Promise<Subject> {
  const group = `bench-redis-baseline-${run}`;
  const reader = new Redis(url);
  const acker = new Redis(url);
  await acker.xgroup('CREATE', stream, group, '0', 'MKSTREAM');
  let stopping = false;
  const loop = (async () => {
    while (!stopping) {
      const reply = (await reader.xreadgroup(
        'GROUP',
        group,
        'baseline',
        'COUNT',
        500,
        'BLOCK',
        100,
        'STREAMS',
        stream,
        '>',
      )) as [string, [string, string[]][]][] | null;
      const entries = reply?.[0]?.[1];
      if (!entries) continue;
      const t = now();
      for (const [, fields] of entries) record(JSON.parse(fields[3] as string) as Stamp, t, t);
      void acker.xack(stream, group, ...entries.map(([id]) => id));
    }
  })();
  return {
    async stop() {
      stopping = true;
      await loop;
      await Promise.all([reader.quit(), acker.quit()]);
    },
  };
}

/** Nearest-rank percentile of sorted values. */
const percentile = (sorted: Float64Array, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;

/** CPU seconds the Redis server has used so far (INFO CPU). */
async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return field('used_cpu_user') + field('used_cpu_sys');
}

/** Microseconds some task has waited for a CPU since boot (Linux PSI), or null. */
function cpuPressureMicros(): number | null {
  try {
    const m = /^some .*total=(\d+)/m.exec(readFileSync('/proc/pressure/cpu', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function runProducer(stream: string, rate: number): Promise<{ sent: number; seconds: number; cpu: number }> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(benchDir, '_redis-lane-producer.ts'),
      '--url',
      url,
      '--stream',
      stream,
      '--rate',
      String(rate),
      '--seconds',
      String(SECONDS),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return new Promise((resolve, reject) =>
    child.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`the producer exited with ${code}`)),
    ),
  );
}

async function measure(mode: Mode, rate: number, round: number): Promise<RunFigures> {
  const stream = `bench-redis-lane-${run}-${mode}-${rate}-${round}`;
  const warmup = rate * WARMUP_SECONDS;
  const latencies = new Float64Array(rate * SECONDS);
  const readLatencies = new Float64Array(rate * SECONDS);
  let measured = 0;
  let received = 0;
  const record: Recorder = (stamp, handedAt, ackedAt) => {
    received++;
    if (stamp.n < warmup || measured >= latencies.length) return;
    readLatencies[measured] = handedAt - stamp.sent;
    latencies[measured++] = ackedAt - stamp.sent;
  };
  const subject = await (mode === 'lane' ? startLane : startBaseline)(stream, record);

  const redis = new Redis(url);
  const redisCpuBefore = await redisCpuSeconds(redis);
  const pressureBefore = cpuPressureMicros();
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const producer = await runProducer(stream, rate);
  const deadline = Date.now() + 10_000;
  while (received < producer.sent && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  loopDelay.disable();
  const pressureAfter = cpuPressureMicros();
  const redisCpu = ((await redisCpuSeconds(redis)) - redisCpuBefore) / elapsed;
  await subject.stop();
  await redis.del(stream);
  await redis.quit();
  if (received < producer.sent) {
    throw new Error(`${mode}: ${producer.sent - received} of ${producer.sent} records never arrived`);
  }

  const sorted = latencies.subarray(0, measured).sort();
  return {
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    p999: percentile(sorted, 0.999),
    max: sorted[sorted.length - 1] ?? 0,
    readP99: percentile(readLatencies.subarray(0, measured).sort(), 0.99),
    loopDelayP99: loopDelay.percentile(99) / 1e6,
    records: measured,
    consumerCpu: (cpu.user + cpu.system) / 1e6 / elapsed,
    producerCpu: producer.cpu,
    redisCpu,
    cpuPressure:
      pressureBefore === null || pressureAfter === null
        ? null
        : (pressureAfter - pressureBefore) / 1e6 / elapsed,
  };
}

/** Medians over rounds, in milliseconds and shares. */
function summary(runs: RunFigures[]) {
  const med = (pick: (f: RunFigures) => number, digits = 3) => round(median(runs.map(pick)), digits);
  const pressures = runs.map((f) => f.cpuPressure).filter((p) => p !== null);
  return {
    p50_ms: med((f) => f.p50),
    p99_ms: med((f) => f.p99),
    p999_ms: med((f) => f.p999),
    max_ms: med((f) => f.max),
    read_leg_p99_ms: med((f) => f.readP99),
    event_loop_delay_p99_ms: med((f) => f.loopDelayP99),
    cpu_share: {
      consumer: med((f) => f.consumerCpu, 2),
      producer: med((f) => f.producerCpu, 2),
      redis: med((f) => f.redisCpu, 2),
    },
    cpu_pressure: pressures.length > 0 ? round(median(pressures), 2) : null,
    rounds_p50_ms: runs.map((f) => round(f.p50)),
    rounds_p99_ms: runs.map((f) => round(f.p99)),
    records_per_round: runs.map((f) => f.records),
  };
}

async function main(): Promise<void> {
  const modes: Mode[] = values['no-baseline'] ? ['lane'] : ['lane', 'baseline'];
  const loadStart = loadavg();
  note(
    `redis-lane: ${modes.join(' + ')} at ${RATES.join(', ')} records/s, ${SECONDS} s each, ${ROUNDS} rounds; load ${loadStart.map((l) => l.toFixed(2)).join(' ')}`,
  );
  const runs = new Map<string, RunFigures[]>();
  for (let r = 1; r <= ROUNDS; r++) {
    for (const rate of RATES) {
      for (const mode of modes) {
        const f = await measure(mode, rate, r);
        runs.set(`${mode}/${rate}`, [...(runs.get(`${mode}/${rate}`) ?? []), f]);
        note(
          `round ${r}/${ROUNDS} ${mode} ${rate}/s: p50 ${f.p50.toFixed(3)} ms, p99 ${f.p99.toFixed(3)} ms, p99.9 ${f.p999.toFixed(3)} ms, max ${f.max.toFixed(1)} ms; read leg p99 ${f.readP99.toFixed(3)} ms; event-loop delay p99 ${f.loopDelayP99.toFixed(1)} ms; CPU consumer ${Math.round(f.consumerCpu * 100)}%, producer ${Math.round(f.producerCpu * 100)}%, redis ${Math.round(f.redisCpu * 100)}%; CPU pressure ${f.cpuPressure === null ? '?' : `${Math.round(f.cpuPressure * 100)}%`}; load ${loadavg()[0]?.toFixed(2)}`,
        );
      }
    }
  }
  const byMode = (mode: Mode) =>
    Object.fromEntries(RATES.map((rate) => [rate, summary(runs.get(`${mode}/${rate}`) ?? [])]));
  const lane = byMode('lane');
  const at5k = lane[5000];
  printFigures({
    bench: 'redis-lane',
    seconds_per_rate: SECONDS,
    warmup_seconds: WARMUP_SECONDS,
    rounds: ROUNDS,
    source: { ...sourceOverrides },
    lane,
    baseline: modes.includes('baseline') ? byMode('baseline') : null,
    target_5k: at5k ? { p99_below_5ms: at5k.p99_ms < 5, p50_below_1ms: at5k.p50_ms < 1 } : null,
    cpus: cpus().length,
    loadavg_start: loadStart.map((l) => round(l, 2)),
    loadavg_end: loadavg().map((l) => round(l, 2)),
  });
}

await main();
