import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, type ConfigProblem, FlotillaError } from '../core/errors.js';
import type { AnomalyStepConfig } from '../steps/anomaly/index.js';
import { loadTopology } from '../topology/load.js';
import { type Locator, parseAndLocate } from '../topology/validate.js';
import { didYouMean } from '../util/suggest.js';
import { type FlowTree, findCycle, flowTree, topologicalOrder } from './dag.js';
import {
  nameProblem,
  type ParamValue,
  type PipelineConfig,
  PLACEHOLDER,
  pipelineSchema,
  producesRecords,
  type RetrainTaskConfig,
} from './pipeline-schema.js';
import { epochMs } from './time.js';

export interface LoadedPipeline {
  /** Absolute path of the file (relative paths in it resolve from its folder). */
  file: string;
  /** The file's text: a run keeps it, so its tasks run the definition it started with. */
  text: string;
  config: PipelineConfig;
  /** Tasks, each after everything it needs. */
  order: string[];
  tree: FlowTree;
  locate: Locator;
}

/** A parameter given to a run that the pipeline does not declare, or a required one missing. */
export class PipelineParamError extends FlotillaError {}

/** Reads and validates a pipeline file; throws ConfigError naming file, line and YAML path. */
export function loadPipeline(file: string, env: NodeJS.ProcessEnv = process.env): LoadedPipeline {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, path: '', message: `cannot read the file: ${(err as Error).message}` }]);
  }
  return parsePipeline(text, abs, env, file);
}

/**
 * Validates pipeline text: the schema, then what the schema cannot say — needs that name no
 * task, cycles, load/transform/retrain tasks with nothing to read, query placeholders that name
 * no parameter, and retrain tasks whose topology has no such anomaly step.
 */
export function parsePipeline(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  shownFile = file,
): LoadedPipeline {
  const { data: config, locate } = parseAndLocate(text, shownFile, pipelineSchema, env);
  const problems: ConfigProblem[] = [];
  const problem = (at: (string | number)[], message: string, key?: string) =>
    problems.push({ file: shownFile, ...locate(at, key), path: pathText(key ? [...at, key] : at), message });

  const names = Object.keys(config.tasks);
  for (const [name, task] of Object.entries(config.tasks)) {
    const badName = nameProblem(name);
    if (badName) problem(['tasks'], `task name: ${badName}`, name);
    task.needs.forEach((need, i) => {
      if (need === name) problem(['tasks', name, 'needs', i], `task '${name}' cannot need itself`);
      else if (!(need in config.tasks))
        problem(
          ['tasks', name, 'needs', i],
          `unknown task '${need}'${didYouMean(need, names)}; tasks: ${names.join(', ')}`,
        );
    });
    if (task.kind !== 'extract' && !task.needs.some((n) => isRecordTask(config, n))) {
      problem(
        ['tasks', name],
        `a ${task.kind} task reads the records of its needs: add an extract or transform task to 'needs'`,
        'needs',
      );
    }
    if (task.kind === 'extract') {
      const { source } = task;
      if (source.kind === 'kafka') {
        for (const bound of ['from', 'to'] as const) {
          const text = String(source[bound]);
          const names = placeholders(text);
          for (const p of names) {
            if (!(p in config.params)) problem(['tasks', name, 'source', bound], unknownParam(p, config));
          }
          if (names.length === 0 && typeof source[bound] === 'string' && epochMs(text) === null) {
            problem(
              ['tasks', name, 'source', bound],
              `expected ms since the epoch, ISO-8601 or a {param}, found '${text}'`,
            );
          }
        }
      } else {
        for (const p of placeholders(source.query)) {
          if (!(p in config.params)) problem(['tasks', name, 'source', 'query'], unknownParam(p, config));
        }
      }
    }
    if (task.kind === 'retrain') {
      const message = checkRetrainTopology(task, path.dirname(file));
      if (message) problem(['tasks', name, message.key], message.text);
    }
  }
  const needs = needsOf(config);
  const cycle = findCycle(needs);
  if (cycle) problem(['tasks', cycle[0] as string], `cycle ${cycle.join(' → ')}`, 'needs');
  if (problems.length > 0) {
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    throw new ConfigError(problems);
  }
  return { file, text, config, order: topologicalOrder(needs), tree: flowTree(needs), locate };
}

