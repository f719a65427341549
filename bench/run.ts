/**
 * `npm run bench -- NAME [ARGS]`: runs bench/NAME.ts in its own process (so one benchmark's
 * heap never skews another's memory figures). Every benchmark ends by printing one JSON line.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const available = readdirSync(benchDir)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.startsWith('_') && !f.endsWith('-score.ts'))
  .map((f) => f.slice(0, -3))
  .sort();

const [name, ...args] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  console.error(
    `${name ? `no benchmark '${name}'. ` : ''}Usage: npm run bench -- NAME [ARGS]\n\nBenchmarks: ${available.join(', ')}`,
  );
  process.exit(2);
}
const child = spawn(process.execPath, ['--import', 'tsx', path.join(benchDir, `${name}.ts`), ...args], {
  stdio: 'inherit',
});
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
