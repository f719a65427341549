import { createHash } from 'node:crypto';
import { createClient } from '@clickhouse/client';
import type { KafkaMessage } from 'kafkajs';
import pg from 'pg';
import { type FlotillaRecord, passThroughId } from '../core/record.js';
import { kafkaFor } from '../kafka/client.js';
import { scopeOf } from '../steps/expression-step.js';
import { type ExtractTaskConfig, type ParamValue, PLACEHOLDER } from './pipeline-schema.js';
import type { StagingWriter, TaskOutput } from './store.js';
import { PAGE_SIZE, TaskConfigError, type TaskContext, type TaskExecutor } from './task-context.js';
import { epochMs } from './time.js';

/** A source of an extract task that cannot be read as configured (a bad time bound, no URL). */
export class ExtractError extends TaskConfigError {}

type Source = ExtractTaskConfig['source'];

function requireUrl(given: string | undefined, envName: string): string {
  const url = given ?? process.env[envName];
  if (!url) throw new ExtractError(`no URL: set 'url' on the source or ${envName} in the environment`);
  return url;
}

/** A ClickHouse string literal: backslashes and quotes escaped. */
function clickhouseString(text: string): string {
  return `'${text.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

const CLICKHOUSE_TYPE = /^[A-Za-z][A-Za-z0-9_]*(\([A-Za-z0-9_, ']*\))?$/;

/**
 * A ClickHouse query with its placeholders replaced by escaped literals: `{name}` by the value
 * (a number as is, anything else as a string), `{name:Type}` by `CAST('value' AS Type)`. Literals
 * rather than server-side query parameters, which older servers (before 19.x) do not have.
 */
export function clickhouseQuery(query: string, params: Record<string, ParamValue>): string {
  return query.replace(PLACEHOLDER, (_, name: string, type?: string) => {
    const value = params[name] as ParamValue;
    if (type === undefined)
      return typeof value === 'number' ? String(value) : clickhouseString(String(value));
    if (!CLICKHOUSE_TYPE.test(type.trim()))
      throw new ExtractError(`'{${name}:${type}}': not a ClickHouse type`);
    return `CAST(${clickhouseString(String(value))} AS ${type.trim()})`;
  });
}

/** PostgreSQL bind parameters: each `{name}` becomes `$n` (the same name, the same n). */
export function postgresQuery(
  query: string,
  params: Record<string, ParamValue>,
): { text: string; values: ParamValue[] } {
  const index = new Map<string, number>();
  const values: ParamValue[] = [];
  const text = query.replace(PLACEHOLDER, (_, name: string) => {
    let n = index.get(name);
    if (n === undefined) {
      values.push(params[name] as ParamValue);
      n = values.length;
      index.set(name, n);
    }
    return `$${n}`;
  });
  return { text, values };
}

/**
 * Turns query rows into records. A row's id is the `id` expression, else a hash of the row: the
 * same row extracted again (a retry, a re-run of the same window) gets the same id, so sinks
 * upsert it instead of adding it twice.
 */
class RowRecords {
  private index = 0;

  constructor(
    private readonly config: ExtractTaskConfig,
    private readonly ctx: TaskContext,
  ) {}

  toRecord(row: Record<string, unknown>): FlotillaRecord {
    // Dates become ISO strings here, as the staging table (JSON) would make them anyway.
    const value = JSON.parse(JSON.stringify(row)) as Record<string, unknown>;
    const { config, ctx } = this;
    const source = {
      topic: `${ctx.pipeline.config.name}.${ctx.task}`,
      partition: 0,
      offset: String(this.index++),
    };
    const record: FlotillaRecord = {
      id: '',
      key: null,
      value,
      timestamp: ctx.runStartedAt,
      headers: {},
      source,
    };
    const scope = scopeOf(record);
    record.id = config.id
      ? String(config.id.evaluate(scope))
      : `${ctx.task}/${createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 32)}`;
    if (config.key) {
      const key = config.key.evaluate(scope);
      record.key = key === null || key === undefined ? null : String(key);
    }
    if (config.time) {
      const time = epochMs(config.time.evaluate(scope));
      if (time === null) throw new ExtractError(`row ${source.offset}: 'time' is not a timestamp`);
      record.timestamp = time;
    }
    return record;
  }
}

/** Stages rows as they stream in, a page at a time. */
async function stageRows(
  rows: AsyncIterable<Record<string, unknown>[]>,
  config: ExtractTaskConfig,
  ctx: TaskContext,
  writer: StagingWriter,
): Promise<void> {
  const records = new RowRecords(config, ctx);
  for await (const page of rows) {
    await writer.write(page.map((r) => records.toRecord(r)));
    ctx.progress(writer.rows);
  }
}

async function* clickhouseRows(
  source: Extract<Source, { kind: 'clickhouse' }>,
  params: Record<string, ParamValue>,
): AsyncGenerator<Record<string, unknown>[]> {
  const client = createClient({
    url: requireUrl(source.url, 'CLICKHOUSE_URL'),
    ...(source.database ? { database: source.database } : {}),
    // 64-bit integers as JSON numbers (ms timestamps, counts), not strings.
    clickhouse_settings: { output_format_json_quote_64bit_integers: 0 },
  });
  try {
    const result = await client.query({
      query: clickhouseQuery(source.query, params),
      format: 'JSONEachRow',
    });
    let page: Record<string, unknown>[] = [];
    for await (const rows of result.stream()) {
      for (const row of rows) {
        page.push(row.json() as Record<string, unknown>);
        if (page.length >= PAGE_SIZE) {
          yield page;
          page = [];
        }
      }
    }
    if (page.length > 0) yield page;
  } finally {
    await client.close();
  }
}

const INT8_OID = 20;

/**
 * pg's type parsers, except that a bigint (`count(*)`, epoch ms, `bigint` columns) becomes a
 * number when it is exact as one — as ClickHouse's 64-bit integers do — instead of a string that
 * window times and numeric rules would refuse. Beyond 2^53 it stays a string.
 */
const extractTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8_OID && format !== 'binary') {
      return (text: string) => {
        const n = Number(text);
        return Number.isSafeInteger(n) ? n : text;
      };
    }
    return pg.types.getTypeParser(oid, format);
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** Rows through a cursor: memory holds one page, whatever the query returns. */
async function* postgresRows(
  source: Extract<Source, { kind: 'postgres' }>,
  params: Record<string, ParamValue>,
): AsyncGenerator<Record<string, unknown>[]> {
  const client = new pg.Client({
    connectionString: requireUrl(source.url, 'PG_URL'),
    types: extractTypes,
  });
  client.on('error', () => {});
  await client.connect();
  try {
    const { text, values } = postgresQuery(source.query, params);
    await client.query('BEGIN READ ONLY');
    await client.query(`DECLARE flotilla_extract NO SCROLL CURSOR FOR ${text}`, values);
    for (;;) {
      const res = await client.query(`FETCH ${PAGE_SIZE} FROM flotilla_extract`);
      if (res.rows.length === 0) break;
      yield res.rows;
    }
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
}

function timeBound(bound: string | number, params: Record<string, ParamValue>, what: string): number {
  const text =
    typeof bound === 'number' ? bound : bound.replace(PLACEHOLDER, (_, n: string) => String(params[n]));
  const ms = epochMs(text);
  if (ms === null) throw new ExtractError(`kafka '${what}': '${String(text)}' is not ms or ISO-8601`);
  return ms;
}

function kafkaRecord(topic: string, partition: number, m: KafkaMessage): FlotillaRecord {
  const source = { topic, partition, offset: m.offset };
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(m.headers ?? {})) if (v !== undefined) headers[k] = String(v);
  return {
    id: passThroughId(source),
    key: m.key ? m.key.toString() : null,
    value: m.value ?? Buffer.alloc(0),
    timestamp: Number(m.timestamp),
    headers,
    source,
  };
}

/**
 * Stages the records of a topic whose timestamps are in [from, to): each partition is read from
 * the first offset at `from` to the first offset at `to` (found by timestamp), through a consumer
 * group of this run and task that commits nothing.
 */
async function stageKafkaRange(
  source: Extract<Source, { kind: 'kafka' }>,
  ctx: TaskContext,
  writer: StagingWriter,
): Promise<void> {
  const from = timeBound(source.from, ctx.params, 'from');
  const to = timeBound(source.to, ctx.params, 'to');
  if (to <= from) throw new ExtractError(`kafka range is empty: 'to' (${to}) is not after 'from' (${from})`);
  const kafka = kafkaFor(source, { topology: ctx.pipeline.config.name, logger: ctx.logger });
  const admin = kafka.admin();
  await admin.connect();
  const groupId = `flotilla-extract-${ctx.runId}-${ctx.task}`;
  try {
    const starts = await admin.fetchTopicOffsetsByTimestamp(source.topic, from);
    const ends = await admin.fetchTopicOffsetsByTimestamp(source.topic, to);
    const remaining = new Map<number, { start: bigint; end: bigint }>();
    for (const s of starts) {
      const end = ends.find((e) => e.partition === s.partition);
      if (end && BigInt(end.offset) > BigInt(s.offset))
        remaining.set(s.partition, { start: BigInt(s.offset), end: BigInt(end.offset) });
    }
    if (remaining.size === 0) return;
    const consumer = kafka.consumer({ groupId });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: source.topic });
      const done = new Promise<void>((resolve, reject) => {
        consumer
          .run({
            autoCommit: false,
            eachBatch: async ({ batch }) => {
              const range = remaining.get(batch.partition);
              if (!range) return;
              const records = batch.messages
                .filter(
                  (m) =>
                    BigInt(m.offset) < range.end && Number(m.timestamp) >= from && Number(m.timestamp) < to,
                )
                .map((m) => kafkaRecord(batch.topic, batch.partition, m));
              await writer.write(records);
              ctx.progress(writer.rows);
              const last = BigInt(batch.lastOffset());
              if (last + 1n >= range.end) {
                remaining.delete(batch.partition);
                consumer.pause([{ topic: source.topic, partitions: [batch.partition] }]);
                if (remaining.size === 0) resolve();
              }
            },
          })
          .catch(reject);
      });
      for (const [partition, { start }] of remaining) {
        consumer.seek({ topic: source.topic, partition, offset: start.toString() });
      }
      await done;
    } finally {
      await consumer.disconnect();
    }
    await admin.deleteGroups([groupId]).catch(() => {});
  } finally {
    await admin.disconnect();
  }
}

export const runExtract: TaskExecutor<ExtractTaskConfig> = async (config, ctx): Promise<TaskOutput> => {
  const writer = await ctx.store.openStaging(ctx.runId, ctx.task);
  const { source } = config;
  if (source.kind === 'kafka') await stageKafkaRange(source, ctx, writer);
  else if (source.kind === 'clickhouse')
    await stageRows(clickhouseRows(source, ctx.params), config, ctx, writer);
  else await stageRows(postgresRows(source, ctx.params), config, ctx, writer);
  return { table: writer.table, rows: writer.rows };
};
