import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { embeddedLog } from '../../src/sources/embedded-log.js';
import { runToEnd } from '../support/embedded.js';

describe('a topology on the embedded log', () => {
  it('decodes, filters and maps to a file sink; bad records go to the dead-letter topic with headers', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-'));
    const file = path.join(dir, 'topo.yaml');
    writeFileSync(
      file,
      `name: embedded-run
source: { kind: embedded, topic: in-embedded-run, partitions: 2 }
steps:
  - { kind: decode, format: json }
  - { kind: filter, expr: "value.n % 2 == 0" }
  - { kind: map, value: "{ n: value.n, half: value.n / 2 }", key: "string(value.n)" }
sinks:
  - { kind: file, path: out.jsonl }
dead_letter: { topic: embedded-run.dlq }
`,
    );
    const inputs: (string | number)[] = [...Array.from({ length: 100 }, (_, i) => i), 'not json {'];
    await runToEnd(file, () => {
      for (const [i, v] of inputs.entries()) {
        const text = typeof v === 'number' ? JSON.stringify({ n: v }) : v;
        embeddedLog.append('in-embedded-run', { key: `k${i}`, value: Buffer.from(text) });
      }
    });

    const lines = readFileSync(path.join(dir, 'out.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.n).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i * 2));
    expect(lines.every((l) => l.half === l.n / 2)).toBe(true);

    const dead = embeddedLog.read('embedded-run.dlq', 0, 0, 10);
    expect(dead).toHaveLength(1);
    expect(dead[0]?.value.toString()).toBe('not json {');
    expect(dead[0]?.headers).toMatchObject({
      'flotilla.reason': 'decode',
      'flotilla.step': 'decode',
      'flotilla.source.topic': 'in-embedded-run',
    });
    expect(dead[0]?.headers['flotilla.error']).toMatch(/JSON/);

    // Every input offset is committed: a restart would re-deliver nothing.
    let committed = 0;
    for (let p = 0; p < 2; p++)
      committed += embeddedLog.committedOffset('flotilla-embedded-run', 'in-embedded-run', p) ?? 0;
    expect(committed).toBe(inputs.length);
  });
});
