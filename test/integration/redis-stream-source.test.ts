import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { produceRecords } from '../../src/cli/produce.js';
import { registry } from '../../src/observability/metrics.js';
import { buildParts, Worker } from '../../src/runtime/worker.js';
import { syntheticRecords } from '../../src/sources/synthetic.js';
import { loadTopology } from '../../src/topology/load.js';
import { spawnWorker, unique, type WorkerProcess, writeTopology } from '../support/kafka.js';
import { connectOrExplain, serviceUrl } from '../support/services.js';
import { waitFor } from '../support/wait.js';

const silent = pino({ level: 'silent' });
const quietProgress = { stream: { write: () => true }, tty: false };

/** A line of the file sink (format envelope). */
interface OutLine {
  id: string;
  key: string | null;
  timestamp: number;
  source: { topic: string; partition: number; offset: string };
  value: unknown;
}

/** The lines of a file sink's output; a line cut short by a SIGKILL is skipped. */
function readOut(file: string): OutLine[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: OutLine[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as OutLine);
    } catch {
      // the last line of a killed worker
    }
  }
  return out;
}

/** Entry ids in output lines, each with how many times it was written. */
function countIds(lines: OutLine[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const l of lines) counts.set(l.source.offset, (counts.get(l.source.offset) ?? 0) + 1);
  return counts;
}

async function claimedTotal(topology: string): Promise<number> {
  const metric = registry.getSingleMetric('flotilla_redis_stream_claimed_total');
  const values = (await metric?.get())?.values ?? [];
  return values.filter((v) => v.labels.topology === topology).reduce((sum, v) => sum + v.value, 0);
}

