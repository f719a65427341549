import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  committedOffsets,
  createTopic,
  produce,
  readTopic,
  unique,
  useKafka,
  type WorkerProcess,
  waitForAssignment,
  writeTopology,
} from '../support/kafka.js';
import { waitFor } from '../support/wait.js';

/**
 * The delivery contract on a real broker, with workers as child processes (`flotilla run`):
 * at-least-once input, commits only after sinks acknowledge, drain on stop and rebalance.
 */
describe('the worker on Kafka', () => {
  const k = useKafka();

  /** A decode → kafka topology on fresh topics; records are {n} JSON, `poison` of them not JSON. */
  async function setup(name: string, partitions: number, factor = 2) {
    const input = unique(`${name}-in`);
    const output = unique(`${name}-out`);
    const group = unique(`${name}-group`);
    await createTopic(k.admin, input, partitions);
    await createTopic(k.admin, output, 3);
    const file = writeTopology(`name: ${name}
group: ${group}
source:
  kind: kafka
  topics: [${input}]
  commit_interval_ms: 200
  heartbeat_interval_ms: 500
  session_timeout_ms: 10000
steps:
  - { kind: decode, format: json }
  - { kind: map, value: "{ n: value.n, doubled: value.n * ${factor} }" }
sinks:
  - { kind: kafka, topic: ${output} }
dead_letter: { topic: ${output}.dlq }
`);
    const start = (env: Record<string, string> = {}) => k.startWorker(file, env);
    const send = (from: number, count: number, isPoison: (n: number) => boolean = () => false) =>
      produce(
        k.kafka,
        input,
        Array.from({ length: count }, (_, i) => {
          const n = from + i;
          return { key: `k${n % 97}`, value: isPoison(n) ? `{"n": ${n}, broken` : JSON.stringify({ n }) };
        }),
      );
    /** Produces `total` records in batches of 1000 every 50 ms, so a worker is mid-stream for seconds. */
    const sendSlowly = async (total: number) => {
      for (let i = 0; i < total; i += 1000) {
        await send(i, Math.min(1000, total - i));
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const outputCount = async () =>
      (await k.admin.fetchTopicOffsets(output)).reduce((sum, p) => sum + Number(p.high), 0);
    /** Output values by n, and how many times each n was written. */
    const readOutput = async () => {
      const counts = new Map<number, number>();
      for (const m of await readTopic(k.kafka, k.admin, output)) {
        const v = JSON.parse(m.value) as { n: number; doubled: number };
        expect(v.doubled).toBe(v.n * factor);
        counts.set(v.n, (counts.get(v.n) ?? 0) + 1);
      }
      return counts;
    };
    const committedTotal = async () =>
      [...(await committedOffsets(k.admin, group, input)).values()].reduce((a, o) => a + Math.max(0, o), 0);
    return { file, input, output, group, start, send, sendSlowly, outputCount, readOutput, committedTotal };
  }

  const duplicatesOf = (counts: Map<number, number>) =>
    [...counts.values()].reduce((sum, c) => sum + c - 1, 0);

  it('(a) moves 100k records to a sink topic with none lost and none duplicated', async () => {
    const t = await setup('clean', 4);
    const N = 100_000;
    await t.send(0, N);
    const w = t.start();
    await waitFor('all 100k records in the output topic', async () => (await t.outputCount()) >= N, 120_000);
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);

    const counts = await t.readOutput();
    expect(counts.size).toBe(N);
    expect(duplicatesOf(counts)).toBe(0);
    for (let n = 0; n < N; n++) expect(counts.has(n)).toBe(true);
    expect(await t.committedTotal()).toBe(N);
  });

  it('(b) after a SIGKILL mid-stream and a restart, every record is out at least once; duplicates bounded by the uncommitted', async () => {
    const t = await setup('killed', 4);
    const N = 60_000;
    const first = t.start();
    await waitForAssignment(first);
    const producing = t.sendSlowly(N);
    await waitFor('some output before the kill', async () => (await t.outputCount()) >= 10_000, 60_000);
    first.child.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');
    const writtenAtKill = await t.outputCount();
    const committedAtKill = await t.committedTotal();
    await producing;
    expect(writtenAtKill).toBeLessThan(N);

    const second = t.start();
    await waitForAssignment(second);
    await waitFor('the restarted worker to finish', async () => (await t.committedTotal()) >= N, 120_000);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);

    const counts = await t.readOutput();
    for (let n = 0; n < N; n++) expect(counts.has(n), `record ${n} lost`).toBe(true);
    // Only records written but not yet committed when the worker died can come out twice.
    expect(duplicatesOf(counts)).toBeLessThanOrEqual(writtenAtKill - committedAtKill);
  });

  it('(c) poison records go to the dead-letter topic with their coordinates while the rest flows', async () => {
    const t = await setup('poison', 3);
    const N = 5_000;
    const isPoison = (n: number) => n % 250 === 3;
    await t.send(0, N, isPoison);
    const w = t.start();
    await waitFor('the input committed', async () => (await t.committedTotal()) >= N, 60_000);
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);

    const poisoned = Array.from({ length: N }, (_, n) => n).filter(isPoison);
    const counts = await t.readOutput();
    expect(counts.size).toBe(N - poisoned.length);
    const dead = await readTopic(k.kafka, k.admin, `${t.output}.dlq`);
    expect(dead.map((d) => d.value).sort()).toEqual(poisoned.map((n) => `{"n": ${n}, broken`).sort());
    const inputs = new Map<string, string>();
    for (const m of await readTopic(k.kafka, k.admin, t.input))
      inputs.set(`${m.partition}/${m.offset}`, m.value);
    for (const d of dead) {
      const h = d.headers;
      expect(h['flotilla.reason']).toBe('decode');
      expect(h['flotilla.step']).toBe('decode');
      expect(h['flotilla.error']).toMatch(/JSON/);
      expect(h['flotilla.source.topic']).toBe(t.input);
      // The coordinates point at the very record that failed.
      expect(inputs.get(`${h['flotilla.source.partition']}/${h['flotilla.source.offset']}`)).toBe(d.value);
      expect(Date.parse(h['flotilla.time'] ?? '')).toBeGreaterThan(Date.now() - 600_000);
    }
  });

  it('(d) two workers share the partitions; when one leaves, the other takes over with no loss', async () => {
    const t = await setup('pair', 6);
    const a = t.start();
    const b = t.start();
    await Promise.all([waitForAssignment(a), waitForAssignment(b)]);
    await waitFor(
      'both workers to hold some partitions',
      () => ownedBy(a).size > 0 && ownedBy(b).size > 0 && ownedBy(a).size + ownedBy(b).size === 6,
      60_000,
    );
    expect([...ownedBy(a)].some((p) => ownedBy(b).has(p))).toBe(false);

    // Keep records flowing while worker a leaves the group.
    const N = 40_000;
    const producing = (async () => {
      for (let i = 0; i < 40; i++) {
        await t.send(i * 1000, 1000);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await waitFor('records flowing', async () => (await t.outputCount()) >= 5_000, 60_000);
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    await producing;
    await waitFor('worker b to take over every partition', () => ownedBy(b).size === 6, 60_000);
    await waitFor('everything committed', async () => (await t.committedTotal()) >= N, 120_000);

    const counts = await t.readOutput();
    for (let n = 0; n < N; n++) expect(counts.has(n), `record ${n} lost`).toBe(true);
  });

  it('(e) SIGTERM drains and commits: a restart re-delivers nothing that was acknowledged', async () => {
    const t = await setup('drain', 4);
    const N = 60_000;
    const first = t.start();
    await waitForAssignment(first);
    const producing = t.sendSlowly(N);
    await waitFor('some output', async () => (await t.outputCount()) >= 10_000, 60_000);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    // Everything the stopped worker wrote is committed.
    const written = await t.outputCount();
    expect(written).toBeLessThan(N);
    expect(await t.committedTotal()).toBe(written);
    await producing;

    const second = t.start();
    await waitForAssignment(second);
    await waitFor('the rest', async () => (await t.committedTotal()) >= N, 120_000);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    const counts = await t.readOutput();
    expect(counts.size).toBe(N);
    expect(duplicatesOf(counts)).toBe(0);
  });

  it('(g) serves /health, /ready and /metrics, and reloads a changed file on SIGHUP only when it is valid', async () => {
    const t = await setup('reload', 2, 3);
    const w = t.start({ FLOTILLA_HTTP_PORT: '0' });
    await waitForAssignment(w);
    const url = (
      JSON.parse(
        w
          .logs()
          .split('\n')
          .find((l) => l.includes('serving /metrics')) ?? '{}',
      ) as { url: string }
    ).url;
    expect((await fetch(`${url}/health`)).status).toBe(200);
    await waitFor('/ready', async () => (await fetch(`${url}/ready`)).status === 200, 30_000);

    await t.send(0, 100);
    await waitFor('the first records', async () => (await t.outputCount()) >= 100, 30_000);
    const metricsText = await (await fetch(`${url}/metrics`)).text();
    expect(metricsText).toMatch(/flotilla_step_records_in_total\{topology="reload",step="decode"\} 100/);
    expect(metricsText).toMatch(/flotilla_sink_records_total\{topology="reload",sink="kafka"\} 100/);

    // An invalid edit is refused and the running version keeps going.
    const valid = readFileSync(t.file, 'utf8');
    writeFileSync(t.file, valid.replace('kind: map', 'kind: mapp'));
    w.child.kill('SIGHUP');
    await waitFor('the refusal', () => w.logs().includes('reload refused'), 30_000);
    expect(w.logs()).toContain("unknown kind 'mapp'");
    // A valid edit replaces it: records after the reload are multiplied by 5, not 3.
    writeFileSync(t.file, valid.replace('value.n * 3', 'value.n * 5'));
    w.child.kill('SIGHUP');
    await waitFor('the new version', () => w.logs().includes('reload: new version running'), 60_000);
    await waitFor(
      'the new version to rejoin',
      () => w.logs().split('partitions assigned').length > 2,
      60_000,
    );
    await t.send(100, 100);
    await waitFor('records after the reload', async () => (await t.outputCount()) >= 200, 60_000);
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);

    const byN = new Map<number, number>();
    for (const m of await readTopic(k.kafka, k.admin, t.output)) {
      const v = JSON.parse(m.value) as { n: number; doubled: number };
      byN.set(v.n, v.doubled / v.n);
    }
    expect(byN.size).toBe(200);
    for (const [n, factor] of byN) if (n > 0) expect(factor).toBe(n < 100 ? 3 : 5);
  });
});

/** Partitions a worker holds now, from its latest 'partitions assigned' log line. */
function ownedBy(w: WorkerProcess): Set<number> {
  const lines = w
    .logs()
    .split('\n')
    .filter((l) => l.includes('partitions assigned'));
  const last = lines.at(-1);
  if (!last) return new Set();
  const { assignment } = JSON.parse(last) as { assignment: Record<string, number[]> };
  return new Set(Object.values(assignment).flat());
}
