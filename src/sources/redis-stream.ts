import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ChainableCommander, Redis, ReplyError } from 'ioredis';
import { Counter } from 'prom-client';
import { z } from 'zod';
import type {
  BatchHandler,
  ComponentContext,
  ComponentDefinition,
  DeadLetterWriter,
  Source,
} from '../core/component.js';
import { FlotillaError } from '../core/errors.js';
import type { DeadLetter, FlotillaRecord } from '../core/record.js';
import type { Logger } from '../observability/logger.js';
import { metrics, registry } from '../observability/metrics.js';
import { deadLetterHeaders, deadLetterValue } from '../runtime/dead-letter.js';
import { backoffMs } from '../runtime/retry.js';
import { InflightBudget } from './inflight.js';

const DEFAULT_URL = 'redis://127.0.0.1:6379';

export const redisStreamSourceSchema = z
  .object({
    kind: z.literal('redis-stream'),
    url: z.string().min(1).optional().describe(`Redis URL (default: $REDIS_URL, else ${DEFAULT_URL}).`),
    streams: z
      .array(z.string().min(1))
      .min(1)
      .describe('Stream keys to consume. Each is one partition: topic = the stream key, partition 0.'),
    group: z.string().min(1).optional().describe("Consumer group (default: the topology's group)."),
    consumer: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Consumer name in the group (default: <hostname>-<pid>). A stable name re-reads its own pending entries at once after a restart.',
      ),
    start: z
      .enum(['earliest', 'latest'])
      .default('earliest')
      .describe('Where a group this source creates starts: the first entry (0) or only new entries ($).'),
    batch_count: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(500)
      .describe('Entries per stream per XREADGROUP (and per XAUTOCLAIM), at most (COUNT).'),
    block_ms: z
      .number()
      .int()
      .min(1)
      .max(60_000)
      .default(1000)
      .describe(
        'How long an XREADGROUP waits when there is nothing new (BLOCK). A new entry wakes it at once: this only sets how often an idle reader polls.',
      ),
    max_inflight_records: z
      .number()
      .int()
      .min(1)
      .default(10_000)
      .describe('Entries read but not yet acknowledged (XACK), at most; reading waits above it.'),
    max_inflight_bytes: z
      .number()
      .int()
      .min(1024)
      .default(64 * 1024 * 1024)
      .describe('Bytes of entries read but not yet acknowledged, at most.'),
    ack_interval_ms: z
      .number()
      .int()
      .min(0)
      .max(10_000)
      .default(10)
      .describe(
        'XACK at most this often, each with every id acknowledged since (0: as soon as the event loop is free). Not on the latency path: it trades round trips for what a crash re-delivers.',
      ),
    claim_idle_ms: z
      .number()
      .int()
      .min(100)
      .default(60_000)
      .describe(
        'Entries pending on another consumer that has not touched them for this long are claimed (XAUTOCLAIM) and re-delivered here. Checked every claim_idle_ms / 4.',
      ),
    trim: z
      .object({
        maxlen: z
          .number()
          .int()
          .min(1)
          .describe(
            'Keep about this many entries; entries some group has not acknowledged are never trimmed.',
          ),
        interval_ms: z.number().int().min(100).default(5000).describe('How often the stream is trimmed.'),
      })
      .strict()
      .optional()
      .describe('Trim the streams periodically (XTRIM MINID ~), never past what every group acknowledged.'),
  })
  .strict()
  .describe(
    'Consumes Redis streams in a consumer group (XREADGROUP): XACK after the sinks acknowledge, XAUTOCLAIM of entries left by dead consumers.',
  );

export type RedisStreamSourceConfig = z.infer<typeof redisStreamSourceSchema>;

const streamMetrics = {
  claimed: new Counter({
    name: 'flotilla_redis_stream_claimed_total',
    help: 'Entries claimed (XAUTOCLAIM) from consumers idle longer than claim_idle_ms, and re-delivered.',
    labelNames: ['topology', 'stream'] as const,
    registers: [registry],
  }),
  trimmed: new Counter({
    name: 'flotilla_redis_stream_trimmed_total',
    help: 'Entries the source trimmed (XTRIM MINID ~), all acknowledged by every group of the stream.',
    labelNames: ['topology', 'stream'] as const,
    registers: [registry],
  }),
};

