import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { StepContext } from '../../src/core/component.js';
import { ComponentConfigError, ConfigError } from '../../src/core/errors.js';
import type { FlotillaRecord } from '../../src/core/record.js';
import { registry } from '../../src/observability/metrics.js';
import { buildParts } from '../../src/runtime/worker.js';
import { embeddedLog } from '../../src/sources/embedded-log.js';
import { loadTenantsFile, TenantBuckets, type TenantQuotas } from '../../src/tenancy/quota.js';
import { type QuotaClock, QuotaStep, quotaStepSchema } from '../../src/tenancy/quota-step.js';
import { loadTopology } from '../../src/topology/load.js';
import { runToEnd } from '../support/embedded.js';
import { repoRoot } from '../support/services.js';

const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-quota-'));

function tenantsFile(text: string, name = 'tenants.yaml'): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

const TENANTS = `default_tier: free
tiers:
  free: { records_per_second: 10, burst: 5 }
  standard:
    records_per_second: 100
tenants:
  acme: standard
  globex: free
`;

/** Time moves only when the step sleeps, or when the test says so. */
class FakeClock implements QuotaClock {
  t = 1_000;
  readonly slept: number[] = [];
  now() {
    return this.t;
  }
  sleep(ms: number) {
    this.slept.push(ms);
    this.t += ms;
    return Promise.resolve();
  }
}

let step = 0;
function quotaStep(config: Record<string, unknown>, quotas: TenantQuotas, clock: FakeClock) {
  const parsed = quotaStepSchema.parse({ kind: 'quota', tenants: 'unused', ...config });
  return new QuotaStep(`quota-${++step}`, parsed, quotas, 'quota-unit', clock);
}

const record = (i: number, tenant: unknown): FlotillaRecord => ({
  id: `r${i}`,
  key: null,
  value: { tenant, n: i },
  timestamp: 0,
  headers: {},
  source: { topic: 't', partition: 0, offset: String(i) },
});
const batch = (tenant: unknown, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => record(from + i, tenant));

async function run(s: QuotaStep, records: FlotillaRecord[]) {
  const dead: { id: string; reason: string; error: string }[] = [];
  const ctx: StepContext = {
    topic: 't',
    partition: 0,
    deadLetter: (r, reason, error) => dead.push({ id: r.id, reason, error: (error as Error).message }),
  };
  const passed = (await s.process(records, ctx)).map((r) => r.id);
  return { passed, dead };
}

const ids = (from: number, n: number) => Array.from({ length: n }, (_, i) => `r${from + i}`);

describe('tenants file', () => {
  it('loads the example file: tiers, tenants, the default tier, burst defaulting to one second of rate', () => {
    const quotas = loadTenantsFile(path.join(repoRoot, 'topologies/tenants.yaml'));
    expect(quotas.tierOf('acme')).toEqual({ name: 'enterprise', rate: 50_000, burst: 100_000 });
    expect(quotas.tierOf('someone_new').name).toBe('free');
    expect(quotas.tierOf('__proto__').name).toBe('free');
    const local = loadTenantsFile(tenantsFile(TENANTS));
    expect(local.tierOf('acme')).toEqual({ name: 'standard', rate: 100, burst: 100 });
  });

  const problems = (text: string) => {
    try {
      loadTenantsFile(tenantsFile(text, 'bad.yaml'));
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
    return '';
  };

  it('names the file, line and YAML path of every problem', () => {
    const message = problems(`default_tier: gold
tiers:
  free: { records_per_second: 10, rps: 5 }
  standard: { records_per_second: -1 }
tenants:
  acme: platinum
  Bad-Name: free
  ok_tenant: free
`);
    const file = path.join(dir, 'bad.yaml');
    expect(message.split('\n')).toEqual([
      `${file}:1:15: default_tier: unknown tier 'gold'; expected one of: free, standard`,
      `${file}:3:35: tiers.free.rps: unknown key 'rps'; expected one of: records_per_second, burst`,
      `${file}:4:35: tiers.standard.records_per_second: expected a number > 0, found number -1`,
      `${file}:6:9: tenants.acme: unknown tier 'platinum'; expected one of: free, standard`,
      `${file}:7:13: tenants.Bad-Name: "Bad-Name" is not a valid tenant name: it starts with "B"`,
    ]);
  });

  it('an unreadable file is a problem of the step option tenants, located in the topology', async () => {
    expect(() => loadTenantsFile(path.join(dir, 'missing.yaml'))).toThrow(ComponentConfigError);
    const topology = path.join(dir, 'topo.yaml');
    writeFileSync(
      topology,
      `name: quota-missing
source: { kind: embedded, topic: in-quota-missing }
steps:
  - kind: quota
    tenants: missing.yaml
sinks:
  - kind: discard
`,
    );
    await expect(buildParts(loadTopology(topology), pino({ level: 'silent' }))).rejects.toThrow(
      /topo\.yaml:5:\d+: steps\[0\]\.tenants: cannot read the tenants file .*missing\.yaml/,
    );
  });

  it('the step refuses max_delay with over_quota dead_letter', () => {
    const result = quotaStepSchema.safeParse({
      kind: 'quota',
      tenants: 't.yaml',
      over_quota: 'dead_letter',
      max_delay: '1s',
    });
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.path).toEqual(['max_delay']);
  });
});

