import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from './main.js';
import { runTopologies } from './run.js';

/** The packaged example; `dist/cli` and `src/cli` are both two levels below the package root. */
export const demoTopology = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../topologies/demo.yaml',
);

export const demo: Command = {
  summary: 'run the example topology on the embedded log (no services needed)',
  usage: `Usage: flotilla demo\n\nRuns ${path.relative(process.cwd(), demoTopology)}: generated system metrics through the embedded log, printed as JSON lines.`,
  async run() {
    return runTopologies([demoTopology], { port: 'off' });
  },
};
