import { execFileSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const servicesScript = path.join(repoRoot, 'scripts/services.sh');

/** A service the integration tests need, the env key that locates it, and how to reach it. */
export interface ServiceSpec {
  name: string;
  key: ServiceKey;
  /** host:port to probe, from the env value. */
  address(value: string): { host: string; port: number };
  /** scripts/services.sh name. */
  script: string;
}

export type ServiceKey =
  | 'KAFKA_BROKERS'
  | 'SCHEMA_REGISTRY_URL'
  | 'REDIS_URL'
  | 'PG_URL'
  | 'CLICKHOUSE_URL'
  | 'MONGO_URL';

function fromUrl(value: string, defaultPort: number): { host: string; port: number } {
  const url = new URL(value);
  return { host: url.hostname, port: url.port ? Number(url.port) : defaultPort };
}

export const SERVICES: ServiceSpec[] = [
  {
    name: 'Kafka',
    key: 'KAFKA_BROKERS',
    script: 'kafka',
    address: (v) => {
      const [host = '127.0.0.1', port = '9092'] = (v.split(',')[0] ?? '').split(':');
      return { host, port: Number(port) };
    },
  },
  {
    name: 'Schema registry',
    key: 'SCHEMA_REGISTRY_URL',
    script: 'schema-registry',
    address: (v) => fromUrl(v, 8081),
  },
  { name: 'Redis', key: 'REDIS_URL', script: 'redis', address: (v) => fromUrl(v, 6379) },
  { name: 'PostgreSQL', key: 'PG_URL', script: 'postgres', address: (v) => fromUrl(v, 5432) },
  { name: 'ClickHouse', key: 'CLICKHOUSE_URL', script: 'clickhouse', address: (v) => fromUrl(v, 8123) },
  { name: 'MongoDB', key: 'MONGO_URL', script: 'mongo', address: (v) => fromUrl(v, 27017) },
];

/** `export KEY=value` (or KEY=value) lines, as printed by `scripts/services.sh env`. */
export function parseEnvLines(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m?.[1] && m[2] !== undefined) out[m[1]] = m[2];
  }
  return out;
}

/** The settings: those already in the environment win over the script's defaults. */
export function resolveServiceEnv(): Record<ServiceKey, string> {
  const defaults = parseEnvLines(execFileSync('bash', [servicesScript, 'env'], { encoding: 'utf8' }));
  const env = {} as Record<ServiceKey, string>;
  for (const s of SERVICES) {
    const value = process.env[s.key] ?? defaults[s.key];
    if (!value) throw new Error(`${s.name}: no ${s.key} in the environment or from scripts/services.sh env`);
    env[s.key] = value;
  }
  return env;
}

export function tcpReachable(host: string, port: number, timeoutMs = 1500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The message a test prints when it cannot reach a service. */
export function unreachableMessage(name: string, key: string, value: string, cause?: unknown): string {
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  return (
    `${name} is not reachable at ${value} (${key})${why}. ` +
    'Start the services with `npm run services:up` (natively) or `docker compose up -d`, ' +
    `or point ${key} at a running ${name}.`
  );
}

/** The value of a service setting inside a test (set by the global setup). */
export function serviceUrl(key: ServiceKey): string {
  const value = process.env[key];
  if (!value) throw new Error(`${key} is not set: the integration global setup did not run`);
  return value;
}

/**
 * Runs `connect` and turns any failure into an error naming the service, so a missing
 * service reads as such instead of as a driver stack trace.
 */
export async function connectOrExplain<T>(key: ServiceKey, connect: () => Promise<T>): Promise<T> {
  const spec = SERVICES.find((s) => s.key === key);
  try {
    return await connect();
  } catch (err) {
    throw new Error(unreachableMessage(spec?.name ?? key, key, process.env[key] ?? '(unset)', err), {
      cause: err,
    });
  }
}
