import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { embeddedLog } from '../../src/sources/embedded-log.js';
import { runToEnd } from '../support/embedded.js';

const _logger = pino({ level: 'silent' });

/** Runs the topology until its input is consumed; returns what was written so far: n, and * when tagged a duplicate. */
async function runOnce(file: string): Promise<string[]> {
  await runToEnd(file);
  return readFileSync(path.join(path.dirname(file), 'out.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const v = JSON.parse(l) as { n: number; _quality?: { passed: boolean } };
      return `${v.n}${v._quality?.passed === false ? '*' : ''}`;
    });
}

describe('whole-snapshot step state (quality dedupe) across worker runs', () => {
  it('is checkpointed and restored, and re-delivered records are not applied twice', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-'));
    const topic = `in-snapshot-${process.pid}`;
    const file = path.join(dir, 'topo.yaml');
    writeFileSync(
      file,
      `name: snapshot-state
group: snapshot-${process.pid}
source: { kind: embedded, topic: ${topic}, partitions: 1, max_batch: 4 }
steps:
  - { kind: decode, format: json }
  - kind: quality
    event_time: ts
    rules:
      - { kind: dedupe, key: [id], ttl: 1h, action: tag }
sinks:
  - { kind: file, path: out.jsonl }
`,
    );
    embeddedLog.ensureTopic(topic, 1);
    const send = (n: number, id: string) =>
      embeddedLog.append(topic, { key: id, value: Buffer.from(JSON.stringify({ n, id, ts: 1_000 + n })) });

    // First run: a, b, a (tagged a duplicate).
    send(1, 'a');
    send(2, 'b');
    send(3, 'a');
    expect(await runOnce(file)).toEqual(['1', '2', '3*']);

    // A new worker restores the dedupe keys: a and b again are duplicates, c is new.
    send(4, 'a');
    send(5, 'c');
    send(6, 'b');
    expect(await runOnce(file)).toEqual(['1', '2', '3*', '4*', '5', '6*']);

    // As if the last commit were lost after the checkpoint: 4-6 are re-delivered. The restored
    // state already holds them, so they are skipped — not written again, c not its own duplicate.
    embeddedLog.commit(`snapshot-${process.pid}`, topic, 0, 3);
    send(7, 'd');
    expect(await runOnce(file)).toEqual(['1', '2', '3*', '4*', '5', '6*', '7']);
  });
});
