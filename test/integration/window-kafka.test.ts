import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/sources/synthetic.js';
import {
  committedOffsets,
  createTopic,
  readTopic,
  unique,
  useKafka,
  waitForAssignment,
  writeTopology,
} from '../support/kafka.js';
import { waitFor } from '../support/wait.js';

const PARTITIONS = 4;
const KEYS = 400;
const PER_PARTITION = 50_000;
const SIZE = 60_000;
const GRACE = 10_000;
const T0 = Date.UTC(2026, 0, 1);

interface Input {
  k: string;
  ts: number;
  v: number;
}

/** Per partition, in order: keys live in one partition; event time wanders, a few records are very late. */
function inputs(seed: number): Input[][] {
  const rnd = seededRandom(seed);
  return Array.from({ length: PARTITIONS }, (_, p) =>
    Array.from({ length: PER_PARTITION }, (_, j) => {
      const k = `key-${p + PARTITIONS * Math.floor(rnd() * (KEYS / PARTITIONS))}`;
      const late = rnd() < 0.002 ? 120_000 : 0;
      return {
        k,
        ts: T0 + j * 100 + Math.floor(rnd() * 7000) - 5000 - late,
        v: Math.floor(rnd() * 1000) - 200,
      };
    }),
  );
}

interface Expected {
  count: number;
  total: number;
  low: number;
  high: number;
  mean: number;
}

/** The oracle: a batch group-by over the records the step must accept, of the windows it must close. */
function oracle(parts: Input[][]): { windows: Map<string, Expected>; late: number } {
  const windows = new Map<string, Expected & { end: number; partition: number }>();
  const watermarks: number[] = [];
  let late = 0;
  parts.forEach((records, p) => {
    let watermark = Number.NEGATIVE_INFINITY;
    for (const r of records) {
      const start = Math.floor(r.ts / SIZE) * SIZE;
      if (start + SIZE + GRACE <= watermark) {
        late++;
        continue;
      }
      const id = `${JSON.stringify([r.k])}/${start}/${start + SIZE}`;
      const w = windows.get(id) ?? {
        count: 0,
        total: 0,
        low: r.v,
        high: r.v,
        mean: 0,
        end: start + SIZE,
        partition: p,
      };
      w.count++;
      w.total += r.v;
      w.low = Math.min(w.low, r.v);
      w.high = Math.max(w.high, r.v);
      windows.set(id, w);
      watermark = Math.max(watermark, r.ts);
    }
    watermarks[p] = watermark;
  });
  const closed = new Map<string, Expected>();
  for (const [id, w] of windows) {
    if (w.end + GRACE > (watermarks[w.partition] ?? 0)) continue;
    closed.set(id, { count: w.count, total: w.total, low: w.low, high: w.high, mean: w.total / w.count });
  }
  return { windows: closed, late };
}

/**
 * Windows under failure on a real broker: workers SIGKILLed at random moments and restarted,
 * or joining and leaving the group; the results in the sink topic, deduplicated by id, must
 * equal the oracle exactly (the changelog restores state; re-emitted results reuse their ids).
 */
