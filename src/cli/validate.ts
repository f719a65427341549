import path from 'node:path';
import { ConfigError } from '../core/errors.js';
import { loadFixture } from '../testing/fixture.js';
import { loadTopology } from '../topology/load.js';
import type { Command } from './main.js';

/** Checks one file: a `*.test.yaml` is a fixture (its topology is checked too), anything else a topology. */
function check(file: string): string {
  if (/\.test\.ya?ml$/.test(file)) {
    const fixture = loadFixture(file);
    const topology = path.join(path.dirname(file), fixture.config.topology);
    loadTopology(topology);
    return `${file}: ok (fixture for ${topology}: ${fixture.config.input.length} input records)`;
  }
  const { config } = loadTopology(file);
  return `${file}: ok (${config.name}: ${config.source.kind} → ${config.steps.length} steps → ${config.sinks.length} sinks)`;
}

export const validate: Command = {
  summary: 'check topology files and test fixtures; print every problem with file, line and YAML path',
  needsFiles: true,
  usage:
    'Usage: flotilla validate FILE...\n\nChecks topologies, and fixtures (*.test.yaml) with the topology each names.\nExit status 0 when every file is valid, 1 otherwise.',
  async run({ positionals }) {
    let failed = 0;
    for (const file of positionals) {
      try {
        console.log(check(file));
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        failed++;
        console.error(err.message);
      }
    }
    return failed ? 1 : 0;
  },
};
