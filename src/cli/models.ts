import { Redis } from 'ioredis';
import pg from 'pg';
import { FlotillaError } from '../core/errors.js';
import { jobsConfigFromEnv } from '../jobs/config.js';
import { ModelNotFoundError, ModelRegistry, type ModelVersionInfo } from '../jobs/model-registry.js';
import type { Command } from './main.js';

const USAGE = `Usage:
  flotilla models list [NAME]
  flotilla models show NAME [VERSION] [--series KEY]
  flotilla models rollback NAME VERSION

list      models and their versions (* marks the current one, which running steps use)
show      one version (default: the current one): training window, metrics, where it came from;
          with --series KEY (e.g. '["acme","web-1","cpu"]'), that series' fitted parameters
rollback  makes VERSION current again; running steps switch to it within seconds

PostgreSQL and Redis: PG_URL and REDIS_URL (default: the local services).`;

const SUBCOMMANDS = ['list', 'show', 'rollback'];
/** Series keys `show` names before it says how many more there are. */
const SHOWN_SERIES = 10;

const day = (d: Date | null) => (d ? d.toISOString().replace(/\.\d+Z$/, 'Z') : '-');

function versionLine(v: ModelVersionInfo): string {
  const metrics = v.metrics as { points?: number; skipped_series?: number };
  return [
    `${v.current ? '*' : ' '} ${v.name}`,
    `v${v.version}`,
    `${v.series} series`,
    `${metrics.points ?? '?'} points`,
    `trained on ${day(v.trainingFrom)} … ${day(v.trainingTo)}`,
    `created ${day(v.createdAt)}`,
  ].join('  ');
}

function parseVersion(raw: string | undefined): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new FlotillaError(`expected a version number, got '${raw}'`);
  return n;
}

async function withRegistry<T>(work: (r: ModelRegistry) => Promise<T>): Promise<T> {
  const config = jobsConfigFromEnv();
  const pool = new pg.Pool({ connectionString: config.pgUrl, max: 1 });
  const publisher = new Redis(config.redisUrl, { maxRetriesPerRequest: 2 });
  try {
    return await work(new ModelRegistry(pool, config.schema, publisher));
  } finally {
    publisher.disconnect();
    await pool.end();
  }
}

/** The version `show` is about: the one asked for, else the current one. */
async function versionOf(registry: ModelRegistry, name: string, version: string | undefined) {
  const all = await registry.versions(name);
  if (all.length === 0) {
    const names = [...new Set((await registry.versions()).map((v) => v.name))];
    throw new ModelNotFoundError(
      `no model '${name}' in the registry${names.length ? `; models: ${names.join(', ')}` : ''}`,
    );
  }
  const wanted = version === undefined ? undefined : parseVersion(version);
  const v = all.find((x) => (wanted === undefined ? x.current : x.version === wanted));
  if (!v) {
    throw new ModelNotFoundError(
      `model '${name}' has no version ${wanted}; versions: ${all.map((x) => x.version).join(', ')}`,
    );
  }
  return v;
}

async function show(
  registry: ModelRegistry,
  name: string,
  version: string | undefined,
  series: string | undefined,
): Promise<void> {
  const v = await versionOf(registry, name, version);
  if (series !== undefined) {
    const parameters = await registry.seriesParameters(name, v.version, series);
    if (parameters === undefined) {
      throw new ModelNotFoundError(
        `version ${v.version} of model '${name}' has no series ${series} (keys are JSON lists of the step's series_key values)`,
      );
    }
    console.log(JSON.stringify(parameters, null, 2));
    return;
  }
  console.log(versionLine(v));
  console.log(JSON.stringify({ metrics: v.metrics, source: v.source }, null, 2));
  const keys = await registry.seriesKeys(name, v.version, SHOWN_SERIES + 1);
  if (keys.length > 0) {
    const more = v.series - Math.min(keys.length, SHOWN_SERIES);
    console.log(
      `series: ${keys.slice(0, SHOWN_SERIES).join('  ')}${more > 0 ? `  … and ${more} more` : ''}` +
        `\n(parameters of one: flotilla models show ${name} ${v.version} --series KEY)`,
    );
  }
}

export const models: Command = {
  summary: 'list the versions of anomaly models in the registry, show one, roll back',
  usage: USAGE,
  options: { series: { type: 'string' } },
  async run({ positionals, values }) {
    const [sub, name, version, ...rest] = positionals;
    const wrong = !sub
      ? 'a subcommand is required'
      : !SUBCOMMANDS.includes(sub)
        ? `unknown subcommand '${sub}'`
        : rest.length > 0 || (sub !== 'list' && !name) || (sub === 'rollback' && !version)
          ? `unexpected arguments for '${sub}'`
          : undefined;
    if (wrong) {
      console.error(`flotilla models: ${wrong}\n\n${USAGE}`);
      return 2;
    }
    return withRegistry(async (registry) => {
      try {
        if (sub === 'list') {
          const versions = await registry.versions(name);
          console.log(versions.length ? versions.map(versionLine).join('\n') : 'no models yet');
        } else if (sub === 'show') {
          await show(registry, name as string, version, values.series as string | undefined);
        } else {
          await registry.rollback(name as string, parseVersion(version));
          console.log(`model ${name}: version ${version} is current again`);
        }
        return 0;
      } catch (err) {
        if (!(err instanceof ModelNotFoundError)) throw err;
        console.error(`flotilla models: ${err.message}`);
        return 1;
      }
    });
  },
};