describe('window results on Kafka under failure', () => {
  const k = useKafka();

  async function setup(name: string, seed: number) {
    const input = unique(`${name}-in`);
    const output = unique(`${name}-out`);
    const group = unique(`${name}-group`);
    await createTopic(k.admin, input, PARTITIONS);
    const parts = inputs(seed);
    const producer = k.kafka.producer();
    await producer.connect();
    for (let p = 0; p < PARTITIONS; p++) {
      const records = parts[p] ?? [];
      for (let i = 0; i < records.length; i += 5000) {
        await producer.send({
          topic: input,
          acks: -1,
          messages: records
            .slice(i, i + 5000)
            .map((r) => ({ key: r.k, value: JSON.stringify(r), partition: p })),
        });
      }
    }
    await producer.disconnect();
    const file = writeTopology(`name: ${name}
group: ${group}
source:
  kind: kafka
  topics: [${input}]
  commit_interval_ms: 200
  heartbeat_interval_ms: 500
  session_timeout_ms: 10000
  max_inflight_records: 4000
steps:
  - { kind: decode, format: json }
  - kind: window
    type: tumbling
    size: 1m
    grace: 10s
    idle_timeout: 1h
    time: { field: ts }
    group_by: [k]
    aggregates:
      total: { op: sum, field: v }
      low: { op: min, field: v }
      high: { op: max, field: v }
      mean: { op: avg, field: v }
sinks:
  - { kind: kafka, topic: ${output} }
dead_letter: { topic: ${output}.dlq }
`);
    const start = () => k.startWorker(file);
    const committed = async () =>
      [...(await committedOffsets(k.admin, group, input)).values()].reduce((a, o) => a + Math.max(0, o), 0);
    const check = async () => {
      const expected = oracle(parts);
      const got = new Map<string, Expected>();
      for (const m of await readTopic(k.kafka, k.admin, output)) {
        const v = JSON.parse(m.value) as Expected;
        const id = (m.key ?? '').slice(`${name}/window/`.length);
        const previous = got.get(id);
        // A re-emitted result must be the same result.
        if (previous) expect(v).toMatchObject(previous);
        got.set(id, { count: v.count, total: v.total, low: v.low, high: v.high, mean: v.mean });
      }
      expect(got.size).toBe(expected.windows.size);
      for (const [id, w] of expected.windows) {
        const g = got.get(id);
        expect(g, `window ${id}`).toBeDefined();
        expect({ ...g, mean: undefined }).toEqual({ ...w, mean: undefined });
        expect(g?.mean).toBeCloseTo(w.mean, 9);
      }
      const dead = await readTopic(k.kafka, k.admin, `${output}.dlq`);
      const lateIds = new Set(
        dead.map((d) => `${d.headers['flotilla.source.partition']}/${d.headers['flotilla.source.offset']}`),
      );
      expect(lateIds.size).toBe(expected.late);
      expect(dead.every((d) => d.headers['flotilla.reason'] === 'late')).toBe(true);
    };
    return { start, committed, check };
  }

  const total = PARTITIONS * PER_PARTITION;

  it('equals the oracle after the worker is SIGKILLed at random moments and restarted', async () => {
    const t = await setup('winkill', 7);
    const rnd = seededRandom(99);
    const committedAtKills: number[] = [];
    for (let kill = 0; kill < 5; kill++) {
      const w = t.start();
      await waitForAssignment(w);
      await new Promise((r) => setTimeout(r, 200 + rnd() * 1200));
      w.child.kill('SIGKILL');
      await w.exited;
      committedAtKills.push(await t.committed());
    }
    // The kills hit mid-stream, not an idle worker.
    expect(committedAtKills.filter((c) => c < total).length).toBeGreaterThanOrEqual(3);
    const last = t.start();
    await waitForAssignment(last);
    await waitFor('every input record committed', async () => (await t.committed()) >= total, 240_000);
    last.child.kill('SIGTERM');
    expect(await last.exited).toBe(0);
    await t.check();
  }, 300_000);

  it('equals the oracle with a second worker joining and leaving mid-run', async () => {
    const t = await setup('winpair', 11);
    const a = t.start();
    await waitForAssignment(a);
    for (let round = 0; round < 2; round++) {
      const b = t.start();
      await waitForAssignment(b);
      await new Promise((r) => setTimeout(r, 1500));
      b.child.kill(round === 0 ? 'SIGTERM' : 'SIGKILL');
      await b.exited;
    }
    await waitFor('every input record committed', async () => (await t.committed()) >= total, 90_000).catch(
      (err: unknown) => {
        console.error(a.logs().split('\n').slice(-60).join('\n'));
        throw err;
      },
    );
    await new Promise((r) => setTimeout(r, 500));
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    await t.check();
  }, 300_000);
});
