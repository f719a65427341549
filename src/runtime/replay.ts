import path from 'node:path';
import type { Admin } from 'kafkajs';
import type { DeadLetterWriter, Source } from '../core/component.js';
import { FlotillaError } from '../core/errors.js';
import { kafkaFor } from '../kafka/client.js';
import type { Logger } from '../observability/logger.js';
import { compileKeyTemplate, type KeyTemplate } from '../sinks/redis.js';
import { identifierSchema } from '../sinks/shared/config.js';
import { KafkaSource, type KafkaSourceConfig, resolveTopics } from '../sources/kafka.js';
import { type LoadedTopology, loadTopology } from '../topology/load.js';
import type { SinkConfig, TopologyConfig } from '../topology/schema.js';
import { buildParts, Worker } from './worker.js';

/** What to replay: a time range of the source topics, and where the results go. */
export interface ReplayOptions {
  /** Start of the range (ms since epoch): the first offset of each partition with a timestamp ≥ it. */
  from: number;
  /** End of the range (ms), exclusive; absent: the end offsets when the replay starts. */
  to?: number | undefined;
  /** Consumer group of the replay (default: see `defaultReplayGroup`). */
  group?: string | undefined;
  /** Write to shadow sinks: every sink target gets this suffix (see `shadowSink`). */
  into?: string | undefined;
}

/** The offsets [start, end) of one partition that a replay reads. */
export interface PartitionRange {
  partition: number;
  start: number;
  end: number;
}

export interface ReplayPlan {
  group: string;
  /** Topic → the range of each of its partitions. */
  ranges: Map<string, PartitionRange[]>;
  /** Records in the ranges (offsets; fewer records where a compacted topic has gaps). */
  total: number;
}

export interface ReplayResult {
  /** Source records acknowledged by every sink (or dead-lettered). */
  records: number;
  deadLettered: number;
  seconds: number;
  /** Stopped before every partition reached its end. */
  interrupted: boolean;
}

/** A shadow suffix: it ends table, collection, topic and key names, so it stays a plain word. */
const SUFFIX = /^[A-Za-z0-9_]{1,40}$/;

/** `2026-01-01T00:00:00.000Z` → `20260101T000000Z`: a time as it may appear in a group name. */
const compactTime = (ms: number) =>
  new Date(ms)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.000Z$/, 'Z')
    .replace('.', '_');

/**
 * `<group>.replay.<from>-<to|end>`: the same range always maps to the same group (whatever the
 * spelling of its times), and never to the live group.
 */
export function defaultReplayGroup(group: string, from: number, to: number | undefined): string {
  return `${group}.replay.${compactTime(from)}-${to === undefined ? 'end' : compactTime(to)}`;
}

/** Kafka topics get `.<suffix>`. */
export const shadowTopic = (topic: string, suffix: string) => `${topic}.${suffix}`;

function shadowIdentifier(name: string, suffix: string, what: string): string {
  const shadow = `${name}_${suffix}`;
  if (!identifierSchema.safeParse(shadow).success) {
    throw new FlotillaError(`--into ${suffix}: the shadow ${what} '${shadow}' is longer than 63 characters`);
  }
  return shadow;
}

const shadowTemplate = (t: KeyTemplate | undefined, suffix: string) =>
  t && compileKeyTemplate(`${t.source}:${suffix}`);

/**
 * The same sink writing to its shadow target: topics `<topic>.<suffix>`, tables and collections
 * `<name>_<suffix>`, Redis keys, channels and streams `<template>:<suffix>`, files
 * `<name>.<suffix><.ext>`. Sinks that keep nothing (stdout, discard) are unchanged; a kind this
 * does not know is refused rather than left writing to the live target.
 */
