import { Redis } from 'ioredis';
import pg from 'pg';
import { z } from 'zod';
import { FlotillaError } from '../core/errors.js';
import type { Logger } from '../observability/logger.js';
import type { ModelParameters } from '../steps/anomaly/index.js';
import { tuningSchema } from '../steps/anomaly/schema.js';
import { DEFAULT_JOBS_SCHEMA, jobsConfigFromEnv } from './config.js';
import { jobMetrics } from './metrics.js';

import { quoteIdent } from './store.js';

/** Redis channel a model's new versions are announced on. */
export function modelChannel(model: string): string {
  return `flotilla:models:${model}`;
}

/** A model name or version that the registry does not have. */
export class ModelNotFoundError extends FlotillaError {}

/** A model version whose parameters do not validate: a watcher refuses it and keeps the one it has. */
export class InvalidModelError extends FlotillaError {}

export interface ModelVersionInfo {
  name: string;
  version: number;
  createdAt: Date;
  trainingFrom: Date | null;
  trainingTo: Date | null;
  series: number;
  metrics: Record<string, unknown>;
  /** Where it came from: pipeline run and task, topology and step, or a rollback. */
  source: Record<string, unknown>;
  /** The version watchers load. */
  current: boolean;
}

export interface NewModelVersion {
  series: Iterable<[string, ModelParameters]>;
  trainingFrom: number | null;
  trainingTo: number | null;
  metrics: Record<string, unknown>;
  source: Record<string, unknown>;
}

/** Series rows inserted per statement. */
const SERIES_PER_STATEMENT = 500;

/**
 * Versioned anomaly models in PostgreSQL: each version holds the parameters of every series
 * (JSONB), its training window and metrics; old versions stay. `models.current_version` is the
 * version watchers load — the newest published, or one a rollback chose — and every change of it
 * is announced on Redis (`flotilla:models:<name>`).
 */
