import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { embeddedLog } from '../../src/sources/embedded-log.js';
import { defaultSpec, SeriesDetector } from '../../src/steps/anomaly/index.js';
import { applyTuning } from '../../src/steps/anomaly/schema.js';
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

describe('whole-snapshot step state (anomaly series) across worker runs', () => {
  it('continues each series where the last run left it; a changed model starts cold instead of stopping', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-'));
    const topic = `in-anomaly-snapshot-${process.pid}`;
    const file = path.join(dir, 'topo.yaml');
    const topology = (model: string) =>
      writeFileSync(
        file,
        `name: anomaly-snapshot
group: anomaly-snapshot-${process.pid}
source: { kind: embedded, topic: ${topic}, partitions: 1, max_batch: 7 }
steps:
  - { kind: decode, format: json }
  - { kind: anomaly, series_key: [s], value: v, time: ts, model: ${model}, warmup: 5 }
sinks:
  - { kind: file, path: out.jsonl }
`,
      );
    const point = (n: number) => ({ v: 10 + (n % 4) + (n === 30 ? 40 : 0), ts: n * 60_000 });
    embeddedLog.ensureTopic(topic, 1);
    const send = (from: number, to: number) => {
      for (let n = from; n < to; n++)
        embeddedLog.append(topic, { key: 'a', value: Buffer.from(JSON.stringify({ s: 'a', ...point(n) })) });
    };
    const scored = () =>
      readFileSync(path.join(dir, 'out.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { ts: number; anomaly_score: number; expected: number | null });

    // Two runs, the second restoring the first's checkpoint: the same scores as one detector
    // that saw every value, the spike at 30 flagged (a cold detector would score it 0).
    topology('ewma');
    send(0, 20);
    await runToEnd(file);
    send(20, 40);
    await runToEnd(file);
    const continuous = new SeriesDetector(applyTuning(defaultSpec, { model: 'ewma', warmup: 5 }));
    const expected = Array.from({ length: 40 }, (_, n) => continuous.observe(point(n).v, point(n).ts)?.score);
    const out = scored();
    expect(out.map((r) => r.anomaly_score)).toEqual(expected);
    expect(out[30]?.anomaly_score).toBe(1);

    // The topology now uses another model: the saved ewma state does not fit it, so the series
    // starts cold (expected null) and the run goes on instead of failing on restore.
    topology('mad');
    send(40, 42);
    await runToEnd(file);
    expect(scored().slice(40)).toMatchObject([
      { ts: 40 * 60_000, anomaly_score: 0, expected: null },
      { ts: 41 * 60_000, anomaly_score: 0, expected: null },
    ]);
  });
});