describe('quota step, over_quota dead_letter', () => {
  it("passes a tenant's burst, dead-letters the rest with reason quota, refills with time", async () => {
    const clock = new FakeClock();
    const s = quotaStep({ over_quota: 'dead_letter' }, loadTenantsFile(tenantsFile(TENANTS)), clock);
    // globex is free: 10/s, burst 5.
    const first = await run(s, batch('globex', 0, 8));
    expect(first.passed).toEqual(ids(0, 5));
    expect(first.dead.map((d) => [d.id, d.reason])).toEqual([
      ['r5', 'quota'],
      ['r6', 'quota'],
      ['r7', 'quota'],
    ]);
    expect(first.dead[0]?.error).toBe("tenant 'globex' is over its quota (tier free: 10 records/s, burst 5)");
    expect(clock.slept).toEqual([]);

    clock.t += 250; // 2.5 tokens
    const second = await run(s, batch('globex', 10, 4));
    expect(second.passed).toEqual(ids(10, 2));
    clock.t += 10_000; // refills to burst, not beyond
    expect((await run(s, batch('globex', 20, 7))).passed).toEqual(ids(20, 5));
  });

  it('keeps tenants apart, and unknown tenants in the default tier', async () => {
    const clock = new FakeClock();
    const s = quotaStep({ over_quota: 'dead_letter' }, loadTenantsFile(tenantsFile(TENANTS)), clock);
    const mixed = [...batch('acme', 0, 50), ...batch('globex', 100, 6), ...batch('newcomer', 200, 6)];
    const { passed, dead } = await run(s, mixed);
    expect(passed).toEqual([...ids(0, 50), ...ids(100, 5), ...ids(200, 5)]);
    expect(dead.map((d) => d.id)).toEqual(['r105', 'r205']);
  });

  it('dead-letters records without a valid tenant with reason tenant', async () => {
    const clock = new FakeClock();
    const s = quotaStep({ over_quota: 'dead_letter' }, loadTenantsFile(tenantsFile(TENANTS)), clock);
    const { passed, dead } = await run(s, [
      record(1, 'a"; DROP TABLE x; --'),
      record(2, undefined),
      record(3, 'acme'),
    ]);
    expect(passed).toEqual(['r3']);
    expect(dead.map((d) => d.reason)).toEqual(['tenant', 'tenant']);
    expect(dead[0]?.error).toMatch(
      /tenant field 'tenant' "a\\"; DROP TABLE x; --" is not a valid tenant name/,
    );
    expect(dead[1]?.error).toMatch(/tenant field 'tenant' is missing or null/);
  });
});

describe('quota step, over_quota delay', () => {
  it('holds the batch once for the longest reservation; beyond max_delay it dead-letters', async () => {
    const clock = new FakeClock();
    const s = quotaStep({ max_delay: '300ms' }, loadTenantsFile(tenantsFile(TENANTS)), clock);
    // free: 10/s, burst 5: five at once, then one every 100 ms; the 9th would wait 400 ms.
    const { passed, dead } = await run(s, batch('globex', 0, 10));
    expect(passed).toEqual(ids(0, 8));
    expect(dead.map((d) => [d.id, d.reason])).toEqual([
      ['r8', 'quota'],
      ['r9', 'quota'],
    ]);
    expect(dead[0]?.error).toBe(
      "tenant 'globex' is over its quota (tier free: 10 records/s, burst 5): it would wait 400 ms, more than max_delay 300 ms",
    );
    expect(clock.slept).toEqual([300]);

    // The reserved tokens are spent: the next record waits for the next token.
    const next = await run(s, batch('globex', 20, 1));
    expect(next.passed).toEqual(['r20']);
    expect(clock.slept).toEqual([300, 100]);
  });

  it('does not hold a batch that is within quota (no promise, no timer)', () => {
    const clock = new FakeClock();
    const s = quotaStep({}, loadTenantsFile(tenantsFile(TENANTS)), clock);
    const out = s.process(batch('acme', 0, 100), { topic: 't', partition: 0, deadLetter: () => undefined });
    expect(Array.isArray(out)).toBe(true);
    expect(clock.slept).toEqual([]);
  });

  it('meets the rate over time: 10/s for 3 s of a flood passes burst + 30 records', async () => {
    const clock = new FakeClock();
    const s = quotaStep({ max_delay: '100ms' }, loadTenantsFile(tenantsFile(TENANTS)), clock);
    const start = clock.t;
    let passed = 0;
    for (let i = 0; clock.t - start < 3000; i++) {
      passed += (await run(s, batch('globex', i * 20, 20))).passed.length;
      clock.t += 50;
    }
    // 5 (burst) + 10/s × 3 s, within one batch's reservation of the window's end.
    expect(passed).toBeGreaterThanOrEqual(35);
    expect(passed).toBeLessThanOrEqual(37);
  });
});

