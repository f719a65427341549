/**
 * `npm run bench -- fleet [--records N] [--rounds R] [--workers 1,2,3]`: records/s of a fleet of
 * 1, 2, 3 worker processes (`flotilla run` as child processes, one consumer group) on a
 * pass-through topology (decode JSON → discard) reading N pre-produced synthetic metrics across
 * 6 partitions. Each run uses a fresh group; it is timed from the first committed progress after
 * the group settled (every worker holds its share of the partitions, none twice) to every record
 * committed (admin.fetchOffsets polled every 100 ms), so process start, group joins and
 * rebalances are left out. Rounds interleave the worker counts; figures are medians. Also
 * reported, in cores over the timed window: the workers' CPU, the broker's (when it runs here),
 * everything else on the machine, and the machine's total — what limits the scaling here.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Admin } from 'kafkajs';
import { produceRecords } from '../src/cli/produce.js';
import { createKafka, parseBrokers } from '../src/kafka/client.js';
import { createLogger } from '../src/observability/logger.js';
import { median, note, printFigures, round } from './_lib.js';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '2400000' },
    rounds: { type: 'string', default: '3' },
    workers: { type: 'string', default: '1,2,3' },
  },
});
const N = Number(values.records);
const ROUNDS = Number(values.rounds);
const COUNTS = values.workers.split(',').map(Number);
const PARTITIONS = 6;
const POLL_MS = 100;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
const logger = createLogger({ bench: 'fleet' }).child({}, { level: 'warn' });
const kafka = createKafka({ brokers: parseBrokers(brokers), clientId: 'flotilla-bench-fleet', logger });
const topic = `bench-fleet-metrics-${N}`;
const run = Date.now().toString(36);

const sum = (xs: Iterable<number>) => [...xs].reduce((a, b) => a + b, 0);
const difference = (later: number | undefined, earlier: number | undefined) =>
  later === undefined || earlier === undefined ? undefined : later - earlier;

/** CPU seconds (user + system) a process has used, from /proc; undefined off Linux or once it is gone. */
function cpuSeconds(pid: number): number | undefined {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** Busy CPU seconds of the whole machine (every process, every core) so far. */
function machineBusySeconds(): number | undefined {
  try {
    // The `cpu` line: user nice system idle iowait irq softirq steal …, in 1/100 s.
    const ticks = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
      .trim()
      .split(/\s+/)
      .slice(1, 9)
      .map(Number);
    return (sum(ticks) - (ticks[3] ?? 0) - (ticks[4] ?? 0)) / 100;
  } catch {
    return undefined;
  }
}

/** The Kafka broker's pid, when it runs on this machine. */
function brokerPid(): number | undefined {
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes('kafka.Kafka')) return Number(entry);
    }
  } catch {
    // Not Linux, or /proc not readable: no broker figure.
  }
  return undefined;
}

async function committedTotal(admin: Admin, group: string): Promise<number> {
  const [res] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  return sum((res?.partitions ?? []).map((p) => Math.max(0, Number(p.offset))));
}

async function ensureInput(admin: Admin): Promise<void> {
  if ((await admin.listTopics()).includes(topic)) {
    const have = sum((await admin.fetchTopicOffsets(topic)).map((p) => Number(p.high)));
    if (have === N) {
      note(`input: ${topic} already holds ${N} records`);
      return;
    }
    await admin.deleteTopics({ topics: [topic] });
    await new Promise((r) => setTimeout(r, 2000));
  }
  note(`input: producing ${N} synthetic metrics (JSON) to ${topic}`);
  await produceRecords({
    preset: 'metrics',
    count: N,
    rate: 0,
    seed: 7,
    format: 'json',
    topic,
    poison: 0,
    batchSize: 5000,
    inFlight: 8,
    target: { kind: 'kafka', brokers: parseBrokers(brokers), partitions: PARTITIONS, compression: 'lz4' },
    logger,
    progress: { logIntervalMs: 10_000 },
  });
}

interface Worker {
  child: ChildProcess;
  exited: Promise<number | null>;
  /** Assignments the worker was given (1 when the group formed in one go). */
  assignments: number;
  /** Partitions of its latest assignment. */
  owned: number[];
  /** Its last log lines, for an error. */
  logTail(): string;
}

function startWorker(file: string): Worker {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), 'run', file],
    {
      cwd: repoRoot,
      env: { ...process.env, KAFKA_BROKERS: brokers, FLOTILLA_LOG_FORMAT: 'json', FLOTILLA_HTTP_PORT: 'off' },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const last: string[] = [];
  const worker: Worker = {
    child,
    exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
    assignments: 0,
    owned: [],
    logTail: () => last.join('\n'),
  };
  let pending = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    const lines = (pending + chunk.toString()).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      if (line.includes('"partitions assigned"')) {
        worker.assignments++;
        const { assignment } = JSON.parse(line) as { assignment: Record<string, number[]> };
        worker.owned = Object.values(assignment).flat();
      }
      last.push(line);
      if (last.length > 20) last.shift();
    }
  });
  return worker;
}

interface Measured {
  perSecond: number;
  workerCpuSeconds: number;
  brokerCpuSeconds: number | undefined;
  machineBusyCores: number | undefined;
  seconds: number;
  assignments: number;
}