/** An entry as XREADGROUP and XAUTOCLAIM return it; fields are null for an entry deleted while pending. */
type EntryReply = [id: Buffer, fields: Buffer[] | null];
type StreamsReply = [stream: Buffer, entries: EntryReply[]][] | null;
/** XAUTOCLAIM: the cursor of the next call (0-0 at the end), the entries, and (Redis 7) the ids deleted. */
type AutoclaimReply = [next: Buffer, entries: EntryReply[], deleted?: Buffer[]];

/** The fields `flotilla produce` writes; every other field of an entry becomes a header. */
const KEY_FIELD = 'key';
const VALUE_FIELD = 'value';

/** XACK retries while stopping, before leaving the entries pending (they are re-delivered). */
const ACK_ATTEMPTS_ON_STOP = 3;

/** A stream entry id `<ms>-<seq>`, comparable. */
interface EntryId {
  ms: bigint;
  seq: bigint;
}

function parseId(id: string): EntryId {
  const dash = id.indexOf('-');
  return dash < 0
    ? { ms: BigInt(id), seq: 0n }
    : { ms: BigInt(id.slice(0, dash)), seq: BigInt(id.slice(dash + 1)) };
}

const formatId = (id: EntryId) => `${id.ms}-${id.seq}`;
const idBefore = (a: EntryId, b: EntryId) => a.ms < b.ms || (a.ms === b.ms && a.seq < b.seq);

/** A record per entry: id `<stream>/<entry id>`, key and value from the fields, time from the id. */
function toRecord(stream: string, id: string, fields: Buffer[]): { record: FlotillaRecord; bytes: number } {
  let key: string | null = null;
  let value: Buffer | null = null;
  let bytes = 0;
  const headers: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = (fields[i] as Buffer).toString('utf8');
    const content = fields[i + 1] as Buffer;
    bytes += content.length;
    if (name === KEY_FIELD) key = content.toString('utf8');
    else if (name === VALUE_FIELD) value = content;
    else headers[name] = content.toString('utf8');
  }
  return {
    record: {
      id: `${stream}/${id}`,
      key,
      value,
      timestamp: Number(id.slice(0, id.indexOf('-'))),
      headers,
      source: { topic: stream, partition: 0, offset: id },
    },
    bytes,
  };
}

/** The fields of a dead letter's entry: `key` (when the record has one), `value`, then its headers. */
export function deadLetterFields(letter: DeadLetter): (string | Buffer)[] {
  const fields: (string | Buffer)[] = [];
  if (letter.record.key !== null) fields.push(KEY_FIELD, letter.record.key);
  fields.push(VALUE_FIELD, deadLetterValue(letter));
  for (const [name, value] of Object.entries(deadLetterHeaders(letter))) {
    // A header cannot take the place of the record's own key or value.
    if (name !== KEY_FIELD && name !== VALUE_FIELD) fields.push(name, value);
  }
  return fields;
}

/** The URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

function newRedis(url: string, role: string, log: Logger): Redis {
  const redis = new Redis(url, { lazyConnect: true, connectionName: `flotilla-${role}` });
  // ioredis reconnects by itself; the commands that fail meanwhile report the outage.
  redis.on('error', (err: Error) => log.debug({ err, role }, 'redis connection error'));
  return redis;
}

async function connectRedis(url: string, role: string, log: Logger): Promise<Redis> {
  const redis = newRedis(url, role, log);
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw new FlotillaError(`cannot connect to Redis at ${redactUrl(url)}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return redis;
}

/** Runs a pipeline (one round trip); the first command that failed fails it, naming `what`. */
async function execPipeline(pipeline: ChainableCommander, what: string): Promise<unknown[]> {
  const replies = (await pipeline.exec()) ?? [];
  const failed = replies.find(([err]) => err)?.[0];
  if (failed) throw new FlotillaError(`${what} failed: ${failed.message}`, { cause: failed });
  return replies.map(([, reply]) => reply);
}

