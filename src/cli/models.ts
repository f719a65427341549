import { Redis } from 'ioredis';
import pg from 'pg';
import { FlotillaError } from '../core/errors.js';
import { jobsConfigFromEnv } from '../jobs/config.js';
import { ModelNotFoundError, ModelRegistry, type ModelVersionInfo } from '../jobs/model-registry.js';
import type { Command } from './main.js';

const USAGE = `Usage:
  flotilla models list [NAME]
  flotilla models show NAME [VERSION]
  flotilla models rollback NAME VERSION

list      models and their versions (* marks the current one, which running steps use)
show      one version (default: the current one): training window, metrics, where it came from
rollback  makes VERSION current again; running steps switch to it within seconds

PostgreSQL and Redis: PG_URL and REDIS_URL (default: the local services).`;

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

export const models: Command = {
  summary: 'list the versions of anomaly models in the registry, show one, roll back',
  usage: USAGE,
  async run({ positionals }) {
    const [sub, name, version, ...rest] = positionals;
    if (rest.length > 0 || !sub) {
      console.error(
        `flotilla models: ${sub ? 'too many arguments' : 'a subcommand is required'}\n\n${USAGE}`,
      );
      return 2;
    }
    return withRegistry(async (registry) => {
      try {
        switch (sub) {
          case 'list': {
            const versions = await registry.versions(name);
            console.log(versions.length ? versions.map(versionLine).join('\n') : 'no models yet');
            return 0;
          }
          case 'show': {
            if (!name) break;
            const all = await registry.versions(name);
            const v = version
              ? all.find((x) => x.version === parseVersion(version))
              : all.find((x) => x.current);
            if (!v) throw new ModelNotFoundError(`no such version of model '${name}'`);
            console.log(versionLine(v));
            console.log(JSON.stringify({ metrics: v.metrics, source: v.source }, null, 2));
            return 0;
          }
          case 'rollback': {
            if (!name || !version) break;
            await registry.rollback(name, parseVersion(version));
            console.log(`model ${name}: version ${version} is current again`);
            return 0;
          }
        }
      } catch (err) {
        if (!(err instanceof ModelNotFoundError)) throw err;
        console.error(`flotilla models: ${err.message}`);
        return 1;
      }
      console.error(`flotilla models: unexpected arguments\n\n${USAGE}`);
      return 2;
    });
  },
};