export class ModelRegistry {
  private ready: Promise<void> | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly schema = DEFAULT_JOBS_SCHEMA,
    /** Announces new versions; without it watchers find them by polling. */
    private readonly publisher?: Redis,
  ) {}

  private t(table: string): string {
    return `${quoteIdent(this.schema)}.${quoteIdent(table)}`;
  }

  init(): Promise<void> {
    this.ready ??= (async () => {
      const c = await this.pool.connect();
      try {
        await c.query('BEGIN');
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`flotilla-models-ddl:${this.schema}`]);
        await c.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(this.schema)}`);
        await c.query(`CREATE TABLE IF NOT EXISTS ${this.t('models')} (
          name text PRIMARY KEY,
          current_version integer NOT NULL,
          updated_at timestamptz NOT NULL DEFAULT now())`);
        await c.query(`CREATE TABLE IF NOT EXISTS ${this.t('model_versions')} (
          name text NOT NULL,
          version integer NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          training_from timestamptz,
          training_to timestamptz,
          series integer NOT NULL,
          metrics jsonb NOT NULL,
          source jsonb NOT NULL,
          PRIMARY KEY (name, version))`);
        await c.query(`CREATE TABLE IF NOT EXISTS ${this.t('model_series')} (
          name text NOT NULL,
          version integer NOT NULL,
          series text NOT NULL,
          parameters jsonb NOT NULL,
          PRIMARY KEY (name, version, series),
          FOREIGN KEY (name, version) REFERENCES ${this.t('model_versions')} ON DELETE CASCADE)`);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        c.release();
      }
    })();
    return this.ready;
  }

  /**
   * Writes a new version and makes it current, in one transaction, then announces it. With a
   * `source.run`, a version already published by that run is returned instead (a retrain task
   * that ran again after a crash publishes once). Parameters that do not validate (non-finite
   * numbers, unknown options) throw InvalidModelError and write nothing: the current version stays.
   */
  async publish(name: string, model: NewModelVersion): Promise<number> {
    await this.init();
    const c = await this.pool.connect();
    let version: number;
    try {
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`flotilla-model:${this.schema}:${name}`]);
      const run = model.source.run;
      const existing =
        typeof run === 'string'
          ? await c.query(
              `SELECT version FROM ${this.t('model_versions')} WHERE name = $1 AND source->>'run' = $2`,
              [name, run],
            )
          : { rows: [] };
      if (existing.rows[0]) {
        await c.query('ROLLBACK');
        return existing.rows[0].version as number;
      }
      const next = await c.query(
        `SELECT COALESCE(max(version), 0) + 1 AS v FROM ${this.t('model_versions')} WHERE name = $1`,
        [name],
      );
      version = next.rows[0].v as number;
      let count = 0;
      await c.query(
        `INSERT INTO ${this.t('model_versions')} (name, version, training_from, training_to, series, metrics, source)
         VALUES ($1, $2, to_timestamp($3 / 1000.0), to_timestamp($4 / 1000.0), 0, $5, $6)`,
        [
          name,
          version,
          model.trainingFrom,
          model.trainingTo,
          JSON.stringify(model.metrics),
          JSON.stringify(model.source),
        ],
      );
      let page: { series: string; parameters: ModelParameters }[] = [];
      const flush = async () => {
        if (page.length === 0) return;
        await c.query(
          `INSERT INTO ${this.t('model_series')} (name, version, series, parameters)
           SELECT $1, $2, x.series, x.parameters FROM jsonb_to_recordset($3::jsonb) AS x(series text, parameters jsonb)`,
          [name, version, JSON.stringify(page)],
        );
        page = [];
      };
      for (const [series, parameters] of model.series) {
        // A version that would be refused by every watcher is refused here: the current one stays.
        validateParameters(series, parameters);
        page.push({ series, parameters });
        count++;
        if (page.length >= SERIES_PER_STATEMENT) await flush();
      }
      await flush();
      await c.query(`UPDATE ${this.t('model_versions')} SET series = $3 WHERE name = $1 AND version = $2`, [
        name,
        version,
        count,
      ]);
      await this.setCurrentIn(c, name, version);
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      c.release();
    }
    await this.announce(name, version);
    return version;
  }

  /** Makes an existing version current again (a rollback) and announces it. */
  async rollback(name: string, version: number): Promise<void> {
    await this.init();
    const exists = await this.pool.query(
      `SELECT 1 FROM ${this.t('model_versions')} WHERE name = $1 AND version = $2`,
      [name, version],
    );
    if (exists.rowCount === 0) {
      const versions = (await this.versions(name)).map((v) => v.version);
      throw new ModelNotFoundError(
        versions.length
          ? `model '${name}' has no version ${version}; versions: ${versions.join(', ')}`
          : `no model '${name}' in the registry`,
      );
    }
    await this.setCurrentIn(this.pool, name, version);
    await this.announce(name, version);
  }

  private async setCurrentIn(c: pg.Pool | pg.PoolClient, name: string, version: number): Promise<void> {
    await c.query(
      `INSERT INTO ${this.t('models')} (name, current_version) VALUES ($1, $2)
       ON CONFLICT (name) DO UPDATE SET current_version = $2, updated_at = now()`,
      [name, version],
    );
  }

  private async announce(name: string, version: number): Promise<void> {
    await this.publisher?.publish(modelChannel(name), JSON.stringify({ model: name, version }));
  }

  /** The version watchers should run, or undefined if the model has none yet. */
  async current(name: string): Promise<number | undefined> {
    await this.init();
    const res = await this.pool.query(`SELECT current_version FROM ${this.t('models')} WHERE name = $1`, [
      name,
    ]);
    return res.rows[0]?.current_version;
  }

  /** Versions of one model (newest first), or of every model. */
  async versions(name?: string): Promise<ModelVersionInfo[]> {
    await this.init();
    const res = await this.pool.query(
      `SELECT v.*, (m.current_version = v.version) AS current
       FROM ${this.t('model_versions')} v LEFT JOIN ${this.t('models')} m ON m.name = v.name
       WHERE $1::text IS NULL OR v.name = $1 ORDER BY v.name, v.version DESC`,
      [name ?? null],
    );
    return res.rows.map(
      (r): ModelVersionInfo => ({
        name: r.name,
        version: r.version,
        createdAt: r.created_at,
        trainingFrom: r.training_from,
        trainingTo: r.training_to,
        series: r.series,
        metrics: r.metrics,
        source: r.source,
        current: r.current === true,
      }),
    );
  }

  /** The first `limit` series keys of a version, in key order. */
  async seriesKeys(name: string, version: number, limit: number): Promise<string[]> {
    await this.init();
    const res = await this.pool.query(
      `SELECT series FROM ${this.t('model_series')} WHERE name = $1 AND version = $2 ORDER BY series LIMIT $3`,
      [name, version, limit],
    );
    return res.rows.map((r) => r.series as string);
  }

  /** The stored parameters of one series of a version (undefined: the version has no such series). */
  async seriesParameters(name: string, version: number, series: string): Promise<unknown> {
    await this.init();
    const res = await this.pool.query(
      `SELECT parameters FROM ${this.t('model_series')} WHERE name = $1 AND version = $2 AND series = $3`,
      [name, version, series],
    );
    return res.rows[0]?.parameters;
  }

  /** Parameters of every series of a version, validated; throws InvalidModelError naming the series at fault. */
  async load(name: string, version: number): Promise<Map<string, ModelParameters>> {
    await this.init();
    const out = new Map<string, ModelParameters>();
    let after = '';
    for (;;) {
      const res = await this.pool.query(
        `SELECT series, parameters FROM ${this.t('model_series')}
         WHERE name = $1 AND version = $2 AND series > $3 ORDER BY series LIMIT 1000`,
        [name, version, after],
      );
      if (res.rows.length === 0) break;
      for (const row of res.rows) out.set(row.series, validateParameters(row.series, row.parameters));
      after = res.rows[res.rows.length - 1].series;
    }
    return out;
  }
}

// Structure of a series state (steps/anomaly SeriesState): every number finite. Whether it fits
// the step's models (member kinds, slot counts) is checked by the step when it applies it.
const numberOrList = z.union([z.number(), z.array(z.number())]);
const seriesStateSchema = z
  .object({
    version: z.literal(1),
    latest: z.number().nullable(),
    count: z.number().int().min(0),
    low: z.number().nullable(),
    high: z.number().nullable(),
    members: z
      .array(
        z
          .object({
            kind: z.enum(['seasonal', 'ewma', 'mad']),
            model: z.record(z.string(), numberOrList),
            calibration: z
              .object({
                seen: z.number().int().min(0),
                weight: z.number().positive(),
                total: z.number().min(0),
                bins: z.array(z.number().min(0)),
              })
              .strict(),
          })
          .strict(),
      )
      .min(1),
    recent: z.array(z.tuple([z.number(), z.number()])),
  })
  .strict();

const modelParametersSchema = tuningSchema.extend({ state: seriesStateSchema.optional() }).strict();

function validateParameters(series: string, parameters: unknown): ModelParameters {
  const result = modelParametersSchema.safeParse(parameters);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.map(String).join('.') || '(parameters)';
    throw new InvalidModelError(`series ${series}: ${where}: ${issue?.message ?? 'invalid'}`);
  }
  return result.data as ModelParameters;
}

export interface ModelWatcherOptions {
  model: string;
  pgUrl: string;
  redisUrl: string;
  schema?: string;
  /** Looks for a new version this often even without a Redis announcement (default 30 s). */
  pollMs?: number;
  logger: Logger;
  /**
   * Applies a model atomically (every series or none); throws if it refuses it. The anomaly
   * step's `replaceModel` is one.
   */
  apply(model: Map<string, ModelParameters>, version: number): void;
}

/**
 * Keeps a running step on the current version of a model: told of new versions on Redis
 * pub/sub, and polling PostgreSQL in case an announcement was missed (Redis down, a restart).
 * A version that fails validation is refused: the error is logged and counted, the applied
 * version stays, and that version is not tried again until the current version changes.
 */
export class ModelWatcher {
  private readonly pool: pg.Pool;
  private readonly registry: ModelRegistry;
  private readonly subscriber: Redis;
  private readonly timer: NodeJS.Timeout;
  private applied = 0;
  private refused: number | undefined;
  /** The check in progress, and whether another was asked for meanwhile. */
  private checking: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  private constructor(private readonly options: ModelWatcherOptions) {
    this.pool = new pg.Pool({ connectionString: options.pgUrl, max: 2 });
    this.pool.on('error', () => {});
    this.registry = new ModelRegistry(this.pool, options.schema);
    this.subscriber = new Redis(options.redisUrl, { lazyConnect: true, maxRetriesPerRequest: null });
    this.subscriber.on('error', (err) =>
      options.logger.warn({ err: err.message }, 'model watcher: Redis error'),
    );
    this.subscriber.on('message', () => this.check());
    this.timer = setInterval(() => this.check(), options.pollMs ?? 30_000);
    this.timer.unref();
  }

  /** Starts watching; resolves after the first look (a model found then is applied before this resolves). */
  static async start(options: ModelWatcherOptions): Promise<ModelWatcher> {
    const watcher = new ModelWatcher(options);
    try {
      await watcher.subscriber.connect();
      await watcher.subscriber.subscribe(modelChannel(options.model));
    } catch (err) {
      options.logger.warn(
        { model: options.model, err: (err as Error).message },
        'model watcher: cannot subscribe on Redis; polling only',
      );
    }
    await watcher.check();
    return watcher;
  }

  /** The version applied last (0: none yet). */
  get version(): number {
    return this.applied;
  }

  /** Looks for a new current version now (coalesces concurrent calls). */
  check(): Promise<void> {
    if (this.checking) {
      this.again = true;
      return this.checking;
    }
    this.checking = (async () => {
      do {
        this.again = false;
        await this.checkOnce();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async checkOnce(): Promise<void> {
    const { model, logger } = this.options;
    let version: number | undefined;
    try {
      version = await this.registry.current(model);
    } catch (err) {
      logger.warn({ model, err: (err as Error).message }, 'model watcher: cannot read the registry');
      return;
    }
    if (version === undefined || version === this.applied || version === this.refused || this.stopped) return;
    if ((await this.tryApply(version)) !== 'refused' || this.applied !== 0) return;
    // A worker that starts on a version it refuses has none to keep: like a running one, it stays
    // on the last version it can use, the newest older one that applies.
    let older: number[];
    try {
      older = (await this.registry.versions(model)).map((v) => v.version).filter((v) => v < version);
    } catch (err) {
      logger.warn({ model, err: (err as Error).message }, 'model watcher: cannot list older versions');
      return;
    }
    for (const v of older) {
      const outcome = await this.tryApply(v);
      if (outcome === 'applied') this.refused = version; // not tried again until the current one changes
      if (outcome !== 'refused') return;
    }
  }

  /** Loads and applies a version; `unread` when the registry could not be read (tried again later). */
  private async tryApply(version: number): Promise<'applied' | 'refused' | 'unread'> {
    const { model, logger } = this.options;
    let parameters: Map<string, ModelParameters>;
    try {
      parameters = await this.registry.load(model, version);
    } catch (err) {
      if (!(err instanceof InvalidModelError)) {
        logger.warn(
          { model, version, err: (err as Error).message },
          'model watcher: cannot read the version',
        );
        return 'unread';
      }
      this.refuse(version, err);
      return 'refused';
    }
    try {
      this.options.apply(parameters, version);
    } catch (err) {
      this.refuse(version, err);
      return 'refused';
    }
    this.applied = version;
    this.refused = undefined;
    jobMetrics.modelLoads.inc({ model, outcome: 'applied' });
    jobMetrics.modelVersion.set({ model }, version);
    logger.info({ model, version, series: parameters.size }, 'model version applied');
    return 'applied';
  }

  private refuse(version: number, err: unknown): void {
    const { model, logger } = this.options;
    this.refused = version;
    jobMetrics.modelLoads.inc({ model, outcome: 'refused' });
    logger.error(
      { model, version, kept: this.applied, err: (err as Error).message },
      'model version refused; keeping the one applied',
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.checking;
    this.subscriber.disconnect();
    await this.pool.end();
  }
}

/** An anomaly step's `registry` option. */
export interface RegistryOption {
  model: string;
  poll: number;
  postgres?: string | undefined;
  redis?: string | undefined;
  schema: string;
}

/** Starts a watcher for a step's `registry` option (URLs default to PG_URL and REDIS_URL). */
export function watchModel(
  option: RegistryOption,
  apply: ModelWatcherOptions['apply'],
  logger: Logger,
): Promise<ModelWatcher> {
  const defaults = jobsConfigFromEnv();
  return ModelWatcher.start({
    model: option.model,
    pgUrl: option.postgres ?? defaults.pgUrl,
    redisUrl: option.redis ?? defaults.redisUrl,
    schema: option.schema,
    pollMs: option.poll,
    logger: logger.child({ model: option.model }),
    apply,
  });
}
