import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../core/errors.js';
import { type TopologyConfig, topologySchema } from './schema.js';
import { type Locator, parseAndLocate } from './validate.js';

export interface LoadedTopology {
  file: string;
  config: TopologyConfig;
  /** Line and column of a YAML path, for problems found after validation. */
  locate: Locator;
}

/** Reads and validates a topology file; throws ConfigError naming file, line and YAML path. */
export function loadTopology(file: string, env: NodeJS.ProcessEnv = process.env): LoadedTopology {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, path: '', message: `cannot read the file: ${(err as Error).message}` }]);
  }
  const { data: config, locate } = parseAndLocate(text, file, topologySchema, env);
  const names = new Set<string>();
  const problems = [...config.steps, ...config.sinks].flatMap((c, i) => {
    const n = c.name ?? c.kind;
    if (names.has(n)) {
      const where: [string, number] =
        i < config.steps.length ? ['steps', i] : ['sinks', i - config.steps.length];
      return [
        {
          file,
          ...locate(where, 'name'),
          path: `${where[0]}[${where[1]}].name`,
          message: `'${n}' is used twice; give each step and sink a unique name`,
        },
      ];
    }
    names.add(n);
    return [];
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return { file: abs, config, locate };
}