describe('the redis-stream source', () => {
  let redis: Redis;
  let url: string;
  const keys: string[] = [];
  const children: WorkerProcess[] = [];

  beforeAll(async () => {
    url = serviceUrl('REDIS_URL');
    redis = await connectOrExplain('REDIS_URL', async () => {
      const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await r.connect();
      return r;
    });
  });

  afterEach(async () => {
    for (const w of children.splice(0)) {
      if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
      await w.exited;
    }
  });

  afterAll(async () => {
    if (keys.length > 0) await redis?.del(...keys);
    await redis?.quit();
  });

  /**
   * A fresh stream and group, and a topology reading it: decode JSON → file sink (envelope),
   * dead letters to `<stream>.dlq`. `source` adds lines to the source; `steps` adds steps.
   */
  function setup(name: string) {
    const stream = unique(`rs-${name}`);
    const group = `${stream}-group`;
    keys.push(stream, `${stream}.dlq`);
    const topology = (options: {
      out: string;
      source?: Record<string, unknown>;
      steps?: string;
      name?: string;
    }) => {
      const sourceOptions = { url, streams: [stream], block_ms: 200, ...options.source };
      const file = writeTopology(`name: ${options.name ?? `rs-${name}`}
group: ${group}
source:
  kind: redis-stream
${Object.entries(sourceOptions)
  .map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`)
  .join('\n')}
steps:
  - { kind: decode, format: json }
${options.steps ?? ''}
sinks:
  - { kind: file, path: ${options.out}, format: envelope }
dead_letter: { topic: ${stream}.dlq }
`);
      return { file, out: path.join(path.dirname(file), options.out) };
    };
    /** Sends `count` metrics records with the `flotilla produce` function. */
    const produce = (count: number, options: { rate?: number; poison?: number; seed?: number } = {}) =>
      produceRecords({
        preset: 'metrics',
        count,
        rate: options.rate ?? 0,
        seed: options.seed ?? 1,
        format: 'json',
        topic: stream,
        poison: options.poison ?? 0,
        batchSize: 500,
        inFlight: 4,
        target: { kind: 'redis', url },
        logger: silent,
        progress: quietProgress,
      });
    const entryIds = async () => (await redis.xrange(stream, '-', '+')).map(([id]) => id);
    const pendingCount = async () => Number(((await redis.xpending(stream, group)) as [number])[0]);
    /** Entries the group has not read yet (Redis 7 XINFO GROUPS lag). */
    const lag = async () => {
      const groups = (await redis.xinfo('GROUPS', stream)) as unknown[][];
      for (const g of groups) {
        const i = g.indexOf('name');
        if (g[i + 1] === group) return Number(g[g.indexOf('lag') + 1]);
      }
      return Number.NaN;
    };
    return { stream, group, topology, produce, entryIds, pendingCount, lag };
  }

  /** Runs a topology file in this process; resolves once its source consumes (group created). */
  async function startWorker(file: string) {
    const topology = loadTopology(file);
    const parts = await buildParts(topology, silent);
    const worker = new Worker(topology, parts, silent);
    const running = worker.run();
    await waitFor('the source consuming', () => parts.source.ready?.() === true);
    return { worker, running, name: topology.config.name };
  }

  it('moves every record once through decode → file, with ids and times from the entries; XPENDING empty after', async () => {
    const t = setup('clean');
    const N = 20_000;
    const { records } = await t.produce(N);
    expect(records).toBe(N);
    // A long block: stop must still be quick (CLIENT UNBLOCK wakes the blocked read).
    const { file, out } = t.topology({ out: 'out.jsonl', source: { block_ms: 10_000, batch_count: 300 } });
    const w = await startWorker(file);
    await waitFor(`${N} records in the file sink`, () => readOut(out).length >= N, 60_000);
    await waitFor('every entry acknowledged', async () => (await t.pendingCount()) === 0);
    const stopStarted = performance.now();
    await w.worker.stop();
    await w.running;
    expect(performance.now() - stopStarted).toBeLessThan(2000);

    const lines = readOut(out);
    expect(lines).toHaveLength(N);
    const ids = await t.entryIds();
    const make = syntheticRecords('metrics', 1);
    const byEntry = new Map(lines.map((l) => [l.source.offset, l]));
    expect(byEntry.size).toBe(N);
    ids.forEach((entryId, i) => {
      const line = byEntry.get(entryId);
      expect(line, `entry ${entryId}`).toBeDefined();
      const { key, value } = make(i);
      expect(line?.id).toBe(`${t.stream}/${entryId}`);
      expect(line?.source).toEqual({ topic: t.stream, partition: 0, offset: entryId });
      expect(line?.timestamp).toBe(Number(entryId.split('-')[0]));
      expect(line?.key).toBe(key);
      expect(line?.value).toEqual(value);
    });
    expect(await t.pendingCount()).toBe(0);
    expect(await t.lag()).toBe(0);
  });

  it('claims (XAUTOCLAIM) what a consumer read and never acknowledged, after claim_idle_ms; none lost', async () => {
    const t = setup('dead-consumer');
    const N = 5000;
    await t.produce(N);
    // A consumer that reads 700 entries and dies without acknowledging them.
    await redis.xgroup('CREATE', t.stream, t.group, '0', 'MKSTREAM');
    const taken = (await redis.xreadgroup(
      'GROUP',
      t.group,
      'dead',
      'COUNT',
      700,
      'STREAMS',
      t.stream,
      '>',
    )) as [string, [string, string[]][]][];
    const readAt = Date.now();
    const deadIds = taken[0]?.[1].map(([id]) => id) ?? [];
    expect(deadIds).toHaveLength(700);
    expect(await t.pendingCount()).toBe(700);

    const { file, out } = t.topology({ out: 'out.jsonl', source: { claim_idle_ms: 600, block_ms: 100 } });
    const w = await startWorker(file);
    await waitFor(`${N} records in the file sink`, () => readOut(out).length >= N, 30_000);
    const allOutAfter = Date.now() - readAt;
    await waitFor('every entry acknowledged', async () => (await t.pendingCount()) === 0);
    // Then the dead consumer, idle with nothing pending, is deleted from the group.
    await waitFor('the dead consumer deleted', async () => {
      const consumers = (await redis.xinfo('CONSUMERS', t.stream, t.group)) as unknown[][];
      return !consumers.some((c) => c[c.indexOf('name') + 1] === 'dead');
    });
    await w.worker.stop();
    await w.running;

    // The dead consumer's entries could only come once idle for claim_idle_ms after its read.
    expect(allOutAfter).toBeGreaterThanOrEqual(600);
    const counts = countIds(readOut(out));
    expect(counts.size).toBe(N);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
    for (const id of deadIds) expect(counts.has(id), `claimed entry ${id}`).toBe(true);
    expect(await claimedTotal(w.name)).toBe(700);
    expect(await t.pendingCount()).toBe(0);
  });

  it('after a worker is SIGKILLed mid-stream, another claims its pending entries: every record out at least once', async () => {
    const t = setup('killed');
    const N = 10_000;
    // A slow step keeps entries in flight, so the kill leaves some pending.
    const { file: firstFile, out: firstOut } = t.topology({
      out: 'out.jsonl',
      source: { claim_idle_ms: 1000, batch_count: 100 },
      steps: '  - { kind: code, module: ./slow.mjs }',
    });
    writeFileSync(
      path.join(path.dirname(firstFile), 'slow.mjs'),
      'export default async (records) => { await new Promise((r) => setTimeout(r, 20)); return records; };\n',
    );
    const first = spawnWorker(firstFile, { FLOTILLA_HTTP_PORT: 'off' });
    children.push(first);
    const producing = t.produce(N, { rate: 2500 });
    await waitFor('output from the first worker', () => readOut(firstOut).length >= 2000, 60_000);
    first.child.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');
    const pendingAtKill = await t.pendingCount();
    expect(pendingAtKill).toBeGreaterThan(0);
    await producing;

    const { file, out } = t.topology({ out: 'out2.jsonl', source: { claim_idle_ms: 1000, block_ms: 100 } });
    const second = await startWorker(file);
    await waitFor(
      'every entry out and acknowledged',
      async () => (await t.pendingCount()) === 0 && (await t.lag()) === 0 && readOut(out).length > 0,
      60_000,
    );
    await second.worker.stop();
    await second.running;

    const counts = countIds([...readOut(firstOut), ...readOut(out)]);
    const ids = await t.entryIds();
    expect(ids).toHaveLength(N);
    for (const id of ids) expect(counts.has(id), `entry ${id} lost`).toBe(true);
    // Only entries written but not acknowledged when the worker died can come out twice.
    const duplicates = [...counts.values()].reduce((sum, c) => sum + c - 1, 0);
    expect(duplicates).toBeLessThanOrEqual(pendingAtKill);
    expect(await claimedTotal(second.name)).toBeGreaterThan(0);
  });

  it('a consumer restarted under a stable name re-reads its own pending entries at once, without waiting to claim them', async () => {
    const t = setup('stable-name');
    const N = 1000;
    await t.produce(N);
    await redis.xgroup('CREATE', t.stream, t.group, '0', 'MKSTREAM');
    await redis.xreadgroup('GROUP', t.group, 'stable', 'COUNT', 300, 'STREAMS', t.stream, '>');
    expect(await t.pendingCount()).toBe(300);
    // claim_idle_ms far beyond the test: only the consumer's own history read can deliver them.
    const { file, out } = t.topology({
      out: 'out.jsonl',
      source: { consumer: 'stable', claim_idle_ms: 600_000 },
    });
    const w = await startWorker(file);
    await waitFor(`${N} records in the file sink`, () => readOut(out).length >= N, 10_000);
    await waitFor('every entry acknowledged', async () => (await t.pendingCount()) === 0);
    await w.worker.stop();
    await w.running;
    const counts = countIds(readOut(out));
    expect(counts.size).toBe(N);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
    expect(await claimedTotal(w.name)).toBe(0);
  });

  it('keeps its slow in-flight entries alive: another consumer does not claim them after claim_idle_ms', async () => {
    const t = setup('slow-alive');
    const N = 100;
    const slowSteps = '  - { kind: code, module: ./slow.mjs }';
    // Each batch takes 1.5 s in the step, so the second one is in flight for ~3 s: 5 × claim_idle_ms.
    const slow = t.topology({
      out: 'slow.jsonl',
      name: 'rs-slow-alive-slow',
      source: { consumer: 'slow', batch_count: 50, claim_idle_ms: 600 },
      steps: slowSteps,
    });
    writeFileSync(
      path.join(path.dirname(slow.file), 'slow.mjs'),
      'export default async (records) => { await new Promise((r) => setTimeout(r, 1500)); return records; };\n',
    );
    const fast = t.topology({
      out: 'fast.jsonl',
      name: 'rs-slow-alive-fast',
      source: { consumer: 'fast', claim_idle_ms: 600 },
    });
    const ws = await startWorker(slow.file);
    await t.produce(N);
    await waitFor('the slow consumer holding every entry', async () => (await t.pendingCount()) === N);
    const wf = await startWorker(fast.file);
    await waitFor('the slow consumer done', () => readOut(slow.out).length >= N, 15_000);
    await waitFor('every entry acknowledged', async () => (await t.pendingCount()) === 0);
    await Promise.all([ws.worker.stop(), wf.worker.stop()]);
    await Promise.all([ws.running, wf.running]);

    expect(readOut(fast.out)).toHaveLength(0);
    expect(await claimedTotal(wf.name)).toBe(0);
    const counts = countIds(readOut(slow.out));
    expect(counts.size).toBe(N);
    expect([...counts.values()].every((c) => c === 1)).toBe(true);
  });

  it('sends poison records to the dead-letter stream with the headers as fields, and acknowledges them', async () => {
    const t = setup('poison');
    const N = 2000;
    const { poison } = await t.produce(N, { poison: 0.05 });
    expect(poison).toBeGreaterThan(50);
    const { file, out } = t.topology({ out: 'out.jsonl' });
    const w = await startWorker(file);
    const dlq = `${t.stream}.dlq`;
    await waitFor(
      'good records in the sink and poison in the dead-letter stream',
      async () => readOut(out).length >= N - poison && (await redis.xlen(dlq)) >= poison,
    );
    await waitFor('every entry acknowledged', async () => (await t.pendingCount()) === 0);
    await w.worker.stop();
    await w.running;

    expect(readOut(out)).toHaveLength(N - poison);
    const input = new Map((await redis.xrange(t.stream, '-', '+')).map(([id, fields]) => [id, fields]));
    const letters = await redis.xrange(dlq, '-', '+');
    expect(letters).toHaveLength(poison);
    for (const [, fields] of letters) {
      const f: Record<string, string> = {};
      for (let i = 0; i < fields.length; i += 2) f[fields[i] as string] = fields[i + 1] as string;
      expect(f).toMatchObject({
        'flotilla.reason': 'decode',
        'flotilla.step': 'decode',
        'flotilla.source.topic': t.stream,
        'flotilla.source.partition': '0',
      });
      expect(f['flotilla.error']).toMatch(/JSON/);
      expect(Date.parse(f['flotilla.time'] as string)).not.toBeNaN();
      // The original entry: same key, and the value is its bytes, unchanged.
      const original = input.get(f['flotilla.source.offset'] as string) ?? [];
      expect(f.key).toBe(original[original.indexOf('key') + 1]);
      expect(f.value).toBe(original[original.indexOf('value') + 1]);
      expect(() => JSON.parse(f.value as string)).toThrow();
    }
    expect(await t.pendingCount()).toBe(0);
  });

  it('shares a stream between two consumers of one group, with no entry delivered to both', async () => {
    const t = setup('shared');
    const N = 20_000;
    const a = t.topology({ out: 'a.jsonl', source: { consumer: 'a', batch_count: 50 }, name: 'rs-shared-a' });
    const b = t.topology({ out: 'b.jsonl', source: { consumer: 'b', batch_count: 50 }, name: 'rs-shared-b' });
    const wa = await startWorker(a.file);
    const wb = await startWorker(b.file);
    await t.produce(N, { rate: 10_000 });
    await waitFor(`${N} records in the two sinks`, () => readOut(a.out).length + readOut(b.out).length >= N);
    await waitFor('every entry acknowledged', async () => (await t.pendingCount()) === 0);
    await Promise.all([wa.worker.stop(), wb.worker.stop()]);
    await Promise.all([wa.running, wb.running]);

    const inA = countIds(readOut(a.out));
    const inB = countIds(readOut(b.out));
    expect(inA.size).toBeGreaterThan(0);
    expect(inB.size).toBeGreaterThan(0);
    expect(inA.size + inB.size).toBe(N);
    for (const id of inA.keys()) expect(inB.has(id), `entry ${id} delivered twice`).toBe(false);
    expect([...inA.values(), ...inB.values()].every((c) => c === 1)).toBe(true);
    expect(await t.lag()).toBe(0);
  });

  it('trims to about maxlen, never past an entry another group has not acknowledged', async () => {
    const t = setup('trim');
    const N = 3000;
    // Created first, at 0, and never reading: it needs every entry.
    await redis.xgroup('CREATE', t.stream, 'laggard', '0', 'MKSTREAM');
    await t.produce(N, { rate: 6000 });
    const { file, out } = t.topology({
      out: 'out.jsonl',
      source: { trim: { maxlen: 1000, interval_ms: 200 } },
    });
    const w = await startWorker(file);
    try {
      await waitFor(`${N} records in the file sink`, () => readOut(out).length >= N);
      await waitFor('every entry acknowledged', async () => (await t.pendingCount()) === 0);
      await new Promise((r) => setTimeout(r, 800));
      expect(await redis.xlen(t.stream)).toBe(N);

      await redis.xgroup('DESTROY', t.stream, 'laggard');
      await waitFor('the stream trimmed', async () => (await redis.xlen(t.stream)) < N);
      await new Promise((r) => setTimeout(r, 500));
      const length = await redis.xlen(t.stream);
      // MINID ~ removes whole nodes (100 entries) and the cut is estimated from the ids' times.
      expect(length).toBeGreaterThanOrEqual(700);
      expect(length).toBeLessThanOrEqual(1300);
      // What is left is the newest entries.
      const ids = (await redis.xrange(t.stream, '-', '+')).map(([id]) => id);
      const all = [...countIds(readOut(out)).keys()].sort((x, y) => {
        const [xm, xs] = x.split('-').map(Number) as [number, number];
        const [ym, ys] = y.split('-').map(Number) as [number, number];
        return xm - ym || xs - ys;
      });
      expect(ids).toEqual(all.slice(N - length));
    } finally {
      await w.worker.stop();
      await w.running;
    }
  });
});
