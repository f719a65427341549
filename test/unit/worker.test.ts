import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { buildParts, giveUpAfterOf } from '../../src/runtime/worker.js';
import { embeddedLog } from '../../src/sources/embedded-log.js';
import { loadTopology } from '../../src/topology/load.js';
import { silentLogger as logger, runToEnd, topologyFile } from '../support/embedded.js';

const errorsModule = path.resolve('src/core/errors.ts');

describe('the worker', () => {
  it('names file, line and YAML path when a component cannot be created', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-'));
    const file = topologyFile(
      `name: missing-module
source: { kind: embedded, topic: in-missing-module }
steps:
  - kind: decode
    format: json
  - kind: code
    module: ./nowhere.ts
sinks:
  - { kind: discard }
`,
      dir,
    );
    const err = await buildParts(loadTopology(file), logger).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems[0]).toMatchObject({ line: 7, column: 5, path: 'steps[1].module' });
    expect((err as ConfigError).message).toMatch(/topo\.yaml:7:5: steps\[1\]\.module: .*nowhere\.ts/);
  });

  it('re-runs a step that throws a TransientError, without duplicate dead letters', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-'));
    // Fails the first two batches it sees with an outage, dead-lettering one record first.
    writeFileSync(
      path.join(dir, 'flaky.ts'),
      `import { TransientError } from ${JSON.stringify(errorsModule)};
let failures = 0;
export default (records: any[], ctx: any) => {
  ctx.deadLetter(records[0], 'flaky', new Error('first record rejected'));
  if (failures++ < 2) throw new TransientError('registry down');
  return records.slice(1);
};
`,
    );
    const file = topologyFile(
      `name: transient
source: { kind: embedded, topic: in-transient, partitions: 1, max_batch: 10 }
steps:
  - kind: code
    module: ./flaky.ts
sinks:
  - { kind: file, path: out.jsonl }
dead_letter: { topic: transient.dlq }
`,
      dir,
    );
    embeddedLog.ensureTopic('in-transient', 1);
    for (let n = 0; n < 10; n++)
      embeddedLog.append('in-transient', { key: null, value: Buffer.from(`${n}`) });
    await runToEnd(file);

    const out = readFileSync(path.join(dir, 'out.jsonl'), 'utf8').trim().split('\n');
    expect(out).toEqual(Array.from({ length: 9 }, (_, i) => `"${i + 1}"`));
    const dead = embeddedLog.read('transient.dlq', 0, 0, 100);
    expect(dead.map((d) => d.value.toString())).toEqual(['0']);
  });

  it('dead-letters a batch for a sink that stays down past give_up_after, while the other sinks go on', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-'));
    // A regular file where the broken sink needs a folder: every write fails.
    writeFileSync(path.join(dir, 'blocker'), '');
    const file = topologyFile(
      `name: give-up
source: { kind: embedded, topic: in-give-up, partitions: 1, max_batch: 50 }
steps:
  - { kind: decode, format: json }
sinks:
  - { kind: file, name: good, path: good.jsonl }
  - { kind: file, name: broken, path: blocker/out.jsonl, give_up_after: 300ms }
dead_letter: { topic: give-up.dlq }
`,
      dir,
    );
    embeddedLog.ensureTopic('in-give-up', 1);
    for (let n = 0; n < 20; n++)
      embeddedLog.append('in-give-up', { key: null, value: Buffer.from(`{"n":${n}}`) });
    await runToEnd(file);

    expect(readFileSync(path.join(dir, 'good.jsonl'), 'utf8').trim().split('\n')).toHaveLength(20);
    const dead = embeddedLog.read('give-up.dlq', 0, 0, 100);
    expect(dead).toHaveLength(20);
    expect(dead[0]?.headers).toMatchObject({
      'flotilla.reason': 'sink_unavailable',
      'flotilla.step': 'broken',
    });
    expect(dead[0]?.headers['flotilla.error']).toMatch(/ENOTDIR|EEXIST|not a directory/i);
    expect(embeddedLog.committedOffset('flotilla-give-up', 'in-give-up', 0)).toBe(20);
  });

  it('bounds one sink outage by default only when other sinks wait on it; never opts out', () => {
    expect(giveUpAfterOf([{}])).toEqual([undefined]);
    expect(giveUpAfterOf([{}, { give_up_after: 1000 }, { give_up_after: 'never' }])).toEqual([
      15 * 60_000,
      1000,
      undefined,
    ]);
  });
});
