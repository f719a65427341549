import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Redis, ReplyError } from 'ioredis';
import { z } from 'zod';
import type { ComponentContext, ComponentDefinition, Sink } from '../core/component.js';
import { FlotillaError } from '../core/errors.js';
import type { FlotillaRecord } from '../core/record.js';
import { type CompiledExpression, ExpressionError } from '../expr/index.js';
import { SinkTenancy } from '../tenancy/sink-tenancy.js';
import {
  compileFieldExpression,
  databaseSinkShape,
  identifierSchema,
  refineTenancyStrategy,
} from './shared/config.js';
import { DatabaseSink, type Encoded, type RowFailure, type SinkDriver } from './shared/database-sink.js';
import {
  type ErrorKind,
  errorMessage,
  NotConnectedError,
  RowRefusedError,
  transportErrorKind,
} from './shared/errors.js';
import { type Row, RowMapper, sinkScope } from './shared/rows.js';

/** A key, channel or stream name with `{field}` or `{expression}` parts; `{{` and `}}` are literal braces. */
export interface KeyTemplate {
  source: string;
  render(record: FlotillaRecord): string;
}

/** Literal text, or a placeholder: its text as written and its compiled expression. */
type TemplatePart = string | { text: string; expr: CompiledExpression };

/** A key template that does not parse (an unclosed or unmatched brace). */
export class KeyTemplateError extends FlotillaError {}

/** Compiles a key template; throws KeyTemplateError, or ExpressionError for a bad placeholder. */
export function compileKeyTemplate(source: string): KeyTemplate {
  const parts: TemplatePart[] = [];
  let literal = '';
  for (let i = 0; i < source.length; i++) {
    const ch = source[i];
    const next = source[i + 1];
    if ((ch === '{' && next === '{') || (ch === '}' && next === '}')) {
      literal += ch;
      i++;
    } else if (ch === '{') {
      const end = source.indexOf('}', i);
      if (end < 0) throw new KeyTemplateError(`unclosed '{' at ${i + 1}`);
      if (literal) parts.push(literal);
      literal = '';
      const text = source.slice(i + 1, end);
      parts.push({ text, expr: compileFieldExpression(text) });
      i = end;
    } else if (ch === '}') {
      throw new KeyTemplateError(`unmatched '}' at ${i + 1} (write '}}' for a literal brace)`);
    } else {
      literal += ch;
    }
  }
  if (literal) parts.push(literal);
  return {
    source,
    render(record) {
      const scope = sinkScope(record);
      let out = '';
      for (const part of parts) {
        if (typeof part === 'string') {
          out += part;
          continue;
        }
        let v: unknown;
        try {
          v = part.expr.evaluate(scope);
        } catch (err) {
          throw new RowRefusedError(`'{${part.text}}' in '${source}': ${errorMessage(err)}`, { cause: err });
        }
        if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
          throw new RowRefusedError(`'{${part.text}}' in '${source}' is ${v === null ? 'null' : typeof v}`);
        }
        out += String(v);
      }
      return out;
    },
  };
}

const templateSchema = z
  .string()
  .min(1)
  .transform((source, ctx) => {
    try {
      return compileKeyTemplate(source);
    } catch (err) {
      if (!(err instanceof KeyTemplateError || err instanceof ExpressionError)) throw err;
      ctx.addIssue({ code: 'custom', message: err.message });
      return z.NEVER;
    }
  });

const MODE_OPTIONS = {
  set: ['key', 'as', 'ttl'],
  publish: ['channel', 'dedupe_ttl'],
  xadd: ['stream', 'maxlen', 'dedupe_ttl'],
} as const;

