import { describe, expect, it } from 'vitest';
import {
  committedOffsets,
  createTopic,
  produce,
  readTopic,
  unique,
  useKafka,
  writeTopology,
} from '../support/kafka.js';
import { waitFor } from '../support/wait.js';

const PARTITIONS = 3;
const N = 4000;
const T0 = Date.UTC(2026, 0, 1);

/** What the quality step must do with a record: the rules it fails, in rule order, and why. */
type Fate = { kind: 'pass' } | { kind: 'tag' } | { kind: 'dead'; error: string } | { kind: 'duplicate' };

interface Input {
  n: number;
  value: Record<string, unknown>;
  fate: Fate;
}

/**
 * Metrics readings, four in 50 failing rules in known ways, one in 50 tagged; every 100th good
 * reading is sent twice (the second is dropped as a duplicate). Keyed by series, so a duplicate
 * lands in the partition of its original.
 */
function inputs(): Input[] {
  const out: Input[] = [];
  for (let n = 0; n < N; n++) {
    const value: Record<string, unknown> = {
      n,
      ts: T0 + n * 1000,
      tenant: `t${n % 3}`,
      host: `host-${n % 40}`,
      metric: n % 2 ? 'cpu' : 'memory',
      value: n % 90,
    };
    let fate: Fate = { kind: 'pass' };
    switch (n % 50) {
      case 3:
        Object.assign(value, { metric: 'cpu', value: 150 });
        fate = { kind: 'dead', error: 'failed quality rules: cpu_range (value: 150 is above max 100)' };
        break;
      case 11:
        delete value.host;
        fate = {
          kind: 'dead',
          error: 'failed quality rules: required:ts,tenant,host,metric,value (missing host)',
        };
        break;
      case 19:
        value.metric = 'gpu';
        fate = { kind: 'dead', error: 'failed quality rules: enum:metric (' };
        break;
      case 27:
        Object.assign(value, { metric: 'cpu', value: '12' });
        fate = {
          kind: 'dead',
          error:
            "failed quality rules: type:value (value: expected number, found '12'); cpu_range (value: expected a number, found '12')",
        };
        break;
      case 35:
        value.host = 'HOST_X';
        fate = { kind: 'tag' };
        break;
    }
    out.push({ n, value, fate });
    // Sent again right after (dedupe works within a TTL of event time): dropped.
    if (n % 100 === 42) out.push({ n, value, fate: { kind: 'duplicate' } });
  }
  return out;
}

/**
 * Records that fail quality rules on a real broker, with a worker as a child process
 * (`flotilla run`): those whose failed rules say dead_letter land in the dead-letter topic with
 * the rules and reasons in their headers, the rest flow on (tagged ones carrying their
 * verdict), duplicates are dropped, the per-rule counters count, and every offset commits.
 */
