import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  brokers,
  committedOffsets,
  createTopic,
  produce,
  readTopic,
  unique,
  useKafka,
  waitForAssignment,
  writeTopology,
} from '../support/kafka.js';
import { repoRoot } from '../support/services.js';
import { waitFor } from '../support/wait.js';

/** Input records are 10 ms apart from BASE; record n goes to partition n % 3. */
const PARTITIONS = 3;
const N = 3000;
const STEP_MS = 10;
/** Every 100th record (n % 100 == 7) is not JSON: dead-lettered by decode. */
const isPoison = (n: number) => n % 100 === 7;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `flotilla ARGS` from the TypeScript sources. */
function flotilla(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(repoRoot, 'src/cli/main.ts'), ...args],
      { cwd: repoRoot, env: { ...process.env, KAFKA_BROKERS: brokers(), FLOTILLA_LOG_FORMAT: 'json' } },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

interface ReplaySummary {
  group: string;
  total: number;
  records: number;
  deadLettered: number;
  interrupted: boolean;
}

async function replayCli(args: string[]): Promise<ReplaySummary> {
  const r = await flotilla(['replay', ...args, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as ReplaySummary;
}

describe('flotilla replay on Kafka', () => {
  const k = useKafka();
  // An hour ago, so the range is in the past and far from retention limits.
  const BASE = Math.floor((Date.now() - 3_600_000) / 1000) * 1000;
  const at = (n: number) => BASE + n * STEP_MS;
  const iso = (ms: number) => new Date(ms).toISOString();

  /** Steps of the topology: decode, then each record n → { n, scaled: n × factor }. */
  const scaling = (factor: number) =>
    `  - { kind: map, value: "{ n: value.n, scaled: value.n * ${factor} }" }`;

  /**
   * Fresh topics with N records at known timestamps (also their event time `ts`; `g` is their
   * partition), and a decode → steps → kafka topology over them.
   */
  async function setup(name: string, steps: (factor: number) => string = scaling) {
    const input = unique(`replay-${name}-in`);
    const output = unique(`replay-${name}-out`);
    await createTopic(k.admin, input, PARTITIONS);
    await createTopic(k.admin, output, 2);
    const yaml = (factor: number) => `name: replay-${name}
group: ${unique(`replay-${name}-live`)}
source:
  kind: kafka
  topics: [${input}]
  commit_interval_ms: 200
steps:
  - { kind: decode, format: json }
${steps(factor)}
sinks:
  - { kind: kafka, topic: ${output} }
dead_letter: { topic: ${output}.dlq }
`;
    const file = writeTopology(yaml(2));
    await produce(
      k.kafka,
      input,
      Array.from({ length: N }, (_, n) => ({
        partition: n % PARTITIONS,
        key: `k${n}`,
        timestamp: String(at(n)),
        value: isPoison(n) ? `{"n": ${n}, broken` : JSON.stringify({ n, ts: at(n), g: n % PARTITIONS }),
      })),
    );
    /** Output by id: the latest value (what an upserting reader keeps), and how many messages there are. */
    const readLatest = async (topic = output) => {
      const latest = new Map<string, { n: number; scaled: number } & Record<string, unknown>>();
      const messages = await readTopic(k.kafka, k.admin, topic);
      for (const m of messages) latest.set(m.headers['flotilla.id'] ?? '', JSON.parse(m.value));
      return { latest, messages: messages.length };
    };
    /** The id of input record n: its (topic, partition, offset), read back from the input. */
    const inputIds = async () => {
      const ids = new Map<number, string>();
      for (const m of await readTopic(k.kafka, k.admin, input)) {
        const n = Number(/"n": ?(\d+)/.exec(m.value)?.[1]);
        ids.set(n, `${input}/${m.partition}/${m.offset}`);
      }
      return ids;
    };
    const setFactor = (factor: number) => writeFileSync(file, yaml(factor));
    return { input, output, file, readLatest, inputIds, setFactor };
  }

  const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
  const good = (ns: number[]) => ns.filter((n) => !isPoison(n));

  it('replays exactly the records in [from, to), and a second run leaves the same output', async () => {
    const t = await setup('range');
    const args = [t.file, '--from', iso(at(1000)), '--to', iso(at(2000))];
    const first = await replayCli(args);
    expect(first).toMatchObject({ total: 1000, records: 1000, deadLettered: 10, interrupted: false });
    expect(first.group).toMatch(/^replay-range-live-.*\.replay\.\d{8}T\d{6}Z-\d{8}T\d{6}(_\d+)?Z$/);

    const ids = await t.inputIds();
    const once = await t.readLatest();
    const expected = good(range(1000, 2000));
    expect(once.messages).toBe(expected.length);
    expect([...once.latest.keys()].sort()).toEqual(expected.map((n) => ids.get(n)).sort());
    for (const [id, v] of once.latest) {
      expect(ids.get(v.n)).toBe(id);
      expect(v.scaled).toBe(v.n * 2);
    }
    // The replay group is committed at the stop offsets: record 2000's offset in each partition.
    const committed = await committedOffsets(k.admin, first.group, t.input);
    for (let p = 0; p < PARTITIONS; p++) {
      const firstOutOfRange = range(2000, 2003).find((n) => n % PARTITIONS === p) as number;
      expect(committed.get(p)).toBe(Number(ids.get(firstOutOfRange)?.split('/').at(-1)));
    }

    // Same range again: the group starts over at --from (not at its commits), ids and values are unchanged.
    const second = await replayCli(args);
    expect(second).toMatchObject({ group: first.group, total: 1000, records: 1000, deadLettered: 10 });
    const twice = await t.readLatest();
    expect(twice.messages).toBe(2 * expected.length);
    expect(twice.latest).toEqual(once.latest);
    const dead = await readTopic(k.kafka, k.admin, `${t.output}.dlq`);
    expect(new Set(dead.map((d) => d.headers['flotilla.source.offset'])).size).toBe(10);
  });

  it('without --to, stops at the end offsets captured at the start while a producer keeps writing', async () => {
    const t = await setup('open');
    let producing = true;
    let written = N;
    const producer = (async () => {
      while (producing) {
        await produce(
          k.kafka,
          t.input,
          Array.from({ length: 300 }, (_, i) => ({
            partition: i % PARTITIONS,
            value: JSON.stringify({ n: written + i }),
          })),
        );
        written += 300;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await waitFor('the producer to be writing', () => written > N, 30_000);
    const summary = await replayCli([t.file, '--from', iso(at(1500))]);
    const writtenWhenDone = written;
    producing = false;
    await producer;

    // The range closed at the start: at least the pre-produced records, fewer than were finally written.
    expect(summary.total).toBeGreaterThanOrEqual(N - 1500);
    expect(summary.records).toBe(summary.total);
    expect(summary.total).toBeLessThan(writtenWhenDone - 1500);
    const { latest } = await t.readLatest();
    const outputs = [...latest.values()].map((v) => v.n);
    const poisonInRange = range(1500, N).filter(isPoison).length;
    expect(latest.size).toBe(summary.total - poisonInRange);
    expect(Math.min(...outputs)).toBe(1500);
    const ids = await t.inputIds();
    for (const n of good(range(1500, N))) expect(latest.has(ids.get(n) as string)).toBe(true);
    // Nothing past a partition's captured end: every output offset is below its stop offset.
    const committed = await committedOffsets(k.admin, summary.group, t.input);
    for (const id of latest.keys()) {
      const [p, offset] = id.split('/').slice(-2).map(Number) as [number, number];
      expect(offset).toBeLessThan(committed.get(p) as number);
    }
  });

  it('--into writes to shadow topics while the live worker runs; diff finds no difference, then the changed ones', async () => {
    const t = await setup('shadow');
    const live = k.startWorker(t.file);
    await waitForAssignment(live);
    const goodCount = good(range(0, N)).length;
    await waitFor(
      'the live worker to write everything',
      async () => (await t.readLatest()).latest.size >= goodCount,
      60_000,
    );

    const window = ['--from', iso(at(1000)), '--to', iso(at(2000))];
    const summary = await replayCli([t.file, ...window, '--into', 'shadow']);
    expect(summary.records).toBe(1000);
    const shadow = await t.readLatest(`${t.output}.shadow`);
    expect(shadow.latest.size).toBe(good(range(1000, 2000)).length);
    // The live topic got nothing from the replay; its dead letters went to the shadow dead-letter topic.
    expect((await t.readLatest()).messages).toBe(goodCount);
    expect((await readTopic(k.kafka, k.admin, `${t.output}.dlq.shadow`)).length).toBe(10);

    const same = await flotilla(['replay', 'diff', t.file, '--into', 'shadow', ...window, '--json']);
    expect(same.code, same.stderr).toBe(0);
    const [d] = JSON.parse(same.stdout) as { liveIds: number; shadowIds: number; missing: number }[];
    expect(d).toMatchObject({ liveIds: 990, shadowIds: 990, missing: 0, extra: 0, different: 0 });

    // Without the time filter, the live topic has ids the shadow range never covered.
    const wider = await flotilla(['replay', 'diff', t.file, '--into', 'shadow', '--json']);
    expect(wider.code).toBe(1);
    expect(JSON.parse(wider.stdout)[0]).toMatchObject({ missing: goodCount - 990, extra: 0, different: 0 });

    // A changed topology replayed into the shadow: every value in the range differs.
    t.setFactor(3);
    await replayCli([t.file, ...window, '--into', 'shadow']);
    const changed = await flotilla([
      'replay',
      'diff',
      t.file,
      '--into',
      'shadow',
      ...window,
      '--examples',
      '2',
    ]);
    expect(changed.code).toBe(1);
    expect(changed.stdout).toContain(
      `${t.output} ↔ ${t.output}.shadow: 990 ids live, 990 shadow; missing 0, extra 0, different 990`,
    );
    const example = /different +(\S+)\n +live: +(.*)\n +shadow: +(.*)/.exec(changed.stdout);
    expect(example).not.toBeNull();
    const [liveValue, shadowValue] = [JSON.parse(example?.[2] ?? ''), JSON.parse(example?.[3] ?? '')];
    expect(shadowValue.n).toBe(liveValue.n);
    expect([liveValue.scaled, shadowValue.scaled]).toEqual([liveValue.n * 2, liveValue.n * 3]);
  });

  it('windows replayed over a window-aligned range equal the live ones', async () => {
    const t = await setup(
      'windows',
      () =>
        '  - { kind: window, type: tumbling, size: 1s, time: { field: ts }, group_by: [g], aggregates: { total: { op: sum, field: n } } }',
    );
    const live = k.startWorker(t.file);
    await waitForAssignment(live);
    // Records are 10 ms apart: second k of the input holds records 100k..100k+99; the last
    // windows stay open (nothing later moves the watermark past them).
    const closedLive = (N * STEP_MS) / 1000 - 1;
    await waitFor(
      'the live windows',
      async () => (await t.readLatest()).latest.size >= closedLive * PARTITIONS,
      60_000,
    );
    const window = ['--from', iso(at(1000)), '--to', iso(at(2000))];
    await replayCli([t.file, ...window, '--into', 'shadow']);

    const windowsOf = (latest: Map<string, Record<string, unknown>>, from: number, to: number) =>
      new Map(
        [...latest].filter(([, v]) => (v.window_start as number) >= from && (v.window_end as number) <= to),
      );
    const shadow = (await t.readLatest(`${t.output}.shadow`)).latest;
    const liveResults = (await t.readLatest()).latest;
    // The replay stops at --to, so its last window never closes: 9 windows of 3 keys.
    expect(shadow.size).toBe(9 * PARTITIONS);
    expect(windowsOf(shadow, at(1000), at(1900))).toEqual(shadow);
    expect(shadow).toEqual(windowsOf(liveResults, at(1000), at(1900)));
    // And each equals the oracle: the good records of its second and key.
    for (const v of shadow.values()) {
      const first = ((v.window_start as number) - BASE) / STEP_MS;
      const ns = good(range(first, first + 100)).filter((n) => n % PARTITIONS === (v.key as { g: number }).g);
      expect(v).toMatchObject({ count: ns.length, total: ns.reduce((a, b) => a + b, 0) });
    }
  });

  it('refuses a topology whose source is not Kafka, and a range that ends before it starts', async () => {
    const demo = await flotilla(['replay', path.join(repoRoot, 'topologies/demo.yaml'), '--from', iso(BASE)]);
    expect(demo.code).toBe(1);
    expect(demo.stderr).toContain('replay reads Kafka topics, but');
    expect(demo.stderr).toContain("has a 'generator' source");
    const events = path.join(repoRoot, 'topologies/events.yaml');
    const backwards = await flotilla(['replay', events, '--from', iso(BASE), '--to', iso(BASE - 1)]);
    expect(backwards.code).toBe(1);
    expect(backwards.stderr).toContain('--to must be later than --from');
  });
});
