import { ConfigError } from '../core/errors.js';
import { loadTopology } from '../topology/load.js';
import type { Command } from './main.js';

export const validate: Command = {
  summary: 'check topology files; print every problem with file, line and YAML path',
  needsFiles: true,
  usage: 'Usage: flotilla validate FILE...\n\nExit status 0 when every file is valid, 1 otherwise.',
  async run({ positionals }) {
    let failed = 0;
    for (const file of positionals) {
      try {
        const { config } = loadTopology(file);
        console.log(
          `${file}: ok (${config.name}: ${config.source.kind} → ${config.steps.length} steps → ${config.sinks.length} sinks)`,
        );
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        failed++;
        console.error(err.message);
      }
    }
    return failed ? 1 : 0;
  },
};
