import { COMPATIBILITY, SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import type { RawAvroSchema } from '@kafkajs/confluent-schema-registry/dist/@types.js';
import avro from 'avsc';
import { beforeAll, describe, expect, it } from 'vitest';
import { connectOrExplain, serviceUrl } from '../support/services.js';

const metricV1: RawAvroSchema = {
  type: 'record',
  name: 'Metric',
  namespace: 'io.flotilla.it',
  fields: [
    { name: 'metric', type: 'string' },
    { name: 'value', type: 'double' },
    { name: 'ts', type: 'long' },
  ],
};

describe('Schema registry (@kafkajs/confluent-schema-registry + avsc)', () => {
  let registry: SchemaRegistry;
  const subject = `it-metric-${process.pid}-${Date.now()}-value`;

  beforeAll(async () => {
    registry = await connectOrExplain('SCHEMA_REGISTRY_URL', async () => {
      const r = new SchemaRegistry({ host: serviceUrl('SCHEMA_REGISTRY_URL') });
      // Any answer from the API (even "subject not found") proves it is up.
      await r.getLatestSchemaId('flotilla-probe-subject').catch((err: Error) => {
        if (!/not found|404|40401/i.test(err.message)) throw err;
      });
      return r;
    });
  });

  it('registers a subject, encodes and decodes, and fetches the schema by id', async () => {
    const { id } = await registry.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(metricV1) },
      { subject, compatibility: COMPATIBILITY.BACKWARD },
    );
    expect(id).toBeGreaterThan(0);
    expect(await registry.getLatestSchemaId(subject)).toBe(id);

    const record = { metric: 'cpu', value: 0.75, ts: 1_700_000_000_000 };
    const encoded = await registry.encode(id, record);
    // Confluent wire format: magic byte 0, then the schema id as a big-endian int32.
    expect(encoded[0]).toBe(0);
    expect(encoded.readInt32BE(1)).toBe(id);
    // The payload is plain Avro, readable with avsc and the registered schema.
    const fetched = await registry.getSchema(id);
    expect(avro.Type.forSchema(metricV1 as avro.Schema).fromBuffer(encoded.subarray(5))).toEqual(record);
    expect(fetched).toBeDefined();
    expect(await registry.decode(encoded)).toEqual(record);
  });

  it('accepts a compatible evolution and refuses an incompatible one', async () => {
    const withHost = {
      ...metricV1,
      fields: [...metricV1.fields, { name: 'host', type: ['null', 'string'], default: null }],
    };
    const v1 = await registry.getLatestSchemaId(subject);
    const { id: v2 } = await registry.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(withHost) },
      { subject },
    );
    expect(v2).not.toBe(v1);

    // A v1 record decodes with v2 as the reader schema: the new field takes its default.
    const old = await registry.encode(v1, { metric: 'mem', value: 1, ts: 1 });
    expect(await registry.decode(old, { [SchemaType.AVRO]: { readerSchema: withHost } })).toEqual({
      metric: 'mem',
      value: 1,
      ts: 1,
      host: null,
    });

    const incompatible = {
      ...metricV1,
      fields: [
        { name: 'metric', type: 'string' },
        { name: 'value', type: 'string' },
        { name: 'ts', type: 'long' },
      ],
    };
    await expect(
      registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(incompatible) }, { subject }),
    ).rejects.toThrow(/incompatib|409/i);
    expect(await registry.getLatestSchemaId(subject)).toBe(v2);
  });
});
