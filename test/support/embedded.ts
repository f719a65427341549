import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { buildParts, Worker } from '../../src/runtime/worker.js';
import type { EmbeddedSource } from '../../src/sources/embedded.js';
import { loadTopology } from '../../src/topology/load.js';

export const silentLogger = pino({ level: 'silent' });

/** Writes `yaml` as topo.yaml in a fresh temp folder (or `dir`); returns the file's path. */
export function topologyFile(yaml: string, dir = mkdtempSync(path.join(tmpdir(), 'flotilla-'))): string {
  const file = path.join(dir, 'topo.yaml');
  writeFileSync(file, yaml);
  return file;
}

/**
 * Runs a topology with an embedded source until its input is consumed and committed.
 * `feed` appends the input once the parts exist (building them creates the topic).
 */
export async function runToEnd(
  file: string,
  feed: () => void = () => {},
  logger = silentLogger,
): Promise<void> {
  const topology = loadTopology(file);
  const parts = await buildParts(topology, logger);
  feed();
  (parts.source as EmbeddedSource).runUntil(() => true);
  await new Worker(topology, parts, logger).run();
}
