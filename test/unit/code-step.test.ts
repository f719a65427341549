import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { ComponentContext, StepContext } from '../../src/core/component.js';
import { ConfigError } from '../../src/core/errors.js';
import type { FlotillaRecord } from '../../src/core/record.js';
import { CodeModuleError, codeStep, codeStepSchema } from '../../src/steps/code.js';
import { runFixture } from '../../src/testing/driver.js';
import checkListeningEvents from '../../topologies/transforms/listening-events.js';

const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-code-'));
const ctx: ComponentContext = {
  topology: 'code-test',
  group: 'flotilla-code-test',
  baseDir: dir,
  logger: pino({ level: 'silent' }),
};

function records(values: unknown[]): FlotillaRecord[] {
  return values.map((value, i) => ({
    id: `in/0/${i}`,
    key: `k${i}`,
    value,
    timestamp: 0,
    headers: {},
    source: { topic: 'in', partition: 0, offset: String(i) },
  }));
}

function stepContext() {
  const dead: { record: FlotillaRecord; reason: string; error: string }[] = [];
  const sc: StepContext = {
    topic: 'in',
    partition: 0,
    deadLetter: (record, reason, error) => dead.push({ record, reason, error: String(error) }),
  };
  return { sc, dead };
}

function write(name: string, text: string): string {
  writeFileSync(path.join(dir, name), text);
  return `./${name}`;
}

const create = async (config: Record<string, unknown>) =>
  codeStep.create(codeStepSchema.parse({ kind: 'code', ...config }), ctx);

describe('code step', () => {
  it('runs a TypeScript default export per batch with its options; per-record dead letters keep their reason', async () => {
    const module = write(
      'scale.ts',
      `import type { Transform } from '${path.resolve('src/api.ts')}';
type Options = { factor: number };
const scale: Transform<Options> = (records, ctx) =>
  records.flatMap((r) => {
    const n = (r.value as { n: unknown }).n;
    if (typeof n !== 'number') {
      ctx.deadLetter(r, 'not-a-number', new Error(\`n is \${typeof n}\`));
      return [];
    }
    return [{ ...r, value: { n: n * ctx.options.factor, batch: records.length, step: ctx.step } }];
  });
export default scale;
`,
    );
    const step = await create({ name: 'scale', module, options: { factor: 3 } });
    const { sc, dead } = stepContext();
    const out = await step.process(records([{ n: 1 }, { n: 'x' }, { n: 2 }]), sc);
    expect(out.map((r) => r.value)).toEqual([
      { n: 3, batch: 3, step: 'scale' },
      { n: 6, batch: 3, step: 'scale' },
    ]);
    expect(dead).toEqual([expect.objectContaining({ reason: 'not-a-number', error: 'Error: n is string' })]);
    expect(dead[0]?.record.key).toBe('k1');
  });

  it('loads a named export from an .mjs module, async transforms included', async () => {
    const module = write(
      'named.mjs',
      'export async function upper(records) { return records.map((r) => ({ ...r, value: String(r.value).toUpperCase() })); }\n',
    );
    const step = await create({ module, export: 'upper' });
    expect((await step.process(records(['a', 'b']), stepContext().sc)).map((r) => r.value)).toEqual([
      'A',
      'B',
    ]);
  });

  it('dead-letters the rest of the batch with reason code when the transform throws', async () => {
    const module = write(
      'throws.ts',
      `export default (records, ctx) => {
  ctx.deadLetter(records[0], 'first', new Error('own reason'));
  throw new Error('lookup table unavailable');
};
`,
    );
    const step = await create({ module });
    const { sc, dead } = stepContext();
    expect(await step.process(records([1, 2, 3]), sc)).toEqual([]);
    expect(dead.map((d) => [d.record.key, d.reason, d.error])).toEqual([
      ['k0', 'first', 'Error: own reason'],
      ['k1', 'code', 'Error: lookup table unavailable'],
      ['k2', 'code', 'Error: lookup table unavailable'],
    ]);
  });

  it('dead-letters the batch when the transform returns something else than an array', async () => {
    const step = await create({
      module: write('returns-object.mjs', 'export default () => ({ oops: true });\n'),
    });
    const { sc, dead } = stepContext();
    expect(await step.process(records([1]), sc)).toEqual([]);
    expect(dead[0]?.reason).toBe('code');
    expect(dead[0]?.error).toMatch(/returned object, expected an array of records/);
  });

  it.each([
    ['a missing file', { module: './nope.ts' }, /module \.\/nope\.ts: no such file \(.*nope\.ts\)/],
    [
      'a missing export',
      {
        module: write('exports.mjs', 'export const a = () => [];\nexport const b = 1;\n'),
        export: 'transform',
      },
      /has no export 'transform' \(it exports: a, b\)/,
    ],
    [
      'an export that is not a function',
      { module: write('not-fn.mjs', 'export default 42;\n') },
      /export 'default' is number, expected a transform function/,
    ],
    [
      'a module that fails to load',
      { module: write('broken.ts', 'export default (records => ;\n') },
      /module \.\/broken\.ts: failed to load/,
    ],
  ])('refuses %s, naming the step and the module', async (_, config, message) => {
    const err = await create({ name: 'enrich', ...config }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CodeModuleError);
    expect((err as Error).message).toMatch(/^step 'enrich' \(code\): module /);
    expect((err as Error).message).toMatch(message);
  });

  it('names the topology file and the YAML path when flotilla test loads a topology with a bad module', async () => {
    write(
      'bad-module.yaml',
      `name: bad-module
source: { kind: embedded, topic: in-bad-module }
steps:
  - { kind: decode, format: json }
  - { kind: code, module: ./missing.ts }
sinks: [{ kind: stdout }]
`,
    );
    write('bad-module.test.yaml', 'topology: bad-module.yaml\ninput: [{ value: 1 }]\n');
    const err = await runFixture(path.join(dir, 'bad-module.test.yaml')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems[0]).toMatchObject({ path: 'steps[1].module' });
    expect((err as Error).message).toMatch(/bad-module\.yaml: steps\[1\]\.module: .*no such file/);
  });

  it('rejects a module path that is not TypeScript or JavaScript at validation', () => {
    const result = codeStepSchema.safeParse({ kind: 'code', module: './transform.py' });
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.message).toMatch(/expected a path to a \.ts, .* file/);
  });

  it('ships an example transform that dead-letters invalid listening events', () => {
    const { sc, dead } = stepContext();
    const ok = { ts: 1, tenant: 't', user: 'u', track: 'x', action: 'play', duration_ms: 10 };
    const out = checkListeningEvents(
      records([ok, { ...ok, action: 'rewind' }, { ...ok, duration_ms: '10' }]),
      {
        ...sc,
        options: { actions: ['play'], max_duration_ms: 100 },
        step: 'check',
        topology: 'events',
        logger: ctx.logger,
      },
    ) as FlotillaRecord[];
    expect(out.map((r) => r.key)).toEqual(['k0']);
    expect(dead.map((d) => [d.reason, d.error])).toEqual([
      ['invalid', "Error: action: unknown action 'rewind'"],
      ['invalid', 'Error: duration_ms: expected an integer from 0 to 100, found "10"'],
    ]);
  });
});
