import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { parseDocument } from 'yaml';
import type {
  ComponentContext,
  DeadLetterWriter,
  Sink,
  Source,
  StateStore,
  Step,
} from '../core/component.js';
import { ComponentConfigError, ConfigError, FlotillaError } from '../core/errors.js';
import type { DeadLetter, FlotillaRecord, SourceCoordinates } from '../core/record.js';
import { AvroCodec, type AvroWriter } from '../kafka/avro.js';
import type { Logger } from '../observability/logger.js';
import { MemoryStateStore } from '../runtime/state-store.js';
import { Worker } from '../runtime/worker.js';
import { EmbeddedSource } from '../sources/embedded.js';
import { EmbeddedLog, hashKey } from '../sources/embedded-log.js';
import { stepKinds } from '../steps/index.js';
import { type QualityProfile, QualityStep } from '../steps/quality/index.js';
import { type LoadedTopology, loadTopology } from '../topology/load.js';
import { groupOf, type SourceConfig, type StepConfig } from '../topology/schema.js';
import { diffValues, type FieldDiff, show, toPlain } from './compare.js';
import {
  type ExpectedDeadLetter,
  type ExpectedOutput,
  type Fixture,
  type FixtureConfig,
  type InputRecord,
  inputTimestamp,
  loadFixture,
} from './fixture.js';

/**
 * The topology test driver behind `flotilla test`: runs a topology with its source replaced by
 * the embedded log (same topic names) fed with the fixture's input records and its sinks by
 * in-memory collectors (same names), then compares what each sink and the dead-letter topic
 * received with the fixture's expectations. Avro values go through an in-process schema
 * registry (`memory://`), so the decode step reads real Confluent wire format with no service.
 */

/** What reached a sink, as a fixture writes it; `input` is the index of the record it came from. */
export interface ActualOutput {
  key: string | null;
  value: unknown;
  input?: number;
}

export interface ActualDeadLetter {
  input?: number;
  step: string;
  reason: string;
  error: string;
  key: string | null;
  value: unknown;
}

/** One way the actual outputs differ from the fixture. */
export type Mismatch =
  | { where: string; index: number; kind: 'fields'; input?: number; fields: FieldDiff[] }
  | { where: string; index: number; kind: 'missing'; expected: unknown }
  | { where: string; index: number; kind: 'extra'; actual: unknown; input?: number };

/** The field profile a quality step built from the fixture's records. */
export interface StepProfile {
  step: string;
  profile: QualityProfile;
}

export interface FixtureResult {
  fixture: Fixture;
  topology: LoadedTopology;
  inputs: number;
  /** Of every quality step that profiles, in step order. */
  profiles: StepProfile[];
  /** Per sink name (in topology order), what it received, ordered by source coordinates. */
  sinks: Map<string, ActualOutput[]>;
  deadLetters: ActualDeadLetter[];
  mismatches: Mismatch[];
  passed: boolean;
}

export interface RunFixtureOptions {
  /** Logger for the topology (default: silent). */
  logger?: Logger;
  /** The run fails when the topology has not consumed every input by then. */
  timeoutMs?: number;
}

const DEAD_LETTER = 'dead_letter';

class CollectingSink implements Sink {
  readonly records: FlotillaRecord[] = [];
  constructor(readonly name: string) {}
  async write(records: FlotillaRecord[]): Promise<void> {
    this.records.push(...records);
  }
  async close(): Promise<void> {}
}

class CollectingDeadLetters implements DeadLetterWriter {
  readonly letters: DeadLetter[] = [];
  async write(letters: DeadLetter[]): Promise<void> {
    this.letters.push(...letters);
  }
  async close(): Promise<void> {}
}

/** Runs one embedded source per topic as one source; stateful steps get state of their own run. */
class EmbeddedTopicsSource implements Source {
  readonly kind = 'embedded';
  constructor(
    private readonly sources: EmbeddedSource[],
    /** Unique to the run: a fixture run never restores the window state of an earlier one. */
    private readonly runId: string,
  ) {}
  stateStore(name: string): StateStore {
    return new MemoryStateStore(`flotilla-test/${this.runId}/${name}`);
  }
  async run(handler: Parameters<Source['run']>[0]): Promise<void> {
    await Promise.all(this.sources.map((s) => s.run(handler)));
  }
  async stop(): Promise<void> {
    await Promise.all(this.sources.map((s) => s.stop()));
  }
}

