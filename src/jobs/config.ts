/**
 * The PostgreSQL schema of runs, staging and the model registry. Not `flotilla`: with a role of
 * that name (the services' default), a schema named after the role comes first on the default
 * search_path (`"$user", public`), so that role's unqualified tables would land in it.
 */
export const DEFAULT_JOBS_SCHEMA = 'flotilla_jobs';

/** Where pipelines keep their state: Redis for BullMQ, PostgreSQL for runs, staging and models. */
export interface JobsConfig {
  redisUrl: string;
  pgUrl: string;
  /** BullMQ key prefix (default `flotilla`). */
  prefix?: string;
  /** PostgreSQL schema of runs, staging tables and the model registry (default `flotilla_jobs`). */
  schema?: string;
}

/** REDIS_URL and PG_URL, else the local defaults of scripts/services.sh. */
export function jobsConfigFromEnv(env: NodeJS.ProcessEnv = process.env): JobsConfig {
  return {
    redisUrl: env.REDIS_URL || 'redis://127.0.0.1:6379',
    pgUrl: env.PG_URL || 'postgres://flotilla:flotilla@127.0.0.1:5432/flotilla',
    prefix: env.FLOTILLA_JOBS_PREFIX || 'flotilla',
    schema: env.FLOTILLA_JOBS_SCHEMA || DEFAULT_JOBS_SCHEMA,
  };
}
