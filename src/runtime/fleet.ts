import { readFileSync } from 'node:fs';
import { ConfigError } from '../core/errors.js';
import type { Readiness } from '../observability/http.js';
import type { Logger } from '../observability/logger.js';
import { SinkHealth, type SinkHealthOptions } from '../sinks/shared/health.js';
import { type LoadedTopology, loadTopology } from '../topology/load.js';
import { buildParts, Worker, type WorkerParts } from './worker.js';

/** A validated topology with its components built, not yet running. */
interface Prepared {
  topology: LoadedTopology;
  logger: Logger;
  parts: WorkerParts;
}

/** One topology file of the process and the worker currently running it. */
interface Slot {
  file: string;
  text: string;
  worker: Worker;
  /** Checks the worker's sinks while it runs. */
  health: SinkHealth;
  running: Promise<void>;
  unregister: () => void;
}

export interface FleetOptions {
  /** How often and how patiently each sink's health check runs (default every 5 s, 2 s). */
  sinkHealth?: SinkHealthOptions;
}

/**
 * The topologies one process runs. Each runs in its own worker; `reload` swaps in the new
 * version of changed files (validated first: an invalid file keeps the old version running),
 * `stop` drains them all.
 */
export class Fleet {
  private readonly slots: Slot[] = [];
  private stopping = false;
  private reloading: Promise<void> = Promise.resolve();

  constructor(
    private readonly logger: Logger,
    private readonly readiness?: Readiness,
    private readonly options: FleetOptions = {},
  ) {}

  /** Loads and starts every file; a file that does not validate fails the whole start. */
  async start(files: string[]): Promise<void> {
    const loaded = files.map((file) => ({
      file,
      text: readFileSync(file, 'utf8'),
      topology: loadTopology(file),
    }));
    // Every topology is built before any starts: one broken file starts nothing.
    const prepared = await Promise.all(loaded.map((l) => this.prepare(l.topology)));
    for (const [i, l] of loaded.entries())
      this.slots.push(this.launch(l.file, l.text, prepared[i] as Prepared));
  }

  /** Resolves when every worker has ended (stopped, or its bounded source ran out); rejects on a failure. */
  async done(): Promise<void> {
    for (;;) {
      const pending = this.slots.map((s) => s.running);
      await Promise.all(pending);
      await this.reloading;
      // A reload may have replaced workers while we waited.
      if (this.slots.every((s, i) => s.running === pending[i])) return;
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.slots.map((s) => stopSlot(s)));
  }

  /** Re-reads every file; restarts the workers of the ones that changed and still validate. */
  reload(): Promise<void> {
    // One reload at a time; `done` waits for it, as it swaps workers.
    this.reloading = this.reloading.then(() =>
      this.reloadChanged().catch((err: unknown) => this.logger.error({ err }, 'reload failed')),
    );
    return this.reloading;
  }

  private async reloadChanged(): Promise<void> {
    if (this.stopping) return;
    for (const [i, slot] of this.slots.entries()) {
      let text: string;
      let next: Prepared;
      try {
        text = readFileSync(slot.file, 'utf8');
        if (text === slot.text) continue;
        // Validated and built (modules loaded, schemas read) before the old version stops.
        next = await this.prepare(loadTopology(slot.file));
      } catch (err) {
        const message = err instanceof ConfigError ? err.message : String(err);
        this.logger.error(
          { file: slot.file, problems: message },
          'reload refused: keeping the running version',
        );
        continue;
      }
      this.logger.info({ file: slot.file }, 'reload: draining the old version');
      await stopSlot(slot);
      await slot.running.catch(() => undefined);
      slot.unregister();
      this.slots[i] = this.launch(slot.file, text, next);
      this.logger.info(
        { file: slot.file, topology: next.topology.config.name },
        'reload: new version running',
      );
    }
  }

  private async prepare(topology: LoadedTopology): Promise<Prepared> {
    const logger = this.logger.child({ topology: topology.config.name });
    return { topology, logger, parts: await buildParts(topology, logger) };
  }

  private launch(file: string, text: string, { topology, logger, parts }: Prepared): Slot {
    const name = topology.config.name;
    const worker = new Worker(topology, parts, logger);
    const health = new SinkHealth(parts.sinks, name, logger, this.options.sinkHealth);
    const removers = [
      this.readiness?.register(`${name}/source`, () => parts.source.ready?.() ?? true),
      ...parts.sinks.map((sink) =>
        this.readiness?.register(`${name}/sink/${sink.name}`, () => health.readiness(sink)),
      ),
    ];
    health.start();
    return {
      file,
      text,
      worker,
      health,
      running: worker.run().finally(() => health.stop()),
      unregister: () => {
        for (const remove of removers) remove?.();
      },
    };
  }
}

/** Health checks end first: the worker's drain closes the sinks they would check. */
function stopSlot(slot: Slot): Promise<void> {
  slot.health.stop();
  return slot.worker.stop();
}