/** The topics a source reads and, for a pattern, the pattern input topics must match. */
function sourceTopics(source: SourceConfig, topology: string): { topics: string[]; pattern?: RegExp } {
  const s = source as { kind: string; topic?: string; topics?: string[]; pattern?: string };
  if (s.kind === 'generator') return { topics: [`generator.${topology}`] };
  if (s.pattern) return { topics: [], pattern: new RegExp(s.pattern) };
  return { topics: s.topics ?? (s.topic ? [s.topic] : []) };
}

const coordinatesKey = (c: SourceCoordinates) => `${c.topic}\u0000${c.partition}\u0000${c.offset}`;

function bySourceOrder(a: { source: SourceCoordinates }, b: { source: SourceCoordinates }): number {
  const x = a.source;
  const y = b.source;
  if (x.topic !== y.topic) return x.topic < y.topic ? -1 : 1;
  return x.partition - y.partition || Number(x.offset) - Number(y.offset);
}

/** Encodes input values per their format; avro through the in-process registry. */
class InputEncoder {
  private readonly codec: AvroCodec;
  private readonly writers = new Map<string, AvroWriter>();

  constructor(
    readonly registryUrl: string,
    private readonly fixture: Fixture,
  ) {
    this.codec = new AvroCodec(registryUrl);
  }

  async encode(r: InputRecord, topic: string): Promise<Buffer> {
    if (r.raw !== undefined) return Buffer.from(r.raw, 'utf8');
    if (r.hex !== undefined) return Buffer.from(r.hex.replace(/\s+/g, ''), 'hex');
    const { config } = this.fixture;
    if ((r.format ?? config.format ?? 'json') === 'json') return Buffer.from(JSON.stringify(r.value ?? null));
    // Validation guarantees a schema for avro inputs.
    const schemaFile = path.resolve(path.dirname(this.fixture.file), (r.schema ?? config.schema) as string);
    let writer = this.writers.get(schemaFile);
    if (!writer) {
      writer = await this.codec.writer(await this.codec.register(`${topic}-value`, schemaFile));
      this.writers.set(schemaFile, writer);
    }
    return writer.encode(r.value);
  }
}

/** A fixture problem found while running (input topic, sink names): names the fixture and path. */
function fixtureError(fixture: Fixture, where: string, message: string): ConfigError {
  return new ConfigError([{ file: path.relative(process.cwd(), fixture.file), path: where, message }]);
}

/** Steps as the topology declares them; avro decode steps read the in-process registry. */
async function createSteps(
  topology: LoadedTopology,
  ctx: ComponentContext,
  registryUrl: string,
): Promise<Step[]> {
  return Promise.all(
    topology.config.steps.map(async (config: StepConfig, i) => {
      const def = stepKinds.find((k) => k.kind === config.kind);
      if (!def) throw new FlotillaError(`no step of kind '${config.kind}'`);
      const stepConfig =
        config.kind === 'decode' && config.format === 'avro'
          ? { ...config, registry: { url: registryUrl } }
          : config;
      try {
        return await def.create(stepConfig as never, ctx);
      } catch (err) {
        if (!(err instanceof FlotillaError)) throw err;
        const key = err instanceof ComponentConfigError ? `.${err.key}` : '';
        throw new ConfigError([
          {
            file: path.relative(process.cwd(), topology.file),
            path: `steps[${i}]${key}`,
            message: err.message,
          },
        ]);
      }
    }),
  );
}

function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Writes the fixture's inputs to a private embedded log: where each input landed, and one source per topic. */
async function feedInputs(fixture: Fixture, topology: LoadedTopology, group: string, registryUrl: string) {
  const { config } = fixture;
  const { topics, pattern } = sourceTopics(topology.config.source, topology.config.name);
  const inputTopics = config.input.map((r, i) => {
    const topic = r.topic ?? (topics.length === 1 ? topics[0] : undefined);
    if (!topic) {
      throw fixtureError(
        fixture,
        `input[${i}].topic`,
        `the source reads ${pattern ? `the pattern /${pattern.source}/` : `topics ${topics.join(', ')}`}; name the topic`,
      );
    }
    if (!(topics.includes(topic) || pattern?.test(topic))) {
      throw fixtureError(fixture, `input[${i}].topic`, `the source does not read topic '${topic}'`);
    }
    return topic;
  });
  const partitions = Math.max(config.partitions, ...config.input.map((r) => (r.partition ?? 0) + 1));
  const log = new EmbeddedLog();
  for (const topic of new Set(inputTopics)) log.ensureTopic(topic, partitions);

  const encoder = new InputEncoder(registryUrl, fixture);
  const inputAt = new Map<string, number>();
  for (const [i, r] of config.input.entries()) {
    const topic = inputTopics[i] as string;
    let value: Buffer;
    try {
      value = await encoder.encode(r, topic);
    } catch (err) {
      throw fixtureError(fixture, `input[${i}]`, `cannot encode the value: ${(err as Error).message}`);
    }
    const entry = { key: r.key, value, timestamp: inputTimestamp(r, i), headers: r.headers };
    // Unset: by key, as a producer's default partitioner would.
    const partition = r.partition ?? (r.key === null ? 0 : hashKey(r.key) % partitions);
    const offset = log.append(topic, entry, partition);
    inputAt.set(coordinatesKey({ topic, partition, offset: String(offset) }), i);
  }

  const sources = [...new Set(inputTopics)].map((topic) => {
    const source = new EmbeddedSource(
      { kind: 'embedded', topic, partitions, start: 'earliest', max_batch: 500 },
      group,
      log,
    );
    source.runUntil(() => true);
    return source;
  });
  return { inputAt, sources };
}

