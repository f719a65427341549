import { createHash } from 'node:crypto';
import type { Admin, Kafka, KafkaMessage } from 'kafkajs';
import { FlotillaError } from '../core/errors.js';
import { RECORD_TIME_HEADER } from '../core/record.js';

/** Only messages with a timestamp in [from, to) are compared (both optional). */
export interface TimeFilter {
  from?: number | undefined;
  to?: number | undefined;
}

export interface DiffExample {
  kind: 'missing' | 'extra' | 'different';
  id: string;
  /** The value (UTF-8, cut at EXAMPLE_CHARS) on each side that has it. */
  live?: string;
  shadow?: string;
}

export interface TopicDiff {
  live: string;
  shadow: string;
  /** Distinct ids on each side (within the time filter). */
  liveIds: number;
  shadowIds: number;
  /** In live, not in shadow. */
  missing: number;
  /** In shadow, not in live. */
  extra: number;
  /** On both sides with a different latest value. */
  different: number;
  /** Messages with neither a `flotilla.id` header nor a key: they cannot be matched. */
  unkeyed: number;
  examples: DiffExample[];
}

const EXAMPLE_CHARS = 300;

/** The deterministic id of an output message: its `flotilla.id` header, else its key. */
function messageId(m: KafkaMessage): string | undefined {
  const header = m.headers?.['flotilla.id'];
  if (header !== undefined) return String(Array.isArray(header) ? header.at(-1) : header);
  return m.key === null ? undefined : m.key.toString('utf8');
}

/**
 * The record's own time: the `flotilla.timestamp` header a Kafka sink adds when it stamps the
 * message with the time of writing, else the message timestamp.
 */
function recordTime(m: KafkaMessage): number {
  const header = m.headers?.[RECORD_TIME_HEADER];
  if (header === undefined) return Number(m.timestamp);
  return Number(String(Array.isArray(header) ? header.at(-1) : header));
}

/** 48 bits of SHA-1: a number per id keeps a topic's snapshot small; a collision is vanishingly rare. */
const digest = (value: Buffer | null) =>
  value === null ? -1 : createHash('sha1').update(value).digest().readUIntBE(0, 6);

let scans = 0;

/**
 * Reads a topic from its first to its end offsets at the start of the scan (records written
 * meanwhile are not waited for), in a throwaway consumer group that nothing commits to and that
 * is deleted afterwards.
 */
async function scanTopic(
  kafka: Kafka,
  admin: Admin,
  topic: string,
  visit: (m: KafkaMessage) => void,
): Promise<void> {
  const ends = await admin.fetchTopicOffsets(topic);
  const remaining = new Map(
    ends.filter((e) => Number(e.high) > Number(e.low)).map((e) => [e.partition, Number(e.high)]),
  );
  if (remaining.size === 0) return;
  const groupId = `flotilla-replay-diff-${process.pid}-${Date.now().toString(36)}-${scans++}`;
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, maxBytesPerPartition: 4 * 1024 * 1024 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      consumer.on(consumer.events.CRASH, ({ payload }) => {
        if (!payload.restart) reject(payload.error);
      });
      consumer
        .run({
          autoCommit: false,
          partitionsConsumedConcurrently: 4,
          eachBatch: async ({ batch }) => {
            const end = remaining.get(batch.partition);
            if (end === undefined) return;
            for (const m of batch.messages) if (Number(m.offset) < end) visit(m);
            if (Number(batch.lastOffset()) + 1 >= end) {
              remaining.delete(batch.partition);
              consumer.pause([{ topic, partitions: [batch.partition] }]);
              if (remaining.size === 0) resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
    await admin.deleteGroups([groupId]).catch(() => undefined);
  }
}

interface Snapshot {
  /** Id → digest of its latest value (upsert semantics: the last write wins). */
  latest: Map<string, number>;
  unkeyed: number;
}

async function snapshot(kafka: Kafka, admin: Admin, topic: string, filter: TimeFilter): Promise<Snapshot> {
  const latest = new Map<string, number>();
  let unkeyed = 0;
  await scanTopic(kafka, admin, topic, (m) => {
    const at = recordTime(m);
    if ((filter.from !== undefined && at < filter.from) || (filter.to !== undefined && at >= filter.to))
      return;
    const id = messageId(m);
    if (id === undefined) unkeyed++;
    else latest.set(id, digest(m.value));
  });
  return { latest, unkeyed };
}

/** The latest value of each of `ids` in a topic, for the examples. */
async function valuesOf(
  kafka: Kafka,
  admin: Admin,
  topic: string,
  ids: ReadonlySet<string>,
): Promise<Map<string, string>> {
  const values = new Map<string, string>();
  await scanTopic(kafka, admin, topic, (m) => {
    const id = messageId(m);
    if (id !== undefined && ids.has(id)) {
      values.set(
        id,
        m.value === null ? 'null (tombstone)' : m.value.toString('utf8').slice(0, EXAMPLE_CHARS),
      );
    }
  });
  return values;
}

/**
 * Compares a live sink topic with its shadow by deterministic id, taking each id's latest value
 * (what an upserting consumer or a compacted topic keeps). Memory: one map entry per distinct id
 * on each side; the example values are read in a second pass, only when there are differences.
 */
export async function diffTopics(
  kafka: Kafka,
  live: string,
  shadow: string,
  options: TimeFilter & { examples?: number } = {},
): Promise<TopicDiff> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    for (const [topic, side] of [
      [live, 'live'],
      [shadow, 'shadow'],
    ] as const) {
      if (!existing.has(topic)) throw new FlotillaError(`the ${side} topic '${topic}' does not exist`);
    }
    const a = await snapshot(kafka, admin, live, options);
    const b = await snapshot(kafka, admin, shadow, options);
    const wanted = options.examples ?? 5;
    const result: TopicDiff = {
      live,
      shadow,
      liveIds: a.latest.size,
      shadowIds: b.latest.size,
      missing: 0,
      extra: 0,
      different: 0,
      unkeyed: a.unkeyed + b.unkeyed,
      examples: [],
    };
    const perKind = { missing: 0, extra: 0, different: 0 };
    const note = (kind: DiffExample['kind'], id: string) => {
      result[kind]++;
      if (perKind[kind]++ < wanted) result.examples.push({ kind, id });
    };
    for (const [id, d] of a.latest) {
      const other = b.latest.get(id);
      if (other === undefined) note('missing', id);
      else if (other !== d) note('different', id);
    }
    for (const id of b.latest.keys()) if (!a.latest.has(id)) note('extra', id);
    if (result.examples.length > 0) {
      const ids = new Set(result.examples.map((e) => e.id));
      const [liveValues, shadowValues] = [
        await valuesOf(kafka, admin, live, ids),
        await valuesOf(kafka, admin, shadow, ids),
      ];
      for (const e of result.examples) {
        if (e.kind !== 'extra') e.live = liveValues.get(e.id);
        if (e.kind !== 'missing') e.shadow = shadowValues.get(e.id);
      }
    }
    return result;
  } finally {
    await admin.disconnect();
  }
}

/** No id missing, extra or different. */
export const isSame = (d: TopicDiff) => d.missing === 0 && d.extra === 0 && d.different === 0;