/** One run: `count` workers in a fresh group, timed from the first commit to all N committed. */
async function measure(admin: Admin, count: number, broker: number | undefined): Promise<Measured> {
  const group = `bench-fleet-${run}-${count}-${Math.random().toString(36).slice(2, 8)}`;
  const file = path.join(tmpdir(), `${group}.yaml`);
  writeFileSync(
    file,
    `name: bench-fleet
group: ${group}
source: { kind: kafka, topics: [${topic}], commit_interval_ms: 200 }
steps:
  - { kind: decode, format: json }
sinks:
  - { kind: discard }
`,
  );
  const workers = Array.from({ length: count }, () => startWorker(file));
  try {
    return await timeCommits(admin, group, workers, broker);
  } finally {
    for (const w of workers) w.child.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exited));
    await admin.deleteGroups([group]).catch(() => undefined);
  }
}

/** Every worker holds partitions of one generation: together all of them, none twice. */
function groupSettled(workers: Worker[]): boolean {
  const owned = workers.map((w) => w.owned);
  return owned.every((o) => o.length > 0) && sum(owned.map((o) => o.length)) === PARTITIONS;
}

async function timeCommits(
  admin: Admin,
  group: string,
  workers: Worker[],
  broker: number | undefined,
): Promise<Measured> {
  const cpuOf = () => ({
    workers: workers.map((w) => cpuSeconds(w.child.pid ?? 0) ?? 0),
    broker: broker === undefined ? undefined : cpuSeconds(broker),
    machine: machineBusySeconds(),
  });
  let first: { at: number; committed: number; cpu: ReturnType<typeof cpuOf> } | undefined;
  for (;;) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    const dead = workers.find((w) => w.child.exitCode !== null || w.child.signalCode !== null);
    if (dead) {
      throw new Error(
        `a worker exited (${dead.child.exitCode ?? dead.child.signalCode}) before the group committed everything:\n${dead.logTail()}`,
      );
    }
    const committed = await committedTotal(admin, group);
    const at = performance.now();
    if (!first && committed > 0 && groupSettled(workers)) {
      first = { at, committed, cpu: cpuOf() };
      continue;
    }
    if (first && committed >= N) {
      const cpu = cpuOf();
      const seconds = (at - first.at) / 1000;
      const machineBusy = difference(cpu.machine, first.cpu.machine);
      return {
        perSecond: (N - first.committed) / seconds,
        seconds,
        workerCpuSeconds: sum(cpu.workers) - sum(first.cpu.workers),
        brokerCpuSeconds: difference(cpu.broker, first.cpu.broker),
        machineBusyCores: machineBusy === undefined ? undefined : machineBusy / seconds,
        assignments: sum(workers.map((w) => w.assignments)),
      };
    }
    if (committed >= N)
      throw new Error(`all ${N} records were committed before the first poll: use more --records`);
  }
}

async function main(): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const load = loadavg()[0] ?? 0;
  try {
    await ensureInput(admin);
    const broker = brokerPid();
    const runs = new Map<number, Measured[]>(COUNTS.map((c) => [c, []]));
    for (let r = 1; r <= ROUNDS; r++) {
      for (const count of COUNTS) {
        const m = await measure(admin, count, broker);
        runs.get(count)?.push(m);
        note(
          `round ${r}/${ROUNDS}, ${count} worker(s): ${Math.round(m.perSecond)} records/s over ${m.seconds.toFixed(1)} s; ` +
            `CPU s: workers ${m.workerCpuSeconds.toFixed(1)}, broker ${m.brokerCpuSeconds?.toFixed(1) ?? '?'}; ` +
            `machine busy ${m.machineBusyCores?.toFixed(2) ?? '?'} cores; ${m.assignments} assignment(s)`,
        );
      }
    }
    const medianOf = (count: number, pick: (m: Measured) => number | undefined) => {
      const xs = (runs.get(count) ?? []).map(pick).filter((x): x is number => x !== undefined);
      return xs.length > 0 ? median(xs) : undefined;
    };
    const base = medianOf(COUNTS[0] as number, (m) => m.perSecond) ?? 1;
    printFigures({
      bench: 'fleet',
      records: N,
      partitions: PARTITIONS,
      rounds: ROUNDS,
      cores: availableParallelism(),
      load_average_at_start: round(load, 2),
      workers: COUNTS.map((count) => {
        const perSecond = medianOf(count, (m) => m.perSecond) ?? 0;
        const cores = (pick: (m: Measured) => number | undefined) =>
          medianOf(count, (m) => {
            const x = pick(m);
            return x === undefined ? undefined : x / m.seconds;
          });
        const workerCores = cores((m) => m.workerCpuSeconds) ?? 0;
        const brokerCores = cores((m) => m.brokerCpuSeconds);
        const machineCores = medianOf(count, (m) => m.machineBusyCores);
        return {
          processes: count,
          records_per_s: Math.round(perSecond),
          ratio_vs_1: round(perSecond / base, 2),
          timed_seconds: round(medianOf(count, (m) => m.seconds) ?? 0, 1),
          worker_cpu_cores: round(workerCores, 2),
          // Constant when the workers scale with the CPU they get: the cost per record does not grow.
          records_per_worker_cpu_s: Math.round(
            medianOf(count, (m) =>
              m.workerCpuSeconds > 0 ? (m.perSecond * m.seconds) / m.workerCpuSeconds : undefined,
            ) ?? 0,
          ),
          broker_cpu_cores: brokerCores === undefined ? null : round(brokerCores, 2),
          other_cpu_cores:
            machineCores === undefined ? null : round(machineCores - workerCores - (brokerCores ?? 0), 2),
          machine_busy_cores: machineCores === undefined ? null : round(machineCores, 2),
          extra_assignments: medianOf(count, (m) => m.assignments - count),
        };
      }),
    });
  } finally {
    await admin.disconnect();
  }
}

await main();
