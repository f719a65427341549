import { execFileSync } from 'node:child_process';
import {
  repoRoot,
  resolveServiceEnv,
  SERVICES,
  type ServiceSpec,
  servicesScript,
  tcpReachable,
  unreachableMessage,
} from './services.js';

/**
 * Finds every service the integration tests need. Settings come from the environment or
 * from `scripts/services.sh env`. Services that do not answer are brought up — with
 * testcontainers and docker-compose.yml where a Docker engine answers, otherwise natively
 * with scripts/services.sh (FLOTILLA_SERVICES=docker|native forces one; =none forbids
 * starting anything). A service that still does not answer fails the run with a message
 * naming it: integration tests never skip.
 */
export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  const env = resolveServiceEnv();
  const unreachable = async () => {
    const missing: ServiceSpec[] = [];
    for (const s of SERVICES) {
      const { host, port } = s.address(env[s.key]);
      if (!(await tcpReachable(host, port))) missing.push(s);
    }
    return missing;
  };

  let teardown: (() => Promise<void>) | undefined;
  let missing = await unreachable();
  const mode = process.env.FLOTILLA_SERVICES ?? 'auto';
  if (missing.length > 0 && mode !== 'none') {
    const names = missing.map((s) => s.script);
    if (mode === 'docker' || (mode === 'auto' && (await dockerAnswers()))) {
      teardown = await composeUp(names);
      // Confluent's registry in docker-compose.yml serves its API at the root.
      if (!process.env.SCHEMA_REGISTRY_URL) env.SCHEMA_REGISTRY_URL = 'http://127.0.0.1:8081';
    } else {
      console.log(`[services] not answering: ${names.join(', ')}; starting them with scripts/services.sh up`);
      try {
        execFileSync('bash', [servicesScript, 'up', ...names], { stdio: 'inherit', timeout: 25 * 60_000 });
      } catch {
        // The check below names what is still missing.
      }
    }
    missing = await unreachable();
  }
  if (missing.length > 0) {
    throw new Error(
      `Integration tests need real services; not reachable:\n${missing
        .map((s) => `  - ${unreachableMessage(s.name, s.key, env[s.key])}`)
        .join('\n')}`,
    );
  }
  for (const s of SERVICES) process.env[s.key] = env[s.key];
  return teardown;
}

async function dockerAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

/** docker-compose.yml publishes the same loopback ports the native script uses. */
async function composeUp(services: string[]): Promise<() => Promise<void>> {
  const { DockerComposeEnvironment, Wait } = await import('testcontainers');
  console.log(`[services] starting ${services.join(', ')} with docker-compose.yml (testcontainers)`);
  const started = await new DockerComposeEnvironment(repoRoot, 'docker-compose.yml')
    .withWaitStrategy('kafka-1', Wait.forHealthCheck())
    .withWaitStrategy('postgres-1', Wait.forHealthCheck())
    .up(services);
  return async () => {
    await started.down();
  };
}