export function shadowSink(sink: SinkConfig, suffix: string): SinkConfig {
  switch (sink.kind) {
    case 'kafka':
      return { ...sink, topic: shadowTopic(sink.topic, suffix) };
    case 'postgres':
    case 'clickhouse':
      return { ...sink, table: shadowIdentifier(sink.table, suffix, 'table') };
    case 'mongodb':
      return { ...sink, collection: shadowIdentifier(sink.collection, suffix, 'collection') };
    case 'redis':
      return {
        ...sink,
        key: shadowTemplate(sink.key, suffix),
        channel: shadowTemplate(sink.channel, suffix),
        stream: shadowTemplate(sink.stream, suffix),
      };
    case 'file': {
      const ext = path.extname(sink.path);
      return { ...sink, path: `${sink.path.slice(0, sink.path.length - ext.length)}.${suffix}${ext}` };
    }
    case 'stdout':
    case 'discard':
      return sink;
    default:
      throw new FlotillaError(
        `--into: no shadow target is known for sinks of kind '${(sink as SinkConfig).kind}'`,
      );
  }
}

/** The topology as a replay runs it: its own group, and with `into`, shadow sinks and dead-letter topic. */
export function replayConfig(config: TopologyConfig, group: string, into?: string): TopologyConfig {
  if (into === undefined) return { ...config, group };
  if (!SUFFIX.test(into)) {
    throw new FlotillaError(`--into: expected letters, digits and _ (at most 40), got '${into}'`);
  }
  const deadLetterTopic = config.dead_letter?.topic ?? `${config.name}.dlq`;
  return {
    ...config,
    group,
    sinks: config.sinks.map((s) => shadowSink(s, into)),
    dead_letter: { topic: shadowTopic(deadLetterTopic, into) },
  };
}

/** The Kafka source config of a topology; a replay reads nothing else. */
export function kafkaSourceOf(topology: LoadedTopology): KafkaSourceConfig {
  const { source } = topology.config;
  if (source.kind !== 'kafka') {
    throw new FlotillaError(
      `replay reads Kafka topics, but ${topology.file} has a '${source.kind}' source (only a kafka source can be replayed)`,
    );
  }
  return source;
}

/**
 * The offset range of every partition: from the first offset with a timestamp ≥ `from` to the
 * first with a timestamp ≥ `to` (or the end offset now). A partition with no record at or after a
 * time resolves it to its end offset, so ranges never reach past what exists when the replay starts.
 */
export async function planRanges(
  admin: Admin,
  topics: string[],
  from: number,
  to: number | undefined,
): Promise<Map<string, PartitionRange[]>> {
  const ranges = new Map<string, PartitionRange[]>();
  for (const topic of topics) {
    const starts = await admin.fetchTopicOffsetsByTimestamp(topic, from);
    const ends = new Map(
      (to === undefined
        ? (await admin.fetchTopicOffsets(topic)).map((o) => ({ partition: o.partition, offset: o.high }))
        : await admin.fetchTopicOffsetsByTimestamp(topic, to)
      ).map((o) => [o.partition, Number(o.offset)]),
    );
    ranges.set(
      topic,
      starts
        .map(({ partition, offset }) => {
          const start = Number(offset);
          return { partition, start, end: Math.max(start, ends.get(partition) ?? start) };
        })
        .sort((a, b) => a.partition - b.partition),
    );
  }
  return ranges;
}

