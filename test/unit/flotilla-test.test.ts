import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { test as testCommand } from '../../src/cli/test.js';
import { ConfigError } from '../../src/core/errors.js';
import { formatResult, runFixture } from '../../src/testing/driver.js';

const topologies = path.resolve('topologies');
const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-fixture-'));
/** Every fixture shipped under topologies/, as paths relative to it. */
const shippedFixtures = readdirSync(topologies, { recursive: true, encoding: 'utf8' })
  .filter((f) => /\.test\.ya?ml$/.test(f))
  .sort();

/** A copy of a shipped fixture in a temp folder (paths made absolute), with `edit` applied to its text. */
function copyFixture(name: string, edit: (text: string) => string): string {
  const text = readFileSync(path.join(topologies, name), 'utf8')
    .replace(/^topology: (.*)$/m, (_, t: string) => `topology: ${path.join(topologies, t)}`)
    .replaceAll('../schemas/', `${path.resolve('schemas')}/`);
  const file = path.join(dir, `${Math.random().toString(36).slice(2)}-${name}`);
  writeFileSync(file, edit(text));
  return file;
}

/** Runs the CLI verb with its options, capturing what it prints. */
async function runCli(
  args: string[],
  values: { update?: boolean; profile?: boolean } = {},
): Promise<{ code: number; out: string }> {
  let out = '';
  const capture = (...parts: unknown[]) => {
    out += `${parts.join(' ')}\n`;
  };
  vi.spyOn(console, 'log').mockImplementation(capture);
  vi.spyOn(console, 'error').mockImplementation(capture);
  const code = await testCommand.run({ positionals: args, values });
  return { code, out };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('flotilla test', () => {
  it('finds the shipped fixtures, windows with late records among them', () => {
    expect(shippedFixtures).toEqual(
      expect.arrayContaining([
        'events.test.yaml',
        'metrics.test.yaml',
        'metrics-quality.test.yaml',
        'windows-session.test.yaml',
        'windows-sliding.test.yaml',
        'windows-tumbling.test.yaml',
      ]),
    );
  });

  it.each(shippedFixtures)('passes on the shipped fixture %s', async (name) => {
    const result = await runFixture(path.join(topologies, name));
    expect(result.mismatches, formatResult(result)).toEqual([]);
  });

  it.each([
    ['windows-tumbling.test.yaml', 1],
    ['windows-sliding.test.yaml', 1],
    ['windows-session.test.yaml', 1],
  ])('%s dead-letters %i late record(s) with reason late', async (name, late) => {
    const result = await runFixture(path.join(topologies, name));
    expect(result.deadLetters.filter((d) => d.reason === 'late')).toHaveLength(late);
  });

  it('passes on the shipped metrics fixture: Avro in, poison records dead-lettered by decode', async () => {
    const result = await runFixture(path.join(topologies, 'metrics.test.yaml'));
    expect(result.mismatches).toEqual([]);
    expect(result.passed).toBe(true);
    expect(result.sinks.get('clean')?.map((r) => r.input)).toEqual([0, 1, 2, 5, 9]);
    expect(result.deadLetters.map((d) => [d.input, d.step, d.reason])).toEqual([
      [4, 'decode', 'decode'],
      [6, 'decode', 'decode'],
      [8, 'decode', 'decode'],
    ]);
    expect(formatResult(result)).toMatch(
      /^PASS .*metrics\.test\.yaml: 10 records in, 5 out to clean, 3 dead-lettered; all expected$/,
    );
  });

  it('passes on the shipped events fixture (JSON, a code step, a filter)', async () => {
    const { code, out } = await runCli([path.join(topologies, 'events.yaml')]);
    expect(out).toMatch(
      /PASS .*events\.test\.yaml: 9 records in, 4 out to plays, 4 dead-lettered; all expected/,
    );
    expect(code).toBe(0);
  });

  it('--profile prints the field profile of each quality step after its run', async () => {
    const { code, out } = await runCli([path.join(topologies, 'metrics-quality.test.yaml')], {
      profile: true,
    });
    expect(code).toBe(0);
    expect(out).toContain('PASS topologies/metrics-quality.test.yaml: 17 records in');
    expect(out).toContain("profile of step 'checks' (17 records):");
    expect(out).toMatch(/^ {2}field +null +types +min +max +mean +distinct$/m);
    expect(out).toMatch(/^ {2}host +5\.9% +string 100% +- +- +- +~1$/m);
    expect(out).toMatch(/^ {2}value +0% +number 94\.1%, string 5\.9% +37 +150 +54\.063 +~11$/m);
    // Without the flag, no profile.
    expect((await runCli([path.join(topologies, 'metrics-quality.test.yaml')])).out).not.toContain('profile');
  });

  it('reports a mismatch by sink, record index and field, with exit status 1', async () => {
    const file = copyFixture('metrics.test.yaml', (text) => {
      const [head, expect] = text.split('\nexpect:');
      return `${head}\nexpect:${(expect ?? '')
        .replace('value: 42.46', 'value: 42.5')
        .replace('rack: r12', 'rack: r13')
        .replace('    - input: 6\n      step: decode', '    - input: 6\n      step: reshape')}`;
    });
    const { code, out } = await runCli([file]);
    expect(code).toBe(1);
    expect(out).toContain(
      "sink 'clean' record 0 (from input[0]):\n    value.value: expected 42.5, actual 42.46",
    );
    expect(out).toContain(
      "sink 'clean' record 1 (from input[1]):\n    value.labels.rack: expected 'r13', actual 'r12'",
    );
    expect(out).toContain(
      "dead_letter record 1 (from input[6]):\n    step: expected 'reshape', actual 'decode'",
    );
    expect(out).toMatch(/10 records in, 5 out to clean, 3 dead-lettered; 3 differences/);
  });

  it('reports missing and extra records', async () => {
    const file = copyFixture('events.test.yaml', (text) =>
      text
        // One expected play too many, and one dead letter fewer than happen.
        .replace('  dead_letter:\n', '    - { key: late, value: { at: 1 } }\n  dead_letter:\n')
        .replace(/ {4}- input: 8\n(?: {6}.*\n)+$/, ''),
    );
    const result = await runFixture(file);
    expect(result.passed).toBe(false);
    const report = formatResult(result);
    expect(report).toContain(`sink 'plays' record 4: missing; expected {"key":"late","value":{"at":1}}`);
    expect(report).toMatch(
      /dead_letter record 3 \(from input\[8\]\): extra; actual \{"input":8,"step":"check"/,
    );
  });

  it('--update writes the actual outputs as the expectation, keeping the inputs and comments', async () => {
    const file = copyFixture('events.test.yaml', (text) => `${text.split('\nexpect:')[0]}\n`);
    expect((await runFixture(file)).passed).toBe(false);
    const { code, out } = await runCli([file], { update: true });
    expect(code).toBe(0);
    expect(out).toMatch(/updated .*: 9 records in, 4 out to plays, 4 dead-lettered/);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('# Poison: broken JSON, dead-lettered by `decode`.');
    expect(text).toContain('expect:\n  plays:\n');
    expect((await runFixture(file)).passed).toBe(true);
  });

  it('refuses a fixture whose records are ambiguous or whose expectations name no sink', async () => {
    const ambiguous = copyFixture('events.test.yaml', (text) =>
      text.replace('raw: \'{"ts"', 'value: 1\n    raw: \'{"ts"'),
    );
    await expect(runFixture(ambiguous)).rejects.toThrow(
      /input\[3\]: give exactly one of value, raw, hex \(found value, raw\)/,
    );
    const unknownSink = copyFixture('events.test.yaml', (text) =>
      text.replace('expect:\n  plays:', 'expect:\n  play:'),
    );
    const err = await runFixture(unknownSink).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(
      /expect\.play: the topology has no sink 'play' \(sinks: plays; and dead_letter\)/,
    );
  });

  it('puts input records on the partition they name and reads the source topic from the topology', async () => {
    const topology = path.join(dir, 'partitioned.yaml');
    writeFileSync(
      topology,
      `name: partitioned
source: { kind: embedded, topic: in-partitioned }
steps: [{ kind: decode, format: json }]
sinks: [{ kind: stdout, name: out }]
`,
    );
    const fixture = path.join(dir, 'partitioned.test.yaml');
    writeFileSync(
      fixture,
      `topology: partitioned.yaml
input:
  - { partition: 2, value: { n: 1 } }
  - { partition: 0, value: { n: 2 } }
  - { partition: 2, value: { n: 3 }, timestamp: '2026-02-01T00:00:00Z' }
expect:
  out: [{ value: { n: 2 } }, { value: { n: 1 } }, { value: { n: 3 } }]
`,
    );
    const result = await runFixture(fixture);
    expect(result.mismatches).toEqual([]);
    expect(result.sinks.get('out')?.map((r) => r.input)).toEqual([1, 0, 2]);
  });
});
