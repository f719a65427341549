import { execFileSync } from 'node:child_process';
import { resolveServiceEnv, SERVICES, servicesScript, tcpReachable, unreachableMessage } from './services.js';

/**
 * Finds every service the integration tests need. Settings come from the environment or
 * from `scripts/services.sh env`; services that do not answer are brought up with the
 * script (set FLOTILLA_START_SERVICES=0 to forbid that). A service that still does not
 * answer fails the run with a message naming it: integration tests never skip.
 */
export default async function setup(): Promise<void> {
  const env = resolveServiceEnv();

  const down = async () => {
    const missing = [];
    for (const s of SERVICES) {
      const { host, port } = s.address(env[s.key]);
      if (!(await tcpReachable(host, port))) missing.push(s);
    }
    return missing;
  };

  let missing = await down();
  if (missing.length > 0 && process.env.FLOTILLA_START_SERVICES !== '0') {
    const names = missing.map((s) => s.script);
    console.log(`[services] not answering: ${names.join(', ')}; starting them with scripts/services.sh up`);
    try {
      execFileSync('bash', [servicesScript, 'up', ...names], { stdio: 'inherit', timeout: 25 * 60_000 });
    } catch {
      // The check below names what is still missing.
    }
    missing = await down();
  }
  if (missing.length > 0) {
    throw new Error(
      `Integration tests need real services; not reachable:\n${missing
        .map((s) => `  - ${unreachableMessage(s.name, s.key, env[s.key])}`)
        .join('\n')}`,
    );
  }
  for (const s of SERVICES) process.env[s.key] = env[s.key];
}
