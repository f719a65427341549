import net from 'node:net';
import type { Admin, Kafka } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  committedOffsets,
  createTopic,
  produce,
  spawnWorker,
  testKafka,
  unique,
  type WorkerProcess,
  writeTopology,
} from '../support/kafka.js';
import { connectOrExplain } from '../support/services.js';
import { waitFor } from '../support/wait.js';

const DEFAULT_HTTP_PORT = 9464;

/** Listens on `port`; resolves undefined when something else already holds it. */
function hold(port: number): Promise<net.Server | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, '0.0.0.0', () => resolve(server));
  });
}

async function freePort(): Promise<number> {
  const server = (await hold(0)) as net.Server;
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

function logLines(w: WorkerProcess): Record<string, unknown>[] {
  return w
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const urlOf = (w: WorkerProcess) =>
  logLines(w).find((l) => l.msg === 'serving /metrics, /health and /ready')?.url as string | undefined;

/** Partitions a worker holds now, from its latest assignment log line. */
const ownedBy = (w: WorkerProcess) =>
  Object.values(
    (logLines(w).findLast((l) => l.msg === 'partitions assigned')?.assignment ?? {}) as Record<
      string,
      number[]
    >,
  ).flat();

/**
 * A fleet as a Procfile runner starts it: several `flotilla run` processes of one topology.
 * They share its consumer group; each serves /metrics on PORT when the runner sets it, else on
 * 9464, else (taken) on a free port.
 */
describe('a fleet of worker processes', () => {
  let kafka: Kafka;
  let admin: Admin;
  const workers: WorkerProcess[] = [];

  // Workers inherit this environment: only the third one gets a PORT, as a runner would set it.
  const inherited = { PORT: process.env.PORT, FLOTILLA_HTTP_PORT: process.env.FLOTILLA_HTTP_PORT };

  beforeAll(async () => {
    delete process.env.PORT;
    delete process.env.FLOTILLA_HTTP_PORT;
    kafka = testKafka();
    admin = await connectOrExplain('KAFKA_BROKERS', async () => {
      const a = kafka.admin();
      await a.connect();
      return a;
    });
  });

  afterAll(async () => {
    for (const w of workers)
      if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    await admin?.disconnect();
    for (const [key, value] of Object.entries(inherited)) if (value !== undefined) process.env[key] = value;
  });

  it('three processes split six partitions, each on its own HTTP port, and together commit everything', {
    timeout: 180_000,
  }, async () => {
    const input = unique('fleet-in');
    const group = unique('fleet-group');
    await createTopic(admin, input, 6);
    const N = 30_000;
    await produce(
      kafka,
      input,
      Array.from({ length: N }, (_, n) => ({ key: `k${n}`, value: JSON.stringify({ n }) })),
    );
    const file = writeTopology(`name: fleet
group: ${group}
source: { kind: kafka, topics: [${input}], commit_interval_ms: 200, heartbeat_interval_ms: 500 }
steps:
  - { kind: decode, format: json }
sinks:
  - { kind: discard }
`);
    // Whether or not another program holds 9464, the two workers without PORT must not collide.
    const held = await hold(DEFAULT_HTTP_PORT);
    try {
      const port = await freePort();
      const [a, b, c] = [spawnWorker(file), spawnWorker(file), spawnWorker(file, { PORT: String(port) })] as [
        WorkerProcess,
        WorkerProcess,
        WorkerProcess,
      ];
      workers.push(a, b, c);
      await waitFor(
        'every worker to hold 2 of the 6 partitions',
        () => [a, b, c].every((w) => ownedBy(w).length === 2),
        90_000,
      );
      expect(new Set([a, b, c].flatMap(ownedBy))).toEqual(new Set([0, 1, 2, 3, 4, 5]));

      const urls = [a, b, c].map(urlOf);
      expect(urls[2]).toBe(`http://localhost:${port}`);
      expect(new Set(urls).size).toBe(3);
      for (const w of [a, b]) expect(w.logs()).toContain('port 9464 is taken (another worker?)');
      for (const url of urls) expect((await fetch(`${url}/health`)).status).toBe(200);

      await waitFor(
        'the group to commit every record',
        async () =>
          [...(await committedOffsets(admin, group, input)).values()].reduce((s, o) => s + o, 0) === N,
        60_000,
      );
      for (const w of [a, b, c]) w.child.kill('SIGTERM');
      expect(await Promise.all([a, b, c].map((w) => w.exited))).toEqual([0, 0, 0]);
    } finally {
      await new Promise((r) => (held ? held.close(r) : r(undefined)));
    }
  });
});
