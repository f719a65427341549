import { readFileSync } from 'node:fs';
import { ConfigError } from '../core/errors.js';
import type { Readiness } from '../observability/http.js';
import type { Logger } from '../observability/logger.js';
import { type LoadedTopology, loadTopology } from '../topology/load.js';
import { buildParts, Worker } from './worker.js';

/** One topology file of the process and the worker currently running it. */
interface Slot {
  file: string;
  text: string;
  worker: Worker;
  running: Promise<void>;
  unregister: () => void;
}

/**
 * The topologies one process runs. Each runs in its own worker; `reload` swaps in the new
 * version of changed files (validated first: an invalid file keeps the old version running),
 * `stop` drains them all.
 */
export class Fleet {
  private readonly slots: Slot[] = [];
  private stopping = false;

  constructor(
    private readonly logger: Logger,
    private readonly readiness?: Readiness,
  ) {}

  /** Loads and starts every file; a file that does not validate fails the whole start. */
  async start(files: string[]): Promise<void> {
    const loaded = files.map((file) => ({
      file,
      text: readFileSync(file, 'utf8'),
      topology: loadTopology(file),
    }));
    for (const l of loaded) this.slots.push(await this.launch(l.file, l.text, l.topology));
  }

  /** Resolves when every worker has ended (stopped, or its bounded source ran out); rejects on a failure. */
  async done(): Promise<void> {
    for (;;) {
      const pending = this.slots.map((s) => s.running);
      await Promise.all(pending);
      // A reload may have replaced workers while we waited.
      if (this.slots.every((s, i) => s.running === pending[i])) return;
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.slots.map((s) => s.worker.stop()));
  }

  /** Re-reads every file; restarts the workers of the ones that changed and still validate. */
  async reload(): Promise<void> {
    if (this.stopping) return;
    for (const [i, slot] of this.slots.entries()) {
      let text: string;
      let topology: LoadedTopology;
      try {
        text = readFileSync(slot.file, 'utf8');
        if (text === slot.text) continue;
        topology = loadTopology(slot.file);
      } catch (err) {
        const message = err instanceof ConfigError ? err.message : String(err);
        this.logger.error(
          { file: slot.file, problems: message },
          'reload refused: keeping the running version',
        );
        continue;
      }
      this.logger.info({ file: slot.file }, 'reload: draining the old version');
      await slot.worker.stop();
      await slot.running.catch(() => undefined);
      slot.unregister();
      this.slots[i] = await this.launch(slot.file, text, topology);
      this.logger.info({ file: slot.file, topology: topology.config.name }, 'reload: new version running');
    }
  }

  private async launch(file: string, text: string, topology: LoadedTopology): Promise<Slot> {
    const name = topology.config.name;
    const logger = this.logger.child({ topology: name });
    const parts = await buildParts(topology, logger);
    const worker = new Worker(topology, parts, logger);
    const removers = [
      this.readiness?.register(`${name}/source`, () => parts.source.ready?.() ?? true),
      ...parts.sinks.map((sink) =>
        this.readiness?.register(`${name}/sink/${sink.name}`, () => sink.healthy?.() ?? true),
      ),
    ];
    const running = worker.run();
    return {
      file,
      text,
      worker,
      running,
      unregister: () => {
        for (const remove of removers) remove?.();
      },
    };
  }
}
