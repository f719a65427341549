import { FlotillaError } from '../core/errors.js';
import { kafkaFor } from '../kafka/client.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { Replay, type ReplayResult, shadowTopic } from '../runtime/replay.js';
import { diffTopics, isSame, type TopicDiff } from '../runtime/replay-diff.js';
import { loadTopology } from '../topology/load.js';
import type { Command } from './main.js';
import { formatCount, Progress } from './progress.js';

const usage = `Usage: flotilla replay FILE --from TIME [--to TIME] [--group NAME] [--into SUFFIX] [--json]
       flotilla replay diff FILE --into SUFFIX [--from TIME] [--to TIME] [--examples N] [--json]

Replay (backfill): runs the topology of FILE (a kafka source) over a time range of its
topics, in a consumer group of its own, while the live workers keep running. Each partition
is read from the first offset with a timestamp at or after --from up to, not including, the
first at or after --to (without --to: its end offset when the replay starts); then the
replay drains, commits and exits. Outputs have deterministic ids and sinks upsert, so a
replay may run any number of times with the same result.

  --from TIME        start of the range: ISO-8601 (2026-01-01T00:00:00Z) or epoch milliseconds
  --to TIME          end of the range, exclusive (default: the end offsets at the start)
  --group NAME       consumer group (default <group>.replay.<from>-<to|end>; its offsets are
                     reset to --from on every run)
  --into SUFFIX      write to shadow sinks instead of the live ones: Kafka topics <topic>.SUFFIX,
                     tables and collections <name>_SUFFIX, Redis keys <key>:SUFFIX, files
                     <name>.SUFFIX.<ext>; dead letters to <dead-letter topic>.SUFFIX
  --json             print the summary as one JSON line on stdout

Progress on stderr: a bar on a terminal (records, % of the range, rate, ETA), a line every
5 s otherwise. Ctrl-C drains and commits what is in flight and exits 130.

diff: compares each Kafka sink topic of FILE with its shadow <topic>.SUFFIX by the output's
deterministic id (the flotilla.id header, else the key), each id's latest value on each
side: ids missing from the shadow, extra in it, and with a different value, with examples.
--from/--to keep only messages with a timestamp in the range (use the replay's range when
the live topic holds more). Exit status 0 when they are the same, 1 when they differ.

  --examples N       examples of each kind of difference (default 5)

Examples:
  flotilla replay topologies/metrics.yaml --from 2026-01-01T00:00:00Z --to 2026-01-02T00:00:00Z
  flotilla replay topologies/metrics.yaml --from 2026-01-01T00:00:00Z --into shadow
  flotilla replay diff topologies/metrics.yaml --into shadow --from 2026-01-01T00:00:00Z`;

/** An ISO-8601 time or epoch milliseconds, as ms. */
export function parseTime(flag: string, raw: unknown): number {
  const text = String(raw);
  const ms = /^\d+$/.test(text)
    ? Number(text)
    : /^\d{4}-\d\d-\d\d/.test(text)
      ? Date.parse(text)
      : Number.NaN;
  if (!Number.isFinite(ms)) {
    throw new FlotillaError(
      `--${flag}: expected an ISO-8601 time such as 2026-01-01T00:00:00Z or epoch milliseconds, got '${text}'`,
    );
  }
  return ms;
}

const optionalTime = (flag: string, raw: unknown) => (raw === undefined ? undefined : parseTime(flag, raw));

function oneFile(positionals: string[], form: string): string {
  const [file, ...rest] = positionals;
  if (!file || rest.length > 0) throw new FlotillaError(`${form} takes exactly one topology FILE`);
  return file;
}

/** Without FLOTILLA_LOG_LEVEL, only warnings: the progress bar is the output. */
function quietLogger(): Logger {
  const logger = createLogger({ component: 'replay' });
  return process.env.FLOTILLA_LOG_LEVEL ? logger : logger.child({}, { level: 'warn' });
}

const iso = (ms: number | undefined) =>
  ms === undefined ? 'the end offsets now' : new Date(ms).toISOString();

