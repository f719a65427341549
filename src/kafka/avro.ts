import { readFileSync } from 'node:fs';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import { FlotillaError, RecordError, TransientError } from '../core/errors.js';

/**
 * Avro values in the Confluent wire format (magic byte 0, the writer schema's registry id as
 * a big-endian int32, then the Avro body), against a Confluent-compatible schema registry.
 * `memory://NAME` instead of an http(s) URL is an in-process registry (for `flotilla test`
 * and the embedded mode): the same bytes, without a service.
 */

const MAGIC_BYTE = 0;
const HEADER_BYTES = 5;
/** How long an id the registry said it does not know stays known-unknown (poison records must not hammer it). */
const UNKNOWN_ID_TTL_MS = 30_000;
/** Bound on remembered unknown ids: garbage bytes that start with 0 can name any id. */
const MAX_UNKNOWN_IDS = 1024;

/** The registry could not be asked (down, timeout, 5xx): retriable, never a reason to dead-letter. */
/** The registry cannot answer: the batch waits and retries (see TransientError). */
export class SchemaRegistryError extends TransientError {}

/** A value that does not fit its Avro schema; `paths` name the offending fields. */
export class AvroEncodeError extends FlotillaError {
  constructor(
    message: string,
    readonly paths: string[],
  ) {
    super(message);
  }
}

export type AvroSchema = avro.Schema;