/** Runs a fixture (a file or an already loaded one) and compares the outputs with its expectations. */
export async function runFixture(
  fixtureOrFile: Fixture | string,
  options: RunFixtureOptions = {},
): Promise<FixtureResult> {
  const fixture = typeof fixtureOrFile === 'string' ? loadFixture(fixtureOrFile) : fixtureOrFile;
  const { config } = fixture;
  const logger = options.logger ?? pino({ level: 'silent' });
  const runId = randomUUID();
  const registryUrl = `memory://flotilla-test/${runId}`;
  const topologyFile = path.resolve(path.dirname(fixture.file), config.topology);
  // Connection settings of the replaced source and sinks need no real value.
  const env = {
    KAFKA_BROKERS: 'flotilla-test:9092',
    ...process.env,
    SCHEMA_REGISTRY_URL: registryUrl,
    ...config.env,
  };
  const topology = loadTopology(topologyFile, env);
  const name = topology.config.name;
  const group = groupOf(topology.config);
  const ctx: ComponentContext = { topology: name, group, baseDir: path.dirname(topology.file), logger };

  const { inputAt, sources } = await feedInputs(fixture, topology, group, registryUrl);
  const sinkNames = topology.config.sinks.map((s) => s.name ?? s.kind);
  for (const key of Object.keys(config.expect)) {
    if (key !== DEAD_LETTER && !sinkNames.includes(key)) {
      throw fixtureError(
        fixture,
        `expect.${key}`,
        `the topology has no sink '${key}' (sinks: ${sinkNames.join(', ')}; and ${DEAD_LETTER})`,
      );
    }
  }
  const sinks = sinkNames.map((n) => new CollectingSink(n));
  const deadLetters = new CollectingDeadLetters();
  const steps = await createSteps(topology, ctx, registryUrl);
  const worker = new Worker(
    topology,
    {
      source: new EmbeddedTopicsSource(sources, runId),
      steps,
      sinks,
      deadLetters,
    },
    logger,
  );
  const timeoutMs = options.timeoutMs ?? 60_000;
  await withTimeout(worker.run(), timeoutMs, () => {
    void worker.stop();
    return new FlotillaError(`${config.topology} did not consume every input record within ${timeoutMs} ms`);
  });

  const inputOf = (r: FlotillaRecord) => inputAt.get(coordinatesKey(r.source));
  const actualSinks = new Map<string, ActualOutput[]>();
  for (const sink of sinks) {
    actualSinks.set(
      sink.name,
      [...sink.records]
        .sort(bySourceOrder)
        .map((r) => ({ key: r.key, value: toPlain(r.value), input: inputOf(r) })),
    );
  }
  const actualDead = [...deadLetters.letters]
    .sort((a, b) => bySourceOrder(a.record, b.record))
    .map(
      (d): ActualDeadLetter => ({
        input: inputOf(d.record),
        step: d.step,
        reason: d.reason,
        error: d.error,
        key: d.record.key,
        value: toPlain(d.record.value),
      }),
    );
  const mismatches = [
    ...sinkNames.flatMap((n) =>
      compareOutputs(n, (config.expect[n] ?? []) as ExpectedOutput[], actualSinks.get(n) ?? []),
    ),
    ...compareDeadLetters(config.expect.dead_letter, actualDead),
  ];
  const profiles = steps.flatMap((step) => {
    const profile = step instanceof QualityStep ? step.profile() : undefined;
    return profile ? [{ step: step.name, profile }] : [];
  });
  return {
    fixture,
    topology,
    inputs: config.input.length,
    profiles,
    sinks: actualSinks,
    deadLetters: actualDead,
    mismatches,
    passed: mismatches.length === 0,
  };
}