export const redisSinkSchema = z
  .object({
    kind: z.literal('redis'),
    ...databaseSinkShape,
    url: z.string().min(1).describe('Connection string, e.g. redis://127.0.0.1:6379/0.'),
    mode: z
      .enum(['set', 'publish', 'xadd'])
      .default('set')
      .describe('set: latest value per key; publish: a message on a channel; xadd: an entry on a stream.'),
    key: templateSchema.optional().describe("set: the key, e.g. 'latest:{tenant}:{metric}'."),
    as: z
      .enum(['string', 'hash'])
      .optional()
      .describe('set: a JSON string (SET, default) or a hash of the fields (HSET; fields merge).'),
    ttl: z.number().positive().optional().describe('set: seconds until the key expires (default: never).'),
    channel: templateSchema.optional().describe("publish: the channel, e.g. 'alerts:{tenant}'."),
    stream: templateSchema.optional().describe("xadd: the stream key, e.g. 'events:{tenant}'."),
    maxlen: z
      .number()
      .int()
      .positive()
      .optional()
      .describe('xadd: approximate stream length kept (MAXLEN ~; default 100000).'),
    dedupe_ttl: z
      .number()
      .min(0)
      .optional()
      .describe(
        'publish/xadd: seconds a per-id guard key remembers what was sent, so a re-delivered record is not sent twice (default 86400; 0: no guard).',
      ),
    id_field: identifierSchema.default('id').describe('Field that carries the record id.'),
  })
  .strict()
  .superRefine((c, ctx) => {
    refineTenancyStrategy(
      ctx,
      c.tenancy,
      'redis',
      ['row'],
      "Redis has no schemas or named databases; row prefixes every key, channel and stream with the tenant's namespace (prefix + tenant + ':')",
    );
    const allowed: readonly string[] = MODE_OPTIONS[c.mode];
    const target = allowed[0] as keyof typeof c;
    if (c[target] === undefined) {
      ctx.addIssue({ code: 'custom', path: [target], message: `mode ${c.mode} needs '${String(target)}'` });
    }
    for (const option of new Set(Object.values(MODE_OPTIONS).flat())) {
      if (!allowed.includes(option) && c[option] !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [option],
          message: `'${option}' does not apply to mode ${c.mode}`,
        });
      }
    }
  })
  .describe('Writes records to Redis: latest value per key (SET/HSET), PUBLISH, or XADD to a stream.');

export type RedisSinkConfig = z.infer<typeof redisSinkSchema>;

/**
 * Sends once per id and content: the guard key holds a digest of what was last sent for the id;
 * the same digest again is skipped. The XADD/PUBLISH and the guard happen in one script (atomic),
 * the guard last so a refused entry leaves no guard behind.
 */
const XADD_ONCE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;
const PUBLISH_ONCE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('PUBLISH', ARGV[3], ARGV[4])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;
/** HSET then PEXPIRE, so a refused HSET (wrong type) does not set a TTL on someone else's key. */
const HSET_EXPIRE = `redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return redis.call('PEXPIRE', KEYS[1], ARGV[1])`;

interface GuardedCommands {
  xaddOnce(...args: (string | number)[]): unknown;
  publishOnce(...args: (string | number)[]): unknown;
  hsetExpire(...args: (string | number)[]): unknown;
}

/** The key (or channel) and what goes there: a JSON text, or field/value pairs. */
interface Payload {
  target: string;
  value: string | string[];
}

const TRANSIENT_REPLY = /^(LOADING|BUSY|TRYAGAIN|MASTERDOWN|CLUSTERDOWN|OOM|NOREPLICAS|READONLY)\b/;

export function classifyRedisError(err: unknown): ErrorKind {
  const transport = transportErrorKind(err);
  if (transport) return transport;
  const message = errorMessage(err);
  if (err instanceof ReplyError) {
    if (TRANSIENT_REPLY.test(message)) return 'overloaded';
    if (/^(NOSCRIPT|NOAUTH|NOPERM|WRONGPASS)\b/.test(message)) return 'other';
    // A reply error to one pipelined command is about its key or value (WRONGTYPE, too large).
    return 'row';
  }
  if (/Command timed out/.test(message)) return 'timeout';
  if (/Stream isn't writeable|Connection is closed|MaxRetriesPerRequest/i.test(message)) {
    return 'connection';
  }
  return 'other';
}

