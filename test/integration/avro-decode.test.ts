import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { ComponentConfigError } from '../../src/core/errors.js';
import type { FlotillaRecord } from '../../src/core/record.js';
import { AvroCodec, type AvroSchema, readAvroSchema, SchemaRegistryError } from '../../src/kafka/avro.js';
import { buildParts, Worker } from '../../src/runtime/worker.js';
import type { EmbeddedSource } from '../../src/sources/embedded.js';
import { embeddedLog } from '../../src/sources/embedded-log.js';
import { syntheticRecords } from '../../src/sources/synthetic.js';
import { decodeStep, decodeStepSchema } from '../../src/steps/decode.js';
import { loadTopology } from '../../src/topology/load.js';
import { connectOrExplain, serviceUrl } from '../support/services.js';

const run = `${process.pid}-${Date.now()}`;
const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-avro-'));
const metricSchema = path.resolve('schemas/metric.avsc');
const logger = pino({ level: 'silent' });

/** Runs a decode-only topology on the embedded log over `values`; returns the sink lines and dead letters. */
async function decodeThroughTopology(name: string, values: Buffer[], readerSchema?: string) {
  const topic = `in-${name}-${run}`;
  const dlq = `${name}-${run}.dlq`;
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `name: ${name}
source: { kind: embedded, topic: ${topic}, partitions: 1 }
steps:
  - kind: decode
    format: avro
    registry: { url: "\${SCHEMA_REGISTRY_URL}" }
${readerSchema ? `    schema: ${readerSchema}\n` : ''}sinks:
  - { kind: file, path: ${name}.jsonl }
dead_letter: { topic: ${dlq} }
`,
  );
  const topology = loadTopology(file);
  const parts = await buildParts(topology, logger);
  for (const [i, value] of values.entries()) embeddedLog.append(topic, { key: `k${i}`, value }, 0);
  (parts.source as EmbeddedSource).runUntil(() => true);
  await new Worker(topology, parts, logger).run();
  const lines = readFileSync(path.join(dir, `${name}.jsonl`), 'utf8')
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { lines, dead: embeddedLog.read(dlq, 0, 0, 100) };
}