/** Sets the replay group's committed offsets to the starts, so every run begins at `from` again. */
async function resetGroup(admin: Admin, group: string, ranges: Map<string, PartitionRange[]>): Promise<void> {
  for (const [topic, parts] of ranges) {
    try {
      await admin.setOffsets({
        groupId: group,
        topic,
        partitions: parts.map((p) => ({ partition: p.partition, offset: String(p.start) })),
      });
    } catch (err) {
      throw new FlotillaError(
        `cannot reset the offsets of the replay group '${group}' on ${topic} (is a replay of the same range still running? stop it, or pass --group): ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
}

/**
 * The source, counting the records of each batch once the handler acknowledged it. It offers
 * no `stateStore` on purpose: a replay's stateful steps keep their state in memory, so every
 * run starts from empty state at `from` (as its offsets do) and never restores what an earlier
 * run, or an earlier version of the topology, checkpointed.
 */
function countingSource(source: Source, onAcknowledged: (records: number) => void): Source {
  return {
    kind: source.kind,
    run: (handler, events) =>
      source.run(async (batch) => {
        const records = batch.records.length;
        await handler(batch);
        onAcknowledged(records);
      }, events),
    stop: () => source.stop(),
  };
}

function countingDeadLetters(
  writer: DeadLetterWriter,
  onWritten: (letters: number) => void,
): DeadLetterWriter {
  return {
    write: async (letters) => {
      await writer.write(letters);
      onWritten(letters.length);
    },
    close: () => writer.close(),
  };
}

/**
 * A replay of a topology over a time range: its own consumer group (reset to the start of the
 * range every run), a source bounded to the range's end offsets, and the topology's steps and
 * sinks (or their shadows). Outputs have deterministic ids and sinks upsert, so running it
 * again, or over a range the live worker already processed, leaves the sinks as one run would.
 */
export class Replay {
  private stopped = false;

  private constructor(
    readonly topology: LoadedTopology,
    readonly plan: ReplayPlan,
    private readonly worker: Worker,
    /** Source records acknowledged and dead letters written so far. */
    private readonly counts: { records: number; deadLettered: number },
  ) {}

  /** Loads the topology, plans the offset ranges and resets the replay group; nothing is processed yet. */
  static async prepare(file: string, options: ReplayOptions, logger: Logger): Promise<Replay> {
    if (options.to !== undefined && options.to <= options.from) {
      throw new FlotillaError('--to must be later than --from');
    }
    const loaded = loadTopology(file);
    const source = kafkaSourceOf(loaded);
    const { config } = loaded;
    const group =
      options.group ??
      defaultReplayGroup(config.group ?? `flotilla-${config.name}`, options.from, options.to);
    const topology = { ...loaded, config: replayConfig(config, group, options.into) };
    const log = logger.child({ topology: config.name, replay: group });
    // Built (modules loaded, schemas read) before the group's offsets are touched. Its own
    // (unbounded) source is never started: the bounded one below replaces it.
    const parts = await buildParts(topology, log);

    const admin = kafkaFor(source, { topology: config.name, logger: log }).admin();
    let ranges: Map<string, PartitionRange[]>;
    try {
      await admin.connect();
      ranges = await planRanges(admin, await resolveTopics(source, admin), options.from, options.to);
      await resetGroup(admin, group, ranges);
    } catch (err) {
      await Promise.all([
        ...parts.steps.map((s) => s.close?.()),
        ...parts.sinks.map((s) => s.close()),
        parts.deadLetters.close(),
      ]);
      throw err;
    } finally {
      await admin.disconnect();
    }
    const stopAt = new Map(
      [...ranges].map(([topic, parts]) => [
        topic,
        new Map(parts.filter((p) => p.end > p.start).map((p) => [p.partition, p.end])),
      ]),
    );
    const total = [...ranges.values()].flat().reduce((sum, p) => sum + p.end - p.start, 0);

    const bounded = new KafkaSource(
      source,
      { topology: config.name, group, baseDir: path.dirname(loaded.file), logger: log },
      { stopAt },
    );
    const counts = { records: 0, deadLettered: 0 };
    const worker = new Worker(
      topology,
      {
        ...parts,
        source: countingSource(bounded, (n) => {
          counts.records += n;
        }),
        deadLetters: countingDeadLetters(parts.deadLetters, (n) => {
          counts.deadLettered += n;
        }),
      },
      log,
    );
    return new Replay(topology, { group, ranges, total }, worker, counts);
  }

  /** Source records acknowledged so far. */
  get records(): number {
    return this.counts.records;
  }

  /** Runs until every partition reached its end (or `stop`), everything acknowledged and committed. */
  async run(): Promise<ReplayResult> {
    const started = performance.now();
    await this.worker.run();
    return {
      records: this.counts.records,
      deadLettered: this.counts.deadLettered,
      seconds: (performance.now() - started) / 1000,
      interrupted: this.stopped,
    };
  }

  /** Drains what is in flight and commits it; the next run starts over at `from` anyway. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.worker.stop();
  }
}