/** A Redis error reply with this code (e.g. BUSYGROUP). */
function isReplyError(err: unknown, code: string): boolean {
  return err instanceof ReplyError && (err as Error).message.startsWith(code);
}

/** A flat `name, value, name, value` reply (XINFO) as an object. */
function pairs(flat: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}

/** One consumer group of a stream, from XINFO GROUPS. */
interface GroupInfo {
  name: string;
  pending: number;
  lastDeliveredId: string;
  /** Entries not yet delivered to the group; null when Redis cannot tell (entries deleted). */
  lag: number | null;
}

/** Entries handed to the handler (or found deleted) and not yet acknowledged with XACK. */
interface InflightEntries {
  stream: string;
  /** Every id to XACK: the records' and those of entries deleted while pending. */
  ids: string[];
  bytes: number;
  /** When these entries were delivered to this consumer or last kept alive (see `keepAlive`). */
  deliveredAt: number;
}

/** Dead letters as entries of a Redis stream, with the dead-letter headers as fields. */
export class RedisStreamDeadLetters implements DeadLetterWriter {
  constructor(
    readonly stream: string,
    private readonly redis: Redis,
  ) {}

  async write(letters: DeadLetter[]): Promise<void> {
    const pipeline = this.redis.pipeline();
    for (const letter of letters) pipeline.xadd(this.stream, '*', ...deadLetterFields(letter));
    await execPipeline(pipeline, `XADD of ${letters.length} dead letters to stream '${this.stream}'`);
  }

  async close(): Promise<void> {
    // Never used: nothing to quit (QUIT would connect first).
    if (this.redis.status === 'wait') this.redis.disconnect();
    else await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/**
 * A Redis Streams consumer-group source, shaped like the Kafka source: entries are read with
 * XREADGROUP on a connection of their own and handed to the handler without waiting, so the
 * next read overlaps with the sinks; what is in flight is bounded by records and bytes, and
 * reading waits above the bounds. An entry is acknowledged (XACK, many ids at once, on a second
 * connection) only once the handler resolved; entries of a failed batch stay pending and are
 * claimed again. Entries left pending by a consumer idle longer than `claim_idle_ms` are claimed
 * (XAUTOCLAIM) and re-delivered. On stop: reading stops, in-flight batches drain, XACK, quit.
 */
export class RedisStreamSource implements Source {
  readonly kind = 'redis-stream';
  readonly url: string;
  readonly group: string;
  readonly consumer: string;
  private reader: Redis | undefined;
  private control: Redis | undefined;
  /** CLIENT ID of the reader: `stop` unblocks its XREADGROUP with CLIENT UNBLOCK. */
  private readerId: number | undefined;
  private handler: BatchHandler | undefined;
  private readonly budget: InflightBudget;
  private readonly inflight = new Set<InflightEntries>();
  /** Acknowledged by the handler, waiting for XACK. */
  private ackQueue: InflightEntries[] = [];
  private acking: Promise<void> | undefined;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Maintenance tasks running now: `run` waits for them before closing the connections. */
  private readonly tasks = new Set<Promise<void>>();
  private stopping = false;
  private joined = false;
  private running: Promise<void> | undefined;
  private readonly log: Logger;

  constructor(
    readonly config: RedisStreamSourceConfig,
    private readonly ctx: ComponentContext,
  ) {
    this.url = config.url ?? process.env.REDIS_URL ?? DEFAULT_URL;
    this.group = config.group ?? ctx.group;
    this.consumer = config.consumer ?? `${hostname()}-${process.pid}`;
    this.log = ctx.logger.child({ source: 'redis-stream', group: this.group, consumer: this.consumer });
    this.budget = new InflightBudget(
      { records: config.max_inflight_records, bytes: config.max_inflight_bytes },
      ctx.topology,
    );
  }

  deadLetterWriter(stream: string): RedisStreamDeadLetters {
    return new RedisStreamDeadLetters(stream, newRedis(this.url, 'dead-letters', this.log));
  }

  ready(): boolean {
    return this.joined && !this.stopping && this.reader?.status === 'ready';
  }

  run(handler: BatchHandler): Promise<void> {
    this.handler = handler;
    this.running = this.consume();
    return this.running;
  }

  /** Stops reading; resolves once in-flight batches are acknowledged (XACK) and the connections closed. */
  async stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      // Wakes a blocked XREADGROUP as if it timed out (no entry is lost). A read not blocked yet
      // (or on a connection re-established since) returns after block_ms at most.
      if (this.readerId !== undefined) {
        await this.control?.client('UNBLOCK', this.readerId).catch(() => undefined);
      }
    }
    await this.running?.catch(() => undefined);
  }

