/**
 * The anomaly step on the Numenta Anomaly Benchmark, through the real streaming path: every
 * row of every series goes on the embedded log (one topic, one partition, each series in
 * order), a topology decode → anomaly → file sink runs it through the Worker, and the scores
 * that come out are written in NAB's results format and scored with NAB's standard profile.
 *
 *   npx tsx bench/nab.ts [DIR] [--out DIR] [--model seasonal|ewma|mad|ensemble]
 *
 * DIR defaults to ../shared/data/nab from the repository root. One configuration for every
 * series: the step's defaults (or --model); nothing is tuned per file or fitted on labels.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import type { Step } from '../src/core/component.js';
import { buildParts, Worker } from '../src/runtime/worker.js';
import type { EmbeddedSource } from '../src/sources/embedded.js';
import { embeddedLog } from '../src/sources/embedded-log.js';
import type { AnomalyFields } from '../src/steps/anomaly/index.js';
import { loadTopology } from '../src/topology/load.js';
import { type CostProfile, profiles, type ScoredFile, scoreCorpus, type Tally } from './nab-score.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const STEP = 'score';

interface Series {
  /** `category/file.csv`, as in NAB's label files. */
  name: string;
  stamps: string[];
  times: number[];
  values: number[];
  windows: [number, number][];
}

export interface NabFigures {
  bench: 'nab';
  model: string;
  score: number | null;
  threshold: number;
  profiles: Record<string, number | null>;
  categories: Record<string, number | null>;
  files: number;
  records: number;
  records_per_s: number;
  topology_records_per_s: number;
}

/** NAB's timestamps have no zone; reading them as UTC keeps hour-of-day as written. */
const parseTime = (text: string) => Date.parse(`${text.trim().slice(0, 19).replace(' ', 'T')}Z`);

function loadCorpus(dir: string): Series[] {
  const labels = JSON.parse(readFileSync(path.join(dir, 'labels_combined_windows.json'), 'utf8')) as Record<
    string,
    [string, string][]
  >;
  const series: Series[] = [];
  for (const category of readdirSync(path.join(dir, 'data')).sort()) {
    for (const file of readdirSync(path.join(dir, 'data', category)).sort()) {
      if (!file.endsWith('.csv')) continue;
      const name = `${category}/${file}`;
      const s: Series = { name, stamps: [], times: [], values: [], windows: [] };
      const rows = readFileSync(path.join(dir, 'data', category, file), 'utf8')
        .trim()
        .split('\n')
        .slice(1);
      for (const row of rows) {
        const [stamp = '', value = ''] = row.split(',');
        s.stamps.push(stamp);
        s.times.push(parseTime(stamp));
        s.values.push(Number(value));
      }
      s.windows = (labels[name] ?? []).map(([a, b]) => [parseTime(a), parseTime(b)]);
      series.push(s);
    }
  }
  return series;
}