function compareOutputs(sink: string, expected: ExpectedOutput[], actual: ActualOutput[]): Mismatch[] {
  const out: Mismatch[] = [];
  for (let i = 0; i < Math.max(expected.length, actual.length); i++) {
    const e = expected[i];
    const a = actual[i];
    if (!a) out.push({ where: `sink '${sink}'`, index: i, kind: 'missing', expected: e });
    else if (!e)
      out.push({ where: `sink '${sink}'`, index: i, kind: 'extra', actual: outputView(a), input: a.input });
    else {
      const fields = [
        ...('key' in e ? diffValues(e.key, a.key, 'key') : []),
        ...diffValues(toPlain(e.value), a.value, 'value'),
      ];
      if (fields.length > 0)
        out.push({ where: `sink '${sink}'`, index: i, kind: 'fields', input: a.input, fields });
    }
  }
  return out;
}

function compareDeadLetters(expected: ExpectedDeadLetter[], actual: ActualDeadLetter[]): Mismatch[] {
  const out: Mismatch[] = [];
  for (let i = 0; i < Math.max(expected.length, actual.length); i++) {
    const e = expected[i];
    const a = actual[i];
    if (!a) out.push({ where: DEAD_LETTER, index: i, kind: 'missing', expected: e });
    else if (!e) out.push({ where: DEAD_LETTER, index: i, kind: 'extra', actual: a, input: a.input });
    else {
      const fields: FieldDiff[] = [
        ...diffValues(e.step, a.step, 'step'),
        ...diffValues(e.reason, a.reason, 'reason'),
        ...(e.input !== undefined ? diffValues(e.input, a.input, 'input') : []),
        ...('key' in e ? diffValues(e.key, a.key, 'key') : []),
        ...('value' in e ? diffValues(toPlain(e.value), a.value, 'value') : []),
      ];
      // The error is matched by a part of it: messages carry details a fixture should not pin.
      if (e.error !== undefined && !a.error.includes(e.error))
        fields.push({ path: 'error (contains)', expected: e.error, actual: a.error });
      if (fields.length > 0)
        out.push({ where: DEAD_LETTER, index: i, kind: 'fields', input: a.input, fields });
    }
  }
  return out;
}

const outputView = (a: ActualOutput) => ({ key: a.key, value: a.value });
const fromInput = (input: number | undefined) => (input === undefined ? '' : ` (from input[${input}])`);

/** "12 records in, 9 out to clean, 3 dead-lettered" */
export function summarize(result: FixtureResult): string {
  const outs = [...result.sinks].map(([name, records]) => `${records.length} out to ${name}`);
  return [`${result.inputs} records in`, ...outs, `${result.deadLetters.length} dead-lettered`].join(', ');
}

/** The report `flotilla test` prints: a summary line, and on mismatch every difference. */
export function formatResult(result: FixtureResult): string {
  const file = path.relative(process.cwd(), result.fixture.file);
  if (result.passed) return `PASS ${file}: ${summarize(result)}; all expected`;
  const lines = [`FAIL ${file} (topology ${result.topology.config.name})`];
  for (const m of result.mismatches) {
    const at = `${m.where} record ${m.index}`;
    if (m.kind === 'missing') lines.push(`  ${at}: missing; expected ${show(m.expected)}`);
    else if (m.kind === 'extra') lines.push(`  ${at}${fromInput(m.input)}: extra; actual ${show(m.actual)}`);
    else {
      lines.push(`  ${at}${fromInput(m.input)}:`);
      for (const f of m.fields)
        lines.push(`    ${f.path}: expected ${show(f.expected)}, actual ${show(f.actual)}`);
    }
  }
  const n = result.mismatches.length;
  lines.push(`${summarize(result)}; ${n} ${n === 1 ? 'difference' : 'differences'}`);
  return lines.join('\n');
}

/** The `expect` section that would make the fixture pass: what the run produced. */
export function actualExpectations(result: FixtureResult): FixtureConfig['expect'] {
  const expect: Record<string, unknown> = {};
  for (const [name, records] of result.sinks) expect[name] = records.map(outputView);
  expect[DEAD_LETTER] = result.deadLetters.map((d) => ({
    input: d.input,
    step: d.step,
    reason: d.reason,
    error: d.error,
  }));
  return expect as FixtureConfig['expect'];
}

/** Rewrites the fixture's `expect` with the actual outputs, keeping the rest of the file (and its comments). */
export function updateFixture(result: FixtureResult): void {
  const file = result.fixture.file;
  const doc = parseDocument(readFileSync(file, 'utf8'));
  doc.set('expect', doc.createNode(actualExpectations(result)));
  writeFileSync(file, doc.toString({ lineWidth: 0 }));
}