describe('the quality step on Kafka', () => {
  const k = useKafka();

  it('dead-letters records with their failed rules while the rest flow on', async () => {
    const input = unique('quality-in');
    const output = unique('quality-out');
    const deadLetters = `${output}.dlq`;
    const group = unique('quality-group');
    await createTopic(k.admin, input, PARTITIONS);
    await createTopic(k.admin, output, PARTITIONS);
    const records = inputs();
    await produce(
      k.kafka,
      input,
      records.map((r) => ({ key: `series-${r.n % 40}`, value: JSON.stringify(r.value) })),
    );
    const file = writeTopology(`name: quality-it
group: ${group}
source:
  kind: kafka
  topics: [${input}]
  commit_interval_ms: 200
steps:
  - { kind: decode, format: json }
  - name: checks
    kind: quality
    event_time: ts
    rules:
      - { kind: required, fields: [ts, tenant, host, metric, value] }
      - { kind: type, field: value, type: number }
      - { kind: range, name: cpu_range, field: value, min: 0, max: 100, when: "value.metric == 'cpu'" }
      - { kind: enum, field: metric, values: [cpu, memory] }
      - { kind: pattern, name: host_name, field: host, regex: '^host-\\d+$', action: tag }
      - { kind: dedupe, key: [tenant, host, metric, ts], ttl: 10m, action: drop }
sinks:
  - { kind: kafka, topic: ${output} }
dead_letter: { topic: ${deadLetters} }
`);
    const worker = k.startWorker(file, { FLOTILLA_HTTP_PORT: '0' });
    const expectedOut = records.filter((r) => r.fate.kind === 'pass' || r.fate.kind === 'tag');
    const expectedDead = records.filter((r) => r.fate.kind === 'dead');
    const count = async (topic: string) =>
      (await k.admin.listTopics()).includes(topic)
        ? (await k.admin.fetchTopicOffsets(topic)).reduce((sum, p) => sum + Number(p.high), 0)
        : 0;
    const committed = async () =>
      [...(await committedOffsets(k.admin, group, input)).values()].reduce((a, o) => a + Math.max(0, o), 0);
    await waitFor('every input record committed', async () => (await committed()) === records.length, 90_000);

    // The per-rule counters, from the worker's /metrics.
    const url = /"url":"([^"]+)"/.exec(worker.logs())?.[1];
    expect(url, 'the worker logs the address of its endpoints').toBeDefined();
    const metrics = await (await fetch(`${url}/metrics`)).text();
    /** A counter summed over the series (tenants) whose labels include `label`. */
    const total = (name: string, label: string) =>
      [...metrics.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\d+)$`, 'gm'))]
        .filter(([, labels]) => labels?.includes(label) && labels.includes('step="checks"'))
        .reduce((sum, [, , n]) => sum + Number(n), 0);
    const failures = (rule: string) => total('flotilla_quality_rule_failures_total', `rule="${rule}"`);
    expect(failures('cpu_range')).toBe(2 * (N / 50));
    expect(failures('required:ts,tenant,host,metric,value')).toBe(N / 50);
    expect(failures('enum:metric')).toBe(N / 50);
    expect(failures('type:value')).toBe(N / 50);
    expect(failures('host_name')).toBe(N / 50);
    expect(total('flotilla_quality_records_total', 'outcome="dropped"')).toBe(N / 100);
    expect(total('flotilla_quality_records_total', 'outcome="dead_lettered"')).toBe(expectedDead.length);

    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    expect(await count(output)).toBe(expectedOut.length);
    expect(await count(deadLetters)).toBe(expectedDead.length);

    // Dead letters: the original value, the failed rules and why, the source coordinates.
    const dead = await readTopic(k.kafka, k.admin, deadLetters);
    const deadByN = new Map(dead.map((m) => [(JSON.parse(m.value) as { n: number }).n, m]));
    for (const r of expectedDead) {
      const m = deadByN.get(r.n);
      expect(m, `record ${r.n} in the dead-letter topic`).toBeDefined();
      expect(JSON.parse(m?.value ?? 'null')).toEqual(r.value);
      expect(m?.headers['flotilla.reason']).toBe('quality');
      expect(m?.headers['flotilla.step']).toBe('checks');
      expect(m?.headers['flotilla.source.topic']).toBe(input);
      expect(m?.headers['flotilla.error']).toContain((r.fate as { error: string }).error);
    }

    // The rest: once each, duplicates dropped, tagged records carrying their verdict.
    const out = await readTopic(k.kafka, k.admin, output);
    const outByN = new Map<number, Record<string, unknown>>();
    for (const m of out) {
      const v = JSON.parse(m.value) as Record<string, unknown>;
      expect(outByN.has(v.n as number), `record ${v.n} written once`).toBe(false);
      outByN.set(v.n as number, v);
    }
    for (const r of expectedOut) {
      const v = outByN.get(r.n);
      if (r.fate.kind === 'tag') {
        expect(v).toEqual({ ...r.value, _quality: { passed: false, failed: ['host_name'], score: 5 / 6 } });
      } else expect(v).toEqual(r.value);
    }
  });
});