/** Runs every series through decode → anomaly → file sink on the embedded log; scores per series. */
async function scoreThroughWorker(
  corpus: Series[],
  model: string | undefined,
): Promise<{ scores: Map<string, number[]>; stepSeconds: number; runSeconds: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-nab-'));
  try {
    const topic = `nab-bench-${process.pid}-${Date.now()}`;
    const file = path.join(dir, 'nab.yaml');
    writeFileSync(
      file,
      `name: nab-bench
source: { kind: embedded, topic: ${topic}, partitions: 1, max_batch: 1000 }
steps:
  - { kind: decode, format: json }
  - { kind: anomaly, name: ${STEP}, series_key: [series], value: value, time: ts${model ? `, model: ${model}` : ''} }
sinks:
  - { kind: file, path: scored.jsonl }
`,
    );
    const topology = loadTopology(file);
    const logger = pino({ level: 'warn' });
    const parts = await buildParts(topology, logger);
    let stepSeconds = 0;
    const step = parts.steps.find((s) => s.name === STEP) as Step;
    const inner = step.process.bind(step);
    step.process = async (records, ctx) => {
      const started = performance.now();
      const out = await inner(records, ctx);
      stepSeconds += (performance.now() - started) / 1000;
      return out;
    };

    for (const s of corpus) {
      s.times.forEach((ts, i) => {
        const value = Buffer.from(JSON.stringify({ series: s.name, ts, value: s.values[i] }));
        embeddedLog.append(topic, { key: s.name, value, timestamp: ts }, 0);
      });
    }
    (parts.source as EmbeddedSource).runUntil(() => true);
    const started = performance.now();
    await new Worker(topology, parts, logger).run();
    const runSeconds = (performance.now() - started) / 1000;
    embeddedLog.truncate(topic, 0, embeddedLog.endOffset(topic, 0));

    const scores = new Map<string, number[]>(corpus.map((s) => [s.name, []]));
    for (const line of readFileSync(path.join(dir, 'scored.jsonl'), 'utf8').split('\n')) {
      if (line === '') continue;
      const out = JSON.parse(line) as AnomalyFields & { series: string };
      scores.get(out.series)?.push(out.anomaly_score);
    }
    for (const s of corpus) {
      const got = scores.get(s.name)?.length ?? 0;
      if (got !== s.times.length)
        throw new Error(`${s.name}: ${s.times.length} rows in, ${got} scored rows out`);
    }
    return { scores, stepSeconds, runSeconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** NAB's results layout under `outDir` (its `results/`): <detector>/<category>/<detector>_<file>.csv. */
function writeResults(
  outDir: string,
  detector: string,
  corpus: Series[],
  scores: Map<string, number[]>,
): void {
  for (const s of corpus) {
    const [category = '', file = ''] = s.name.split('/');
    const dir = path.join(outDir, detector, category);
    mkdirSync(dir, { recursive: true });
    const score = scores.get(s.name) ?? [];
    const inWindow = (t: number) => s.windows.some(([a, b]) => t >= a && t <= b);
    const lines = s.stamps.map(
      (stamp, i) => `${stamp},${s.values[i]},${score[i]},${inWindow(s.times[i] as number) ? 1 : 0}`,
    );
    writeFileSync(
      path.join(dir, `${detector}_${file}`),
      `timestamp,value,anomaly_score,label\n${lines.join('\n')}\n`,
    );
  }
}

const fmt = (n: number | null, digits = 1) => (n === null ? '—' : n.toFixed(digits));

function printReport(files: ScoredFile[], profile: CostProfile): ReturnType<typeof scoreCorpus> {
  const category = (name: string) => name.split('/')[0] ?? name;
  const report = scoreCorpus(files, profile, category);
  const count = (c: string) => files.filter((f) => category(f.name) === c).length;
  const row = (label: string, files: number | string, t: Tally & { score: number | null }) =>
    `${label.padEnd(24)}${String(files).padStart(6)}${String(t.windows).padStart(9)}${String(t.tp).padStart(5)}${String(t.fp).padStart(6)}${String(t.fn).padStart(5)}${t.raw.toFixed(2).padStart(9)}${fmt(t.score).padStart(8)}`;
  console.log(
    `${'category'.padEnd(24)}${'files'.padStart(6)}${'windows'.padStart(9)}   TP    FP   FN      raw   score`,
  );
  for (const [c, t] of Object.entries(report.groups)) console.log(row(c, count(c), t));
  console.log(row('all', files.length, report.total));
  return report;
}

export async function nabBench(argv: string[]): Promise<NabFigures> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { out: { type: 'string' }, model: { type: 'string' } },
    allowPositionals: true,
  });
  const dataDir = path.resolve(positionals[0] ?? path.join(repoRoot, '..', 'shared', 'data', 'nab'));
  const outDir = path.resolve(values.out ?? path.join(repoRoot, 'out', 'nab'));
  const corpus = loadCorpus(dataDir);
  const records = corpus.reduce((n, s) => n + s.times.length, 0);
  console.log(`NAB: ${corpus.length} series, ${records} rows from ${dataDir}`);

  const { scores, stepSeconds, runSeconds } = await scoreThroughWorker(corpus, values.model);
  const detector = `flotilla${values.model ? `-${values.model}` : ''}`;
  writeResults(outDir, detector, corpus, scores);
  console.log(`results in NAB format: ${path.join(outDir, detector)}`);

  const files: ScoredFile[] = corpus.map((s) => ({
    name: s.name,
    times: s.times,
    scores: scores.get(s.name) ?? [],
    windows: s.windows,
  }));
  console.log('\nstandard profile (A_TP 1, A_FP 0.11, A_FN 1), one threshold for the corpus:');
  const standard = printReport(files, profiles.standard);
  const others = Object.fromEntries(
    Object.entries(profiles).map(([name, p]) => [name, scoreCorpus(files, p, () => 'all').total.score]),
  );
  console.log(
    `threshold ${standard.threshold.toFixed(4)}; ${Object.entries(others)
      .map(([n, s]) => `${n} ${fmt(s, 2)}`)
      .join(', ')}`,
  );
  const figures: NabFigures = {
    bench: 'nab',
    model: values.model ?? 'default',
    score: standard.total.score === null ? null : Number(standard.total.score.toFixed(2)),
    threshold: Number(standard.threshold.toFixed(4)),
    profiles: Object.fromEntries(
      Object.entries(others).map(([n, s]) => [n, s === null ? null : Number(s.toFixed(2))]),
    ),
    categories: Object.fromEntries(
      Object.entries(standard.groups).map(([c, t]) => [
        c,
        t.score === null ? null : Number(t.score.toFixed(2)),
      ]),
    ),
    files: corpus.length,
    records,
    records_per_s: Math.round(records / stepSeconds),
    topology_records_per_s: Math.round(records / runSeconds),
  };
  console.log(
    `anomaly step: ${records} records in ${stepSeconds.toFixed(2)} s = ${figures.records_per_s} records/s; whole topology (decode, anomaly, file sink): ${figures.topology_records_per_s} records/s`,
  );
  console.log(JSON.stringify(figures));
  return figures;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  nabBench(process.argv.slice(2)).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
