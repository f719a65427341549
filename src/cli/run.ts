import { createLogger } from '../observability/logger.js';
import { buildParts, Worker } from '../runtime/worker.js';
import { loadTopology } from '../topology/load.js';
import type { Command } from './main.js';

/** Runs topologies until they end or SIGINT/SIGTERM stops them (drain, commit, exit 0). */
export async function runTopologies(files: string[]): Promise<number> {
  const logger = createLogger();
  const topologies = files.map((f) => loadTopology(f));
  const workers = await Promise.all(
    topologies.map(
      async (t) => new Worker(t, await buildParts(t, logger), logger.child({ topology: t.config.name })),
    ),
  );
  const stop = (signal: string) => {
    logger.info({ signal }, 'stopping: draining in-flight batches');
    for (const w of workers) void w.stop();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await Promise.all(workers.map((w) => w.run()));
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
  return 0;
}

export const run: Command = {
  summary: 'run one or more topologies until stopped',
  needsFiles: true,
  usage: 'Usage: flotilla run FILE...\n\nSIGINT/SIGTERM drain in-flight batches, commit and exit 0.',
  async run({ positionals }) {
    return runTopologies(positionals);
  },
};