  private async consume(): Promise<void> {
    const { streams } = this.config;
    try {
      this.reader = await connectRedis(this.url, 'stream-reader', this.log);
      this.control = await connectRedis(this.url, 'stream-control', this.log);
      for (const stream of streams) await this.ensureGroup(stream);
      this.readerId = Number(await this.reader.client('ID'));
      this.joined = true;
      this.log.info({ streams }, 'consuming redis streams');
      this.repeat('maintain', this.config.claim_idle_ms / 4, () => this.maintain());
      const { trim } = this.config;
      if (trim) this.repeat('trim', trim.interval_ms, () => this.trim(trim.maxlen));
      for (const stream of streams) await this.readOwnPending(stream);
      await this.readNew();
      // Drain: every batch handed over is acknowledged (XACK) or given up.
      await this.budget.drained();
    } finally {
      // Also when consuming failed: no maintenance task may start again.
      this.stopping = true;
      for (const t of this.timers.values()) clearTimeout(t);
      await Promise.all(this.tasks);
      await Promise.all([this.reader, this.control].map((r) => r?.quit().catch(() => r.disconnect())));
      this.log.info('redis stream source stopped');
    }
  }

  private get redis(): Redis {
    if (!this.control) throw new FlotillaError('the redis-stream source is not running');
    return this.control;
  }