describe('decode step: Avro through the schema registry', () => {
  let codec: AvroCodec;
  let metricId: number;

  beforeAll(async () => {
    codec = new AvroCodec(serviceUrl('SCHEMA_REGISTRY_URL'));
    metricId = await connectOrExplain('SCHEMA_REGISTRY_URL', () =>
      codec.register(`it-avro-decode-${run}-value`, metricSchema),
    );
  });

  it('decodes wire-format records; unknown schema ids and non-wire-format records are dead-lettered', async () => {
    const make = syntheticRecords('metrics', 7);
    const metrics = Array.from({ length: 20 }, (_, i) => make(i).value);
    const writer = await codec.writer(metricId);
    const unknownId = Buffer.concat([
      Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0]),
      writer.encode(metrics[0]).subarray(5),
    ]);
    const values = [
      ...metrics.slice(0, 10).map((m) => writer.encode(m)),
      unknownId,
      Buffer.from(JSON.stringify(metrics[10])),
      ...metrics.slice(10).map((m) => writer.encode(m)),
    ];
    const { lines, dead } = await decodeThroughTopology('avro-decode', values);

    expect(lines).toEqual(metrics.map((m) => ({ ...m, labels: {} })));
    expect(dead.map((d) => d.headers['flotilla.reason'])).toEqual(['decode', 'decode']);
    expect(dead.map((d) => d.headers['flotilla.step'])).toEqual(['decode', 'decode']);
    expect(dead.map((d) => d.headers['flotilla.source.offset'])).toEqual(['10', '11']);
    expect(dead[0]?.headers['flotilla.error']).toBe(
      `schema id ${0x7ffffff0} is not in the registry at ${serviceUrl('SCHEMA_REGISTRY_URL')}`,
    );
    expect(dead[1]?.headers['flotilla.error']).toMatch(/not in Confluent wire format: first byte is 0x7b/);
    // The dead letter keeps the bytes as they came.
    expect(dead[0]?.value.equals(unknownId)).toBe(true);
  });

  it('reads records of an older and a newer writer schema with a reader schema (evolution)', async () => {
    const base = readAvroSchema(metricSchema) as { fields: unknown[] };
    const withUnit = {
      ...base,
      fields: [...base.fields, { name: 'unit', type: ['null', 'string'], default: null }],
    } as AvroSchema;
    const subject = `it-avro-evolution-${run}-value`;
    const v1 = await codec.register(subject, metricSchema);
    const v2 = await codec.registerSchema(subject, withUnit);
    expect(v2).not.toBe(v1);
    const readerFile = path.join(dir, 'metric-v2.avsc');
    writeFileSync(readerFile, JSON.stringify(withUnit));

    const old = { ts: 1, tenant: 'acme', host: 'h1', region: 'eu', metric: 'cpu', value: 1.5, labels: {} };
    const newer = { ...old, ts: 2, unit: 'percent' };
    const values = [await codec.encode(v1, old), await codec.encode(v2, newer)];
    // Reader v2: the old record gets the new field's default.
    expect((await decodeThroughTopology('avro-evolve-v2', values, readerFile)).lines).toEqual([
      { ...old, unit: null },
      newer,
    ]);
    // Reader v1: the new record's extra field is skipped.
    const { lines, dead } = await decodeThroughTopology('avro-evolve-v1', values, metricSchema);
    expect(dead).toEqual([]);
    expect(lines).toEqual([old, { ...old, ts: 2 }]);
  });

  it('decodes a batch of cached schema ids without a promise, to plain objects', async () => {
    const step = await decodeStep.create(
      decodeStepSchema.parse({
        kind: 'decode',
        format: 'avro',
        registry: { url: serviceUrl('SCHEMA_REGISTRY_URL') },
      }),
      { topology: 't', group: 'g', baseDir: dir, logger },
    );
    const writer = await codec.writer(metricId);
    const make = syntheticRecords('metrics', 3);
    const batch = (n: number): FlotillaRecord[] =>
      Array.from({ length: n }, (_, i) => ({
        id: `t/0/${i}`,
        key: null,
        value: writer.encode(make(i).value),
        timestamp: 0,
        headers: {},
        source: { topic: 't', partition: 0, offset: String(i) },
      }));
    const ctx = { topic: 't', partition: 0, deadLetter: () => expect.unreachable('no dead letters') };
    const first = step.process(batch(5), ctx);
    expect(first).toBeInstanceOf(Promise); // the schema is fetched once
    expect(await first).toHaveLength(5);
    const second = step.process(batch(5), ctx);
    expect(Array.isArray(second)).toBe(true); // then every batch decodes synchronously
    const value = (second as FlotillaRecord[])[0]?.value;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
  });

  it('fails the batch (retriable), not the records, when the registry cannot be reached', async () => {
    const down = new AvroCodec('http://127.0.0.1:9/apis/ccompat/v7');
    const wire = await codec.encode(metricId, syntheticRecords('metrics')(0).value);
    await expect(down.prefetch([wire])).rejects.toBeInstanceOf(SchemaRegistryError);
  });
});

describe('decode step: Avro options', () => {
  const ctx = { topology: 't', group: 'g', baseDir: dir, logger };

  it('refuses registry and schema with format json', () => {
    const result = decodeStepSchema.safeParse({
      kind: 'decode',
      format: 'json',
      registry: { url: 'http://x' },
      schema: 'a.avsc',
    });
    expect(result.error?.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
      ['registry', "'registry' applies only to format: avro"],
      ['schema', "'schema' applies only to format: avro"],
    ]);
  });

  it('needs a registry URL from the step or SCHEMA_REGISTRY_URL, and a readable reader schema', async () => {
    vi.stubEnv('SCHEMA_REGISTRY_URL', '');
    try {
      const noRegistry = await Promise.resolve()
        .then(() => decodeStep.create(decodeStepSchema.parse({ kind: 'decode', format: 'avro' }), ctx))
        .catch((e: unknown) => e);
      expect(noRegistry).toBeInstanceOf(ComponentConfigError);
      expect(noRegistry).toMatchObject({ key: 'registry' });
      expect((noRegistry as Error).message).toMatch(
        /needs a schema registry: set registry\.url .* SCHEMA_REGISTRY_URL/,
      );
    } finally {
      vi.unstubAllEnvs();
    }
    const badSchema = await Promise.resolve()
      .then(() =>
        decodeStep.create(
          decodeStepSchema.parse({
            kind: 'decode',
            format: 'avro',
            registry: { url: 'memory://x' },
            schema: 'nope.avsc',
          }),
          ctx,
        ),
      )
      .catch((e: unknown) => e);
    expect(badSchema).toMatchObject({ key: 'schema' });
    expect((badSchema as Error).message).toMatch(
      /step 'decode' \(decode\) schema: cannot read Avro schema .*nope\.avsc/,
    );
  });
});