/** Reads and parses an .avsc file; the error names the file. */
export function readAvroSchema(file: string): AvroSchema {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FlotillaError(`cannot read Avro schema ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const schema = JSON.parse(text) as AvroSchema;
    avro.Type.forSchema(schema); // validates names, types and defaults
    return schema;
  } catch (err) {
    throw new FlotillaError(`${file} is not a valid Avro schema: ${(err as Error).message}`, { cause: err });
  }
}

/** A writer schema looked up by id, or why records written with it cannot be read. */
type Lookup = { schema: AvroSchema } | { problem: string };

/** Where schemas live: a Confluent-compatible registry over HTTP, or an in-process one. */
interface SchemaStore {
  register(subject: string, schema: AvroSchema): Promise<number>;
  /** Throws SchemaRegistryError when the store cannot answer; an unknown id is a `problem`. */
  lookup(id: number): Promise<Lookup>;
}

class HttpSchemaStore implements SchemaStore {
  private readonly registry: SchemaRegistry;

  constructor(private readonly url: string) {
    this.registry = new SchemaRegistry({ host: url });
  }

  async register(subject: string, schema: AvroSchema): Promise<number> {
    try {
      const { id } = await this.registry.register(
        { type: SchemaType.AVRO, schema: JSON.stringify(schema) },
        { subject },
      );
      return id;
    } catch (err) {
      throw new SchemaRegistryError(
        `cannot register the schema under subject '${subject}' at ${this.url}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  async lookup(id: number): Promise<Lookup> {
    let schema: unknown;
    try {
      schema = await this.registry.getSchema(id);
    } catch (err) {
      if ((err as { status?: number }).status === 404)
        return { problem: `schema id ${id} is not in the registry at ${this.url}` };
      throw new SchemaRegistryError(
        `schema registry at ${this.url} did not answer for schema id ${id}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (!(schema instanceof avro.Type)) return { problem: `schema id ${id} is not an Avro schema` };
    return { schema: schema.schema({ exportAttrs: true }) };
  }
}

/** An in-process registry: ids from 1, one id per distinct schema, shared by every codec of the same name. */
class MemorySchemaStore implements SchemaStore {
  private readonly ids = new Map<string, number>();
  private readonly schemas = new Map<number, AvroSchema>();

  async register(_subject: string, schema: AvroSchema): Promise<number> {
    const canonical = JSON.stringify(avro.Type.forSchema(schema).schema());
    let id = this.ids.get(canonical);
    if (id === undefined) {
      id = this.schemas.size + 1;
      this.ids.set(canonical, id);
      this.schemas.set(id, schema);
    }
    return id;
  }

  async lookup(id: number): Promise<Lookup> {
    const schema = this.schemas.get(id);
    return schema ? { schema } : { problem: `schema id ${id} is not in the (in-process) schema registry` };
  }
}

const memoryStores = new Map<string, MemorySchemaStore>();

function storeFor(url: string): SchemaStore {
  if (url.startsWith('memory://')) {
    let store = memoryStores.get(url);
    if (!store) {
      store = new MemorySchemaStore();
      memoryStores.set(url, store);
    }
    return store;
  }
  if (!/^https?:\/\//.test(url)) {
    throw new FlotillaError(
      `schema registry URL must start with http://, https:// or memory://, found '${url}'`,
    );
  }
  return new HttpSchemaStore(url);
}

/** Encodes values with one writer schema; synchronous, so a sink encodes a batch with one lookup. */
export class AvroWriter {
  private readonly header: Buffer;

  constructor(
    readonly id: number,
    readonly type: avro.Type,
  ) {
    this.header = Buffer.alloc(HEADER_BYTES);
    this.header.writeUInt8(MAGIC_BYTE, 0);
    this.header.writeInt32BE(id, 1);
  }

  /** Throws AvroEncodeError naming the fields that do not fit the schema. */
  encode(value: unknown): Buffer {
    let body: Buffer;
    try {
      body = this.type.toBuffer(value);
    } catch (err) {
      const paths: string[] = [];
      this.type.isValid(value, { errorHook: (path) => paths.push(path.join('.')) });
      const where = paths.length > 0 ? ` (invalid: ${paths.join(', ')})` : '';
      throw new AvroEncodeError(
        `value does not fit Avro schema id ${this.id}${where}: ${(err as Error).message}`,
        paths,
      );
    }
    return Buffer.concat([this.header, body], HEADER_BYTES + body.length);
  }
}

type Decoder = { decode: (body: Buffer) => unknown } | { problem: string };

export interface AvroCodecOptions {
  /**
   * The schema values are read as (schema evolution): each writer schema from the registry is
   * resolved into it, so added fields take their defaults and removed ones are skipped.
   */
  readerSchema?: AvroSchema;
}

/**
 * Encodes and decodes Confluent wire-format Avro. Writer schemas are fetched once per id and
 * cached, so decoding a batch whose ids are all known is synchronous: call `prefetch` with the
 * batch (it returns a promise only when some id must be fetched), then `decodeLoaded` per value.
 */
export class AvroCodec {
  private readonly store: SchemaStore;
  private readonly reader: avro.Type | undefined;
  private readonly decoders = new Map<number, Decoder>();
  /** Ids the registry does not know, with when to ask again. */
  private readonly unknown = new Map<number, { problem: string; until: number }>();
  private readonly writers = new Map<number, AvroWriter>();

  constructor(
    readonly registryUrl: string,
    options: AvroCodecOptions = {},
  ) {
    this.store = storeFor(registryUrl);
    this.reader = options.readerSchema ? readingType(options.readerSchema) : undefined;
  }

  /** Registers the .avsc file's schema under `subject` (e.g. `metrics-value`); resolves to its id. */
  register(subject: string, schemaFile: string): Promise<number> {
    return this.registerSchema(subject, readAvroSchema(schemaFile));
  }

  async registerSchema(subject: string, schema: AvroSchema): Promise<number> {
    const id = await this.store.register(subject, schema);
    if (!this.writers.has(id)) this.writers.set(id, new AvroWriter(id, avro.Type.forSchema(schema)));
    return id;
  }

  /** The writer for a registered schema id (fetched once). */
  async writer(id: number): Promise<AvroWriter> {
    let writer = this.writers.get(id);
    if (!writer) {
      const found = await this.store.lookup(id);
      if ('problem' in found) throw new FlotillaError(`cannot encode: ${found.problem}`);
      writer = new AvroWriter(id, avro.Type.forSchema(found.schema));
      this.writers.set(id, writer);
    }
    return writer;
  }

  async encode(id: number, value: unknown): Promise<Buffer> {
    return (await this.writer(id)).encode(value);
  }

  /** Decodes one value; throws RecordError (reason `decode`) when it cannot be read. */
  async decode(buf: Buffer): Promise<unknown> {
    await this.prefetch([buf]);
    return this.decodeLoaded(buf);
  }

  /**
   * Fetches the writer schemas of `values` not cached yet, in parallel; undefined when every
   * id is cached, so a batch of known ids costs no promise. Rejects with SchemaRegistryError
   * when the registry cannot be asked (the batch should be retried, not dead-lettered).
   */
  prefetch(values: readonly unknown[]): Promise<void> | undefined {
    let missing: Set<number> | undefined;
    const now = Date.now();
    for (const v of values) {
      const id = Buffer.isBuffer(v) ? schemaIdOf(v) : undefined;
      if (id === undefined || this.decoders.has(id)) continue;
      const unknown = this.unknown.get(id);
      if (unknown && unknown.until > now) continue;
      if (!missing) missing = new Set();
      missing.add(id);
    }
    if (!missing) return undefined;
    return Promise.all(Array.from(missing, (id) => this.load(id, now))).then(() => undefined);
  }

  /** Decodes a value whose schema `prefetch` has loaded; throws RecordError (reason `decode`). */
  decodeLoaded(value: unknown): unknown {
    if (!Buffer.isBuffer(value)) {
      throw new RecordError(`expected Avro bytes, found ${value === null ? 'null' : typeof value}`, 'decode');
    }
    const id = schemaIdOf(value);
    if (id === undefined) throw new RecordError(notWireFormat(value), 'decode');
    const decoder = this.decoders.get(id) ?? this.unknown.get(id);
    if (!decoder) throw new FlotillaError(`schema id ${id} was not prefetched`);
    if ('problem' in decoder) throw new RecordError(decoder.problem, 'decode');
    try {
      return decoder.decode(value.subarray(HEADER_BYTES));
    } catch (err) {
      throw new RecordError(
        `Avro body does not match writer schema id ${id}: ${(err as Error).message}`,
        'decode',
        { cause: err },
      );
    }
  }

  private async load(id: number, now: number): Promise<void> {
    const found = await this.store.lookup(id);
    if ('problem' in found) {
      if (this.unknown.size >= MAX_UNKNOWN_IDS) {
        const oldest = this.unknown.keys().next().value;
        if (oldest !== undefined) this.unknown.delete(oldest);
      }
      this.unknown.set(id, { problem: found.problem, until: now + UNKNOWN_ID_TTL_MS });
      return;
    }
    this.unknown.delete(id);
    this.decoders.set(id, this.decoderFor(id, readingType(found.schema)));
  }

  private decoderFor(id: number, writer: avro.Type): Decoder {
    const reader = this.reader;
    if (!reader) return { decode: (body) => writer.fromBuffer(body) };
    // Equal schemas still need the reader's own type (its options), but no resolver.
    if (reader.equals(writer)) return { decode: (body) => reader.fromBuffer(body) };
    try {
      const resolver = reader.createResolver(writer);
      return { decode: (body) => reader.fromBuffer(body, resolver) };
    } catch (err) {
      return {
        problem: `writer schema id ${id} cannot be read with the reader schema: ${(err as Error).message}`,
      };
    }
  }
}

/**
 * A type for reading whose records decode to plain objects (prototype Object.prototype) and
 * whose unions decode unwrapped: decoded values look like parsed JSON, which is what the
 * expression language reads (it ignores properties of class instances) and what sinks write.
 */
function readingType(schema: AvroSchema): avro.Type {
  const registry: Record<string, avro.Type> = {};
  const type = avro.Type.forSchema(schema, { registry, omitRecordMethods: true, wrapUnions: 'never' });
  for (const named of [type, ...Object.values(registry)]) {
    // With omitRecordMethods the constructor's prototype is empty: Object.prototype can replace it.
    const ctor = (named as { recordConstructor?: { prototype: object } }).recordConstructor;
    if (ctor) ctor.prototype = Object.prototype;
  }
  return type;
}

/** The schema id of a wire-format buffer, or undefined when it is not in that format. */
function schemaIdOf(buf: Buffer): number | undefined {
  if (buf.length < HEADER_BYTES || buf[0] !== MAGIC_BYTE) return undefined;
  return buf.readInt32BE(1);
}

function notWireFormat(buf: Buffer): string {
  if (buf.length < HEADER_BYTES) {
    return `not in Confluent wire format: ${buf.length} bytes, shorter than the ${HEADER_BYTES}-byte header`;
  }
  const first = buf[0] ?? 0;
  const looksJson = first === 0x7b || first === 0x5b; // '{' or '['
  return `not in Confluent wire format: first byte is 0x${first.toString(16).padStart(2, '0')}, expected the magic byte 0x00${
    looksJson ? ' (the value looks like JSON)' : ''
  }`;
}
