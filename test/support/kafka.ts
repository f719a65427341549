import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Admin, IHeaders, Kafka, Message } from 'kafkajs';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { createKafka, parseBrokers } from '../../src/kafka/client.js';
import { createLogger } from '../../src/observability/logger.js';
import { connectOrExplain, repoRoot, serviceUrl } from './services.js';
import { waitFor } from './wait.js';

export const brokers = () => serviceUrl('KAFKA_BROKERS');

export function testKafka(): Kafka {
  return createKafka({
    brokers: parseBrokers(brokers()),
    clientId: 'flotilla-it',
    logger: createLogger({}).child({}, { level: 'error' }),
  });
}

/** A name unique to this test run. */
export const unique = (prefix: string) => `${prefix}-${process.pid}-${Date.now().toString(36)}`;

export async function createTopic(admin: Admin, topic: string, numPartitions: number): Promise<void> {
  await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true });
}

/** Produces messages in batches of `batch` (acks from all replicas). */
export async function produce(kafka: Kafka, topic: string, messages: Message[], batch = 5000): Promise<void> {
  const producer = kafka.producer();
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += batch) {
      await producer.send({ topic, messages: messages.slice(i, i + batch), acks: -1 });
    }
  } finally {
    await producer.disconnect();
  }
}

export interface ConsumedMessage {
  partition: number;
  offset: string;
  key: string | null;
  value: string;
  /** The message timestamp, ms since the epoch. */
  timestamp: number;
  headers: Record<string, string>;
}

/** Reads a topic from the beginning up to its current end offsets (no consumer group). */
export async function readTopic(kafka: Kafka, admin: Admin, topic: string): Promise<ConsumedMessage[]> {
  const ends = await admin.fetchTopicOffsets(topic);
  const wanted = new Map(ends.map((e) => [e.partition, Number(e.high)]));
  // A partition whose log start is its end holds nothing to read (all of it deleted, e.g. by retention).
  const remaining = new Map(
    ends.filter((e) => Number(e.high) > Number(e.low)).map((e) => [e.partition, true]),
  );
  const out: ConsumedMessage[] = [];
  if (remaining.size === 0) return out;
  const consumer = kafka.consumer({ groupId: unique('reader'), maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const done = new Promise<void>((resolve) => {
    void consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          const high = wanted.get(batch.partition) ?? 0;
          if (Number(m.offset) >= high) continue;
          out.push({
            partition: batch.partition,
            offset: m.offset,
            key: m.key?.toString() ?? null,
            value: m.value?.toString() ?? '',
            timestamp: Number(m.timestamp),
            headers: headersOf(m.headers),
          });
          if (Number(m.offset) === high - 1) remaining.delete(batch.partition);
        }
        if (remaining.size === 0) resolve();
      },
    });
  });
  try {
    await done;
  } finally {
    await consumer.disconnect();
  }
  return out;
}

function headersOf(h: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h ?? {})) if (v !== undefined) out[k] = String(v);
  return out;
}

/** Committed offsets of a group on a topic, by partition. */
export async function committedOffsets(
  admin: Admin,
  groupId: string,
  topic: string,
): Promise<Map<number, number>> {
  const [res] = await admin.fetchOffsets({ groupId, topics: [topic] });
  return new Map((res?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
}

/** Writes a topology file into a fresh temp folder and returns its path. */
export function writeTopology(yaml: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-it-'));
  const file = path.join(dir, 'topology.yaml');
  writeFileSync(file, yaml);
  return file;
}

export interface WorkerProcess {
  child: ChildProcess;
  /** Resolves with the exit code (or the signal that ended it). */
  exited: Promise<number | NodeJS.Signals>;
  logs(): string;
}

/** Runs `flotilla run FILE` from the TypeScript sources in a child process. */
export function spawnWorker(file: string, env: Record<string, string> = {}): WorkerProcess {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), 'run', file],
    {
      cwd: repoRoot,
      env: { ...process.env, KAFKA_BROKERS: brokers(), FLOTILLA_LOG_FORMAT: 'json', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let logs = '';
  child.stdout?.on('data', (d: Buffer) => {
    logs += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    logs += d.toString();
  });
  const exited = new Promise<number | NodeJS.Signals>((resolve) =>
    child.on('exit', (code, signal) => resolve(signal ?? code ?? 0)),
  );
  return { child, exited, logs: () => logs };
}

/** Waits until a worker logs that it joined its group and was given partitions. */
export async function waitForAssignment(worker: WorkerProcess, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    'the worker to be assigned partitions',
    () => worker.logs().includes('partitions assigned'),
    timeoutMs,
  );
}

/** A connected admin, after a real round trip; fails naming KAFKA_BROKERS when Kafka does not answer. */
export function connectAdmin(kafka: Kafka): Promise<Admin> {
  return connectOrExplain('KAFKA_BROKERS', async () => {
    const admin = kafka.admin();
    await admin.connect();
    await admin.listTopics();
    return admin;
  });
}

/** A failed test's worker logs, whole, in one file per worker: the evidence a flaky failure leaves. */
function keepWorkerLogs(testName: string, workers: WorkerProcess[]): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-failed-'));
  for (const [i, w] of workers.entries()) writeFileSync(path.join(dir, `worker-${i}.log`), w.logs());
  console.error(`[${testName}] the logs of its ${workers.length} worker(s) are in ${dir}`);
}

export interface KafkaTestContext {
  kafka: Kafka;
  admin: Admin;
  /** Starts `flotilla run FILE`; the worker is SIGKILLed after the test if still running. */
  startWorker(file: string, env?: Record<string, string>): WorkerProcess;
}

/**
 * Registers the hooks every Kafka integration suite needs: a client and a connected admin
 * (failing with the service's name when Kafka does not answer), and workers cleaned up
 * after each test. Read the fields inside tests and hooks, not at collection time.
 */
export function useKafka(): KafkaTestContext {
  const workers: WorkerProcess[] = [];
  const ctx = {
    startWorker(file: string, env: Record<string, string> = {}) {
      const w = spawnWorker(file, { FLOTILLA_HTTP_PORT: 'off', ...env });
      workers.push(w);
      return w;
    },
  } as KafkaTestContext;
  beforeAll(async () => {
    ctx.kafka = testKafka();
    ctx.admin = await connectAdmin(ctx.kafka);
  });
  afterEach(async (test) => {
    const started = workers.splice(0);
    for (const w of started) {
      if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
      await w.exited;
    }
    if (test.task.result?.state === 'fail' && started.length > 0) keepWorkerLogs(test.task.name, started);
  });
  afterAll(async () => {
    await ctx.admin?.disconnect();
  });
  return ctx;
}