describe('quota metrics', () => {
  it('counts by tenant, tier and outcome, with bounded tenant labels', async () => {
    const clock = new FakeClock();
    const s = quotaStep(
      { over_quota: 'dead_letter', max_tenant_labels: 2 },
      loadTenantsFile(tenantsFile(TENANTS)),
      clock,
    );
    await run(s, [
      ...batch('globex', 0, 7),
      ...batch('acme', 10, 1),
      ...batch('third', 20, 1),
      record(30, 5),
    ]);
    const text = await registry.getSingleMetricAsString('flotilla_quota_records_total');
    const line = (labels: string) =>
      text.split('\n').find((l) => l.includes(`step="${s.name}"`) && l.includes(labels));
    expect(line('tenant="globex",tier="free",outcome="passed"')).toMatch(/ 5$/);
    expect(line('tenant="globex",tier="free",outcome="dead_lettered"')).toMatch(/ 2$/);
    expect(line('tenant="acme",tier="standard",outcome="passed"')).toMatch(/ 1$/);
    // A third tenant is past max_tenant_labels: other.
    expect(line('tenant="other",tier="free",outcome="passed"')).toMatch(/ 1$/);
    expect(line('tenant="none",tier="none",outcome="invalid_tenant"')).toMatch(/ 1$/);
  });
});

describe('TenantBuckets', () => {
  it('forgets full buckets when there are many, keeps those in debt', () => {
    const buckets = new TenantBuckets();
    const tier = { name: 'free', rate: 1, burst: 1 };
    for (let i = 0; i < 10_001; i++) {
      buckets.waitFor(`t${i}`, tier, 0);
      buckets.take(`t${i}`);
    }
    for (let i = 0; i < 30; i++) {
      buckets.waitFor('busy', tier, 0);
      buckets.take('busy');
    }
    buckets.sweep(10_000, () => tier);
    expect(buckets.size).toBe(1);
    // 30 taken at rate 1/s: the next token is 20 s after the sweep.
    expect(buckets.waitFor('busy', tier, 10_000)).toBe(20_000);
  });
});

describe('quota step in a topology', () => {
  it('passes what the quota allows to the sink; dead letters carry reasons quota and tenant', async () => {
    tenantsFile(TENANTS, 'run-tenants.yaml');
    const topology = path.join(dir, 'quota-run.yaml');
    writeFileSync(
      topology,
      `name: quota-run
source: { kind: embedded, topic: in-quota-run, partitions: 1 }
steps:
  - { kind: decode, format: json }
  - { kind: quota, tenants: run-tenants.yaml, over_quota: dead_letter }
sinks:
  - { kind: file, path: quota-out.jsonl }
dead_letter: { topic: quota-run.dlq }
`,
    );
    const values = [
      ...Array.from({ length: 8 }, (_, i) => ({ tenant: 'globex', n: i })),
      ...Array.from({ length: 3 }, (_, i) => ({ tenant: 'acme', n: 100 + i })),
      { tenant: '../x', n: 999 },
    ];
    await runToEnd(topology, () => {
      for (const v of values)
        embeddedLog.append('in-quota-run', { key: null, value: Buffer.from(JSON.stringify(v)) });
    });

    const out = readFileSync(path.join(dir, 'quota-out.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).n);
    // globex is free (burst 5); acme standard (burst 100).
    expect(out).toEqual([0, 1, 2, 3, 4, 100, 101, 102]);
    const dead = embeddedLog.read('quota-run.dlq', 0, 0, 10);
    expect(dead.map((d) => [JSON.parse(d.value.toString()).n, d.headers['flotilla.reason']])).toEqual([
      [5, 'quota'],
      [6, 'quota'],
      [7, 'quota'],
      [999, 'tenant'],
    ]);
    expect(dead[0]?.headers['flotilla.step']).toBe('quota');
  });
});