function fieldText(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function digest(value: string | string[]): string {
  const hash = createHash('sha1');
  if (typeof value === 'string') hash.update(value);
  else for (const part of value) hash.update(`${part.length}:${part}`);
  return hash.digest('base64');
}

class RedisDriver implements SinkDriver<Payload> {
  private readonly redis: Redis & GuardedCommands;
  private readonly mapper: RowMapper;
  private readonly target: KeyTemplate;
  private readonly timeoutMs: number;
  private readonly guardTtlMs: number;
  private readonly flat: boolean;
  private readonly tenancy: SinkTenancy | undefined;

  constructor(
    private readonly config: RedisSinkConfig,
    ctx: ComponentContext,
  ) {
    this.mapper = new RowMapper(config.columns, [config.id_field]);
    this.tenancy = config.tenancy && new SinkTenancy(config.tenancy);
    this.target = (config.key ?? config.channel ?? config.stream) as KeyTemplate;
    this.timeoutMs = Math.round(config.timeout * 1000);
    this.guardTtlMs = Math.round((config.dedupe_ttl ?? 86_400) * 1000);
    this.flat = config.mode === 'xadd' || config.as === 'hash';
    // No offline queue: while disconnected a write fails at once (retriable) instead of piling up.
    this.redis = new Redis(config.url, {
      enableOfflineQueue: false,
      connectTimeout: this.timeoutMs,
      commandTimeout: this.timeoutMs,
    }) as Redis & GuardedCommands;
    this.redis.on('error', (err) => ctx.logger.debug({ err, sink: config.name }, 'redis connection error'));
    this.redis.defineCommand('xaddOnce', { numberOfKeys: 2, lua: XADD_ONCE });
    this.redis.defineCommand('publishOnce', { numberOfKeys: 1, lua: PUBLISH_ONCE });
    this.redis.defineCommand('hsetExpire', { numberOfKeys: 1, lua: HSET_EXPIRE });
  }

  /** Waits (up to the timeout) for the connection the client keeps re-establishing. */
  prepare(): Promise<void> {
    return this.connected(AbortSignal.timeout(this.timeoutMs));
  }

  rowKey(record: FlotillaRecord): string {
    return this.tenancy ? this.tenancy.rowKey(record) : record.id;
  }

  encode(record: FlotillaRecord): { payload: Payload; bytes: number } {
    // With tenancy, the tenant's namespace prefixes the key, channel or stream (and so its guard
    // key); it is checked first, so a bad tenant is what a refused record reports.
    const namespace = this.tenancy?.namespaceOf(record);
    const rendered = this.target.render(record);
    const target = namespace === undefined ? rendered : `${namespace}:${rendered}`;
    const row: Row = this.mapper.map(record);
    let value: string | string[];
    let bytes = target.length;
    if (this.flat) {
      value = [this.config.id_field, record.id];
      for (const [field, v] of Object.entries(row)) {
        if (v === null || v === undefined) continue;
        value.push(field, fieldText(v));
      }
      for (const part of value) bytes += part.length;
    } else {
      value = JSON.stringify({ [this.config.id_field]: record.id, ...row });
      bytes += value.length;
    }
    return { payload: { target, value }, bytes };
  }

  async flush(rows: Encoded<Payload>[]): Promise<readonly RowFailure[]> {
    const pipeline = this.redis.pipeline() as ReturnType<Redis['pipeline']> & GuardedCommands;
    for (const { record, payload } of rows) this.queue(pipeline, record, payload);
    const replies = (await pipeline.exec()) ?? [];
    const failures: RowFailure[] = [];
    replies.forEach(([err], index) => {
      if (err) failures.push({ index, error: err });
    });
    return failures;
  }

  classify(err: unknown): ErrorKind {
    return classifyRedisError(err);
  }

  /** PING, once connected: a check right after start waits for the first connection. */
  async ping(signal?: AbortSignal): Promise<void> {
    await this.connected(signal ?? AbortSignal.timeout(this.timeoutMs));
    await this.redis.ping();
  }

  /** Waits for the connection (commands fail at once without one: no offline queue) until `signal` aborts. */
  private async connected(signal: AbortSignal): Promise<void> {
    if (this.redis.status === 'ready') return;
    try {
      await once(this.redis, 'ready', { signal });
    } catch (err) {
      // `once` rejects on the client's next 'error' (a failed reconnect) or when `signal` aborts.
      throw new NotConnectedError(`no Redis connection (${this.redis.status}): ${errorMessage(err)}`, {
        cause: err,
      });
    }
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /** One command per row, so reply i is row i. */
  private queue(
    pipeline: ReturnType<Redis['pipeline']> & GuardedCommands,
    record: FlotillaRecord,
    { target, value }: Payload,
  ): void {
    const { mode, ttl } = this.config;
    const guard = this.guardTtlMs > 0 ? `{${target}}:flotilla:seen:${record.id}` : undefined;
    if (mode === 'set' && typeof value === 'string') {
      if (ttl) pipeline.set(target, value, 'PX', Math.round(ttl * 1000));
      else pipeline.set(target, value);
    } else if (mode === 'set') {
      if (ttl) pipeline.hsetExpire(target, Math.round(ttl * 1000), ...value);
      else pipeline.hset(target, ...value);
    } else if (mode === 'publish' && typeof value === 'string') {
      if (guard) pipeline.publishOnce(guard, digest(value), this.guardTtlMs, target, value);
      else pipeline.publish(target, value);
    } else {
      const maxlen = this.config.maxlen ?? 100_000;
      if (guard) pipeline.xaddOnce(guard, target, digest(value), this.guardTtlMs, maxlen, ...value);
      else pipeline.xadd(target, 'MAXLEN', '~', maxlen, '*', ...value);
    }
  }
}

export const redisSink: ComponentDefinition<typeof redisSinkSchema, Sink> = {
  kind: 'redis',
  description: redisSinkSchema.description ?? '',
  schema: redisSinkSchema,
  // Latest-value keys keep the last record of an id; messages and entries are all sent, in order.
  create: (config, ctx) =>
    new DatabaseSink(
      new RedisDriver(config, ctx),
      config,
      { kind: 'redis', service: 'Redis', lastPerId: config.mode === 'set' },
      ctx,
    ),
};