export function needsOf(config: PipelineConfig): Map<string, string[]> {
  return new Map(Object.entries(config.tasks).map(([name, t]) => [name, t.needs]));
}

function isRecordTask(config: PipelineConfig, name: string): boolean {
  const task = config.tasks[name];
  return task !== undefined && producesRecords(task);
}

function pathText(p: (string | number)[]): string {
  return p.map((s, i) => (typeof s === 'number' ? `[${s}]` : i ? `.${s}` : s)).join('');
}

function placeholders(text: string): string[] {
  return [...text.matchAll(PLACEHOLDER)].map((m) => m[1] as string);
}

function unknownParam(name: string, config: PipelineConfig): string {
  const declared = Object.keys(config.params);
  return `unknown parameter '{${name}}'${didYouMean(name, declared)}; declared under params: ${
    declared.join(', ') || '(none)'
  }`;
}

/** The anomaly step a retrain task fits, from its topology file. */
export function anomalyStepOf(task: RetrainTaskConfig, baseDir: string): AnomalyStepConfig {
  const { config } = loadTopology(path.resolve(baseDir, task.topology));
  const anomaly = config.steps.filter((s): s is AnomalyStepConfig => s.kind === 'anomaly');
  const named =
    task.step === undefined ? anomaly : anomaly.filter((s) => (s.name ?? 'anomaly') === task.step);
  if (named.length !== 1) {
    const names = anomaly.map((s) => s.name ?? 'anomaly');
    throw new FlotillaError(
      task.step === undefined
        ? `topology '${config.name}' has ${anomaly.length} anomaly steps; name one with 'step'${
            names.length ? ` (${names.join(', ')})` : ''
          }`
        : `topology '${config.name}' has no anomaly step '${task.step}'${didYouMean(task.step, names)}${
            names.length ? `; anomaly steps: ${names.join(', ')}` : ''
          }`,
    );
  }
  return named[0] as AnomalyStepConfig;
}

function checkRetrainTopology(
  task: RetrainTaskConfig,
  baseDir: string,
): { key: 'topology' | 'step'; text: string } | undefined {
  try {
    anomalyStepOf(task, baseDir);
    return undefined;
  } catch (err) {
    if (err instanceof ConfigError) {
      return { key: 'topology', text: `the topology does not validate:\n${err.message}` };
    }
    if (err instanceof FlotillaError) return { key: 'step', text: err.message };
    throw err;
  }
}

/**
 * The parameters of a run: the pipeline's defaults overridden by `given`. A name the pipeline
 * does not declare, or a required parameter (default null) not given, is an error.
 */
export function resolveParams(
  config: PipelineConfig,
  given: Record<string, ParamValue>,
): Record<string, ParamValue> {
  const declared = Object.keys(config.params);
  for (const name of Object.keys(given)) {
    if (!(name in config.params)) {
      throw new PipelineParamError(
        `unknown parameter '${name}'${didYouMean(name, declared)}; pipeline '${config.name}' declares: ${
          declared.join(', ') || '(none)'
        }`,
      );
    }
  }
  const params: Record<string, ParamValue> = {};
  for (const [name, fallback] of Object.entries(config.params)) {
    const value = given[name] ?? fallback;
    if (value === null) {
      throw new PipelineParamError(`parameter '${name}' is required: pass --param ${name}=VALUE`);
    }
    params[name] = value;
  }
  return params;
}

/** `k=v` pairs from the command line. */
export function parseParamArgs(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new PipelineParamError(`--param: expected NAME=VALUE, got '${pair}'`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