  private async ensureGroup(stream: string): Promise<void> {
    const from = this.config.start === 'latest' ? '$' : '0';
    try {
      await this.redis.xgroup('CREATE', stream, this.group, from, 'MKSTREAM');
      this.log.info({ stream, from }, 'consumer group created');
    } catch (err) {
      if (isReplyError(err, 'BUSYGROUP')) return;
      throw new FlotillaError(
        `cannot create consumer group '${this.group}' on stream '${stream}': ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  private xreadgroup(streamsAndIds: string[], blockMs?: number): Promise<StreamsReply> {
    const reader = this.reader as Redis;
    const block = blockMs === undefined ? [] : ['BLOCK', blockMs];
    return reader.callBuffer(
      'XREADGROUP',
      'GROUP',
      this.group,
      this.consumer,
      'COUNT',
      this.config.batch_count,
      ...block,
      'STREAMS',
      ...streamsAndIds,
    ) as Promise<StreamsReply>;
  }

  /** XREADGROUP once the budget has room, retried with backoff until answered; null once stopping. */
  private async read(streamsAndIds: string[], blockMs?: number): Promise<StreamsReply> {
    for (let attempt = 0; ; attempt++) {
      if (this.budget.full()) await this.budget.waitForRoom();
      if (this.stopping) return null;
      try {
        return await this.xreadgroup(streamsAndIds, blockMs);
      } catch (err) {
        if (this.stopping) return null;
        await this.recoverRead(err, attempt);
      }
    }
  }

  /** Entries delivered to this consumer name before and never acknowledged (a restart with a stable name). */
  private async readOwnPending(stream: string): Promise<void> {
    for (let after = '0'; ; ) {
      const entries = (await this.read([stream, after]))?.[0]?.[1] ?? [];
      const last = entries.at(-1);
      if (!last) return;
      after = last[0].toString('latin1');
      this.log.info({ stream, entries: entries.length }, 're-delivering entries pending on this consumer');
      this.dispatch(stream, entries);
    }
  }

  /** The read loop: the next XREADGROUP is issued as soon as a batch is handed over, within the budget. */
  private async readNew(): Promise<void> {
    const { streams, block_ms } = this.config;
    const streamsAndIds = [...streams, ...streams.map(() => '>')];
    while (!this.stopping) {
      const reply = await this.read(streamsAndIds, block_ms);
      if (reply) for (const [stream, entries] of reply) this.dispatch(stream.toString('utf8'), entries);
    }
  }

  /** A stream or group deleted under us is recreated; any other failure waits with backoff. */
  private async recoverRead(err: unknown, attempt: number): Promise<void> {
    if (isReplyError(err, 'NOGROUP')) {
      this.log.warn({ err }, 'stream or consumer group gone; creating it again');
      for (const stream of this.config.streams) await this.ensureGroup(stream).catch(() => undefined);
      return;
    }
    this.log.warn({ err, attempt }, 'XREADGROUP failed; retrying');
    await sleep(backoffMs(attempt, 5000));
  }

  /** Hands the entries to the handler without waiting; XACK follows its acknowledgement. */
  private dispatch(stream: string, entries: EntryReply[]): void {
    const records: FlotillaRecord[] = [];
    const ids: string[] = [];
    let bytes = 0;
    for (const [rawId, fields] of entries) {
      const id = rawId.toString('latin1');
      ids.push(id);
      // Deleted while pending: nothing to deliver, only the pending entry to clear.
      if (!fields) continue;
      const r = toRecord(stream, id, fields);
      records.push(r.record);
      bytes += r.bytes;
    }
    if (ids.length === 0) return;
    const batch: InflightEntries = { stream, ids, bytes, deliveredAt: Date.now() };
    this.inflight.add(batch);
    this.budget.add(ids.length, bytes);
    if (records.length === 0) {
      this.acknowledge(batch);
      return;
    }
    (this.handler as BatchHandler)({ topic: stream, partition: 0, records }).then(
      () => this.acknowledge(batch),
      (err: unknown) => {
        // Still pending in the group: claimed again once idle for claim_idle_ms.
        this.log.warn(
          { err, stream, entries: ids.length },
          'batch not acknowledged; it will be re-delivered',
        );
        this.forget(batch);
      },
    );
  }

  private acknowledge(batch: InflightEntries): void {
    this.ackQueue.push(batch);
    this.acking ??= this.flushAcks();
  }

  private forget(batch: InflightEntries): void {
    this.inflight.delete(batch);
    this.budget.release(batch.ids.length, batch.bytes);
  }

  /**
   * XACKs what was acknowledged, one XACK per stream in one round trip, at most every
   * ack_interval_ms (0: once the event loop is free); what is acknowledged meanwhile goes in
   * the next one. A failure keeps the ids (and their place in the budget, so reading waits)
   * and retries with backoff.
   */
  private async flushAcks(): Promise<void> {
    const interval = this.config.ack_interval_ms;
    try {
      for (let attempt = 0; this.ackQueue.length > 0; ) {
        await (interval > 0 ? sleep(interval) : new Promise((resolve) => setImmediate(resolve)));
        const batches = this.ackQueue.splice(0);
        try {
          await this.xack(batches);
          attempt = 0;
          for (const b of batches) this.forget(b);
        } catch (err) {
          const entries = batches.reduce((n, b) => n + b.ids.length, 0);
          if (this.stopping && attempt >= ACK_ATTEMPTS_ON_STOP) {
            this.log.warn(
              { err, entries },
              'XACK failed while stopping; the entries stay pending and are re-delivered',
            );
            for (const b of batches) this.forget(b);
            continue;
          }
          this.ackQueue.unshift(...batches);
          this.log.warn({ err, entries, attempt }, 'XACK failed; retrying');
          await sleep(backoffMs(attempt++, 5000));
        }
      }
    } finally {
      this.acking = undefined;
    }
  }

  private async xack(batches: InflightEntries[]): Promise<void> {
    const byStream = new Map<string, string[]>();
    for (const b of batches) {
      const ids = byStream.get(b.stream);
      if (ids) ids.push(...b.ids);
      else byStream.set(b.stream, [...b.ids]);
    }
    const pipeline = this.redis.pipeline();
    for (const [stream, ids] of byStream) pipeline.xack(stream, this.group, ...ids);
    const end = metrics.commitSeconds.startTimer({ topology: this.ctx.topology });
    await execPipeline(pipeline, 'XACK');
    end();
  }

  /** Runs `task` every `ms`, one run at a time, until stop. */
  private repeat(name: string, ms: number, task: () => Promise<void>): void {
    const schedule = () => {
      this.timers.set(
        name,
        setTimeout(() => {
          const run = task()
            .catch((err: unknown) => this.log.warn({ err, task: name }, 'redis stream maintenance failed'))
            .finally(() => {
              this.tasks.delete(run);
              if (!this.stopping) schedule();
            });
          this.tasks.add(run);
        }, ms),
      );
    };
    schedule();
  }

  /** Keeps own entries alive, claims those of dead consumers, forgets dead consumers, reports lag. */
  private async maintain(): Promise<void> {
    await this.keepAlive();
    for (const stream of this.config.streams) {
      if (this.stopping) return;
      await this.claimIdle(stream);
      await this.forgetGoneConsumers(stream);
      await this.reportLag(stream);
    }
  }

  /**
   * Resets the idle time of this consumer's entries in flight for claim_idle_ms / 2 or more
   * (XCLAIM to itself, JUSTID: the delivery count is unchanged), so a slow sink is not taken
   * for a dead consumer. Entries another consumer claimed meanwhile are idle for less, and stay theirs.
   */
  private async keepAlive(): Promise<void> {
    const minIdle = Math.floor(this.config.claim_idle_ms / 2);
    const now = Date.now();
    const due = new Map<string, InflightEntries[]>();
    for (const b of this.inflight) {
      if (now - b.deliveredAt < minIdle) continue;
      due.set(b.stream, [...(due.get(b.stream) ?? []), b]);
    }
    for (const [stream, batches] of due) {
      const ids = batches.flatMap((b) => b.ids);
      await this.redis.xclaim(stream, this.group, this.consumer, minIdle, ...ids, 'JUSTID');
      for (const b of batches) b.deliveredAt = now;
    }
  }

  /** XAUTOCLAIM: entries idle for claim_idle_ms on any consumer are re-delivered here, within the budget. */
  private async claimIdle(stream: string): Promise<void> {
    let cursor = '0-0';
    do {
      if (this.stopping || this.budget.full()) return;
      const [next, entries] = (await this.redis.callBuffer(
        'XAUTOCLAIM',
        stream,
        this.group,
        this.consumer,
        this.config.claim_idle_ms,
        cursor,
        'COUNT',
        this.config.batch_count,
      )) as AutoclaimReply;
      cursor = next.toString('latin1');
      const claimed = this.withoutInflight(stream, entries);
      if (claimed.length > 0) {
        streamMetrics.claimed.inc({ topology: this.ctx.topology, stream }, claimed.length);
        this.log.info({ stream, entries: claimed.length }, 'claimed entries idle on another consumer');
        this.dispatch(stream, claimed);
      }
    } while (cursor !== '0-0');
  }

  /** Entries this consumer already has in flight are not handed over twice. */
  private withoutInflight(stream: string, entries: EntryReply[]): EntryReply[] {
    if (entries.length === 0) return entries;
    const own = new Set<string>();
    for (const b of this.inflight) if (b.stream === stream) for (const id of b.ids) own.add(id);
    return own.size === 0 ? entries : entries.filter(([id]) => !own.has(id.toString('latin1')));
  }

  /**
   * Consumer names are per process (hostname-pid), so they pile up: a consumer with nothing
   * pending that has not read for claim_idle_ms (and two block_ms) is gone, and is deleted. Were
   * it alive after all, its next read creates it again; with nothing pending, nothing is lost.
   */
  private async forgetGoneConsumers(stream: string): Promise<void> {
    const idleMs = Math.max(this.config.claim_idle_ms, 2 * this.config.block_ms);
    const consumers = (await this.redis.xinfo('CONSUMERS', stream, this.group)) as unknown[][];
    for (const c of consumers.map(pairs)) {
      if (c.name === this.consumer || Number(c.pending) > 0 || Number(c.idle) < idleMs) continue;
      await this.redis.xgroup('DELCONSUMER', stream, this.group, String(c.name));
      this.log.info({ stream, gone: c.name }, 'deleted a consumer idle with nothing pending');
    }
  }

  private async groups(stream: string): Promise<GroupInfo[]> {
    const reply = (await this.redis.xinfo('GROUPS', stream)) as unknown[][];
    return reply.map(pairs).map((g) => ({
      name: String(g.name),
      pending: Number(g.pending),
      lastDeliveredId: String(g['last-delivered-id']),
      lag: g.lag === null || g.lag === undefined ? null : Number(g.lag),
    }));
  }

  /** Lag as for Kafka: entries of the stream this group has not acknowledged (pending + undelivered). */
  private async reportLag(stream: string): Promise<void> {
    const own = (await this.groups(stream)).find((g) => g.name === this.group);
    if (own?.lag === null || own === undefined) return;
    metrics.consumerLag.set(
      { topology: this.ctx.topology, topic: stream, partition: '0' },
      own.pending + own.lag,
    );
  }

  /**
   * Trims each stream to about `maxlen` entries with XTRIM MINID ~, never past the oldest entry
   * some group of the stream has not acknowledged (so a lagging or stopped group loses nothing:
   * the stream then grows past maxlen). Where the maxlen-th newest entry lies is estimated from
   * the ids' times (streams have no index by position); `~` trims whole nodes only, so it never
   * cuts past the threshold.
   */
  private async trim(maxlen: number): Promise<void> {
    for (const stream of this.config.streams) {
      if (this.stopping) return;
      const [length, first, last] = (await execPipeline(
        this.redis
          .pipeline()
          .xlen(stream)
          .xrange(stream, '-', '+', 'COUNT', 1)
          .xrevrange(stream, '+', '-', 'COUNT', 1),
        `reading the bounds of stream '${stream}'`,
      )) as [number, [string, string[]][], [string, string[]][]];
      const firstId = first[0]?.[0];
      const lastId = last[0]?.[0];
      if (length <= maxlen || !firstId || !lastId) continue;
      const acknowledged = await this.oldestUnacknowledged(stream);
      if (!acknowledged) continue;
      const from = parseId(firstId).ms;
      const span = parseId(lastId).ms - from;
      const cut: EntryId = { ms: from + (span * BigInt(length - maxlen)) / BigInt(length), seq: 0n };
      const threshold = idBefore(cut, acknowledged) ? cut : acknowledged;
      const removed = await this.redis.xtrim(stream, 'MINID', '~', formatId(threshold));
      if (removed > 0) streamMetrics.trimmed.inc({ topology: this.ctx.topology, stream }, removed);
    }
  }

  /** The oldest entry some group of the stream still needs: its oldest pending, else after its last delivered. */
  private async oldestUnacknowledged(stream: string): Promise<EntryId | undefined> {
    let oldest: EntryId | undefined;
    for (const g of await this.groups(stream)) {
      // XPENDING finds nothing when the group acknowledged its last entries since XINFO.
      const [, lowest] =
        g.pending > 0 ? ((await this.redis.xpending(stream, g.name)) as [number, string | null]) : [0, null];
      const delivered = parseId(g.lastDeliveredId);
      const needed = lowest ? parseId(lowest) : { ms: delivered.ms, seq: delivered.seq + 1n };
      if (!oldest || idBefore(needed, oldest)) oldest = needed;
    }
    return oldest;
  }
}

export const redisStreamSource: ComponentDefinition<typeof redisStreamSourceSchema, Source> = {
  kind: 'redis-stream',
  description: redisStreamSourceSchema.description ?? '',
  schema: redisStreamSourceSchema,
  create: (config, ctx) => new RedisStreamSource(config, ctx),
};