async function runReplay(positionals: string[], values: Record<string, unknown>): Promise<number> {
  const file = oneFile(positionals, 'replay');
  if (values.from === undefined) throw new FlotillaError('replay: --from TIME is required');
  if (values.examples !== undefined)
    throw new FlotillaError('replay: --examples is an option of replay diff');
  const from = parseTime('from', values.from);
  const to = optionalTime('to', values.to);
  const logger = quietLogger();
  const replay = await Replay.prepare(
    file,
    { from, to, group: values.group as string | undefined, into: values.into as string | undefined },
    logger,
  );
  const { plan } = replay;
  const name = replay.topology.config.name;
  const topics = [...plan.ranges].map(([t, parts]) => `${t} (${parts.length} partitions)`).join(', ');
  process.stderr.write(
    `replay ${name}: ${formatCount(plan.total)} records in [${iso(from)}, ${iso(to)}) of ${topics}; group ${plan.group}\n`,
  );
  const progress = new Progress({ label: `replay ${name}`, total: plan.total });
  const poll = setInterval(() => progress.update(replay.records), 100);
  const stop = () => void replay.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let result: ReplayResult;
  try {
    result = await replay.run();
  } finally {
    clearInterval(poll);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    progress.update(replay.records);
    progress.finish();
  }
  const perSecond = result.seconds > 0 ? result.records / result.seconds : 0;
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ topology: name, group: plan.group, from, to: to ?? null, total: plan.total, ...result, perSecond: Math.round(perSecond) })}\n`,
    );
  }
  process.stderr.write(
    result.interrupted
      ? `interrupted: ${formatCount(result.records)} of ${formatCount(plan.total)} records; ${formatCount(result.deadLettered)} dead-lettered (a new run starts over at --from)\n`
      : `done: every partition at its stop offset; ${formatCount(result.deadLettered)} dead-lettered\n`,
  );
  return result.interrupted ? 130 : 0;
}

function formatDiff(d: TopicDiff): string {
  const lines = [
    `${d.live} ↔ ${d.shadow}: ${formatCount(d.liveIds)} ids live, ${formatCount(d.shadowIds)} shadow; ` +
      `missing ${formatCount(d.missing)}, extra ${formatCount(d.extra)}, different ${formatCount(d.different)}` +
      (d.unkeyed > 0 ? `; ${formatCount(d.unkeyed)} messages without an id not compared` : ''),
  ];
  for (const e of d.examples) {
    lines.push(`  ${e.kind.padEnd(9)} ${e.id}`);
    if (e.live !== undefined) lines.push(`    live:   ${e.live}`);
    if (e.shadow !== undefined) lines.push(`    shadow: ${e.shadow}`);
  }
  return lines.join('\n');
}

async function runDiff(positionals: string[], values: Record<string, unknown>): Promise<number> {
  const file = oneFile(positionals, 'replay diff');
  const into = values.into as string | undefined;
  if (!into) throw new FlotillaError('replay diff: --into SUFFIX is required (the shadow to compare with)');
  const examples = values.examples === undefined ? 5 : Number(values.examples);
  if (!Number.isInteger(examples) || examples < 0) {
    throw new FlotillaError(`--examples: expected a whole number, got '${String(values.examples)}'`);
  }
  const { config } = loadTopology(file);
  const sinks = config.sinks.filter((s) => s.kind === 'kafka');
  if (sinks.length === 0) {
    throw new FlotillaError(`replay diff compares Kafka sink topics, and ${file} has no kafka sink`);
  }
  const logger = quietLogger();
  const filter = { from: optionalTime('from', values.from), to: optionalTime('to', values.to), examples };
  const diffs: TopicDiff[] = [];
  for (const sink of sinks) {
    const kafka = kafkaFor(sink, { topology: config.name, logger });
    const d = await diffTopics(kafka, sink.topic, shadowTopic(sink.topic, into), filter);
    diffs.push(d);
    if (!values.json) process.stdout.write(`${formatDiff(d)}\n`);
  }
  if (values.json) process.stdout.write(`${JSON.stringify(diffs)}\n`);
  return diffs.every(isSame) ? 0 : 1;
}

export const replay: Command = {
  summary: 'reprocess a time range of the source topics (backfill); diff a shadow replay',
  needsFiles: true,
  options: {
    from: { type: 'string' },
    to: { type: 'string' },
    group: { type: 'string' },
    into: { type: 'string' },
    examples: { type: 'string' },
    json: { type: 'boolean' },
  },
  usage,
  run({ positionals, values }) {
    return positionals[0] === 'diff' ? runDiff(positionals.slice(1), values) : runReplay(positionals, values);
  },
};
