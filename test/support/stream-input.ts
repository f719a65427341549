import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { buildParts, Worker, type WorkerParts } from '../../src/runtime/worker.js';
import { loadTopology } from '../../src/topology/load.js';
import { waitFor } from './wait.js';

/**
 * A Redis stream feeding a topology run in this process (source `redis-stream`), to watch what
 * the worker acknowledged: an entry leaves XPENDING only once every sink acknowledged it.
 */
export class StreamInput {
  readonly group: string;
  readonly deadLetterStream: string;

  /** `redis` is a connection of the test; `url` is where the topology's source connects. */
  constructor(
    private readonly redis: Redis,
    private readonly url: string,
    readonly stream: string,
  ) {
    this.group = `${stream}-group`;
    this.deadLetterStream = `${stream}.dlq`;
  }

  /** The source and dead-letter lines of a topology reading this stream (YAML flow maps). */
  topologyLines(source: Record<string, unknown> = {}): string {
    const options = { kind: 'redis-stream', url: this.url, streams: [this.stream], block_ms: 100, ...source };
    return `group: ${this.group}
source: ${JSON.stringify(options)}
dead_letter: { topic: ${JSON.stringify(this.deadLetterStream)} }`;
  }

  /** XADDs one entry per value (field `value`: its JSON), in one round trip; returns the entry ids. */
  async add(values: unknown[]): Promise<string[]> {
    const pipeline = this.redis.pipeline();
    for (const v of values) pipeline.xadd(this.stream, '*', 'value', JSON.stringify(v));
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([err, id]) => {
      if (err) throw err;
      return id as string;
    });
  }

  /** Entries the group read and has not acknowledged (XPENDING). */
  async pending(): Promise<number> {
    return Number(((await this.redis.xpending(this.stream, this.group)) as [number])[0]);
  }

  /** Entries the group has not read yet (XINFO GROUPS lag, Redis 7). */
  async unread(): Promise<number> {
    const groups = (await this.redis.xinfo('GROUPS', this.stream)) as unknown[][];
    const own = groups.find((g) => g[g.indexOf('name') + 1] === this.group);
    return own ? Number(own[own.indexOf('lag') + 1]) : Number.NaN;
  }

  /** Every entry read and acknowledged. */
  async waitAcknowledged(timeoutMs = 30_000): Promise<void> {
    await waitFor(
      `every entry of ${this.stream} acknowledged`,
      async () => (await this.unread()) === 0 && (await this.pending()) === 0,
      timeoutMs,
    );
  }

  /** The dead letters written so far, as field maps. */
  async deadLetters(): Promise<Record<string, string>[]> {
    const entries = await this.redis.xrange(this.deadLetterStream, '-', '+');
    return entries.map(([, flat]) => {
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
      return fields;
    });
  }

  async drop(): Promise<void> {
    await this.redis.del(this.stream, this.deadLetterStream);
  }
}

/** A topology file running in this process, once its source consumes. */
export interface RunningWorker {
  parts: WorkerParts;
  /** Stops reading, waits for in-flight batches to be acknowledged, closes the parts. */
  stop(): Promise<void>;
}

export async function startWorker(file: string): Promise<RunningWorker> {
  const logger = pino({ level: 'silent' });
  const topology = loadTopology(file);
  const parts = await buildParts(topology, logger);
  const worker = new Worker(topology, parts, logger);
  const running = worker.run();
  await waitFor('the source consuming', () => parts.source.ready?.() === true);
  return {
    parts,
    stop: async () => {
      await worker.stop();
      await running;
    },
  };
}
