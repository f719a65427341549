#!/usr/bin/env node
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { ConfigError, FlotillaError } from '../core/errors.js';
import { demo } from './demo.js';
import { graph } from './graph.js';
import { jobs } from './jobs.js';
import { models } from './models.js';
import { pipeline } from './pipeline.js';
import { produce } from './produce.js';
import { replay } from './replay.js';
import { run } from './run.js';
import { schema } from './schema.js';
import { test } from './test.js';
import { validate } from './validate.js';

export interface Command {
  summary: string;
  usage: string;
  options?: ParseArgsConfig['options'];
  /** At least one FILE argument is required. */
  needsFiles?: boolean;
  run(args: { positionals: string[]; values: Record<string, unknown> }): Promise<number>;
}

const commands: Record<string, Command> = {
  validate,
  graph,
  run,
  demo,
  schema,
  produce,
  test,
  replay,
  jobs,
  pipeline,
  models,
};

function help(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    'flotilla — stream-processing workers for Kafka, driven by topology files',
    '',
    'Usage: flotilla <command> [options]',
    '',
    'Commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'flotilla <command> --help' for a command's options.",
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    console.error(`flotilla: unknown command '${name}'\n\n${help()}`);
    return 2;
  }
  const options = { help: { type: 'boolean', short: 'h' }, ...command.options } as const;
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  } catch (err) {
    console.error(`flotilla ${name}: ${(err as Error).message}\n\n${command.usage}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(command.usage);
    return 0;
  }
  if (command.needsFiles && parsed.positionals.length === 0) {
    console.error(`flotilla ${name}: a topology FILE is required\n\n${command.usage}`);
    return 2;
  }
  return command.run({ positionals: parsed.positionals, values: parsed.values });
}

// `flotilla demo | head` closes the pipe early: that ends the output, not in an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

/**
 * A command that returned is done: a client that still holds a socket or a timer (a join or a
 * reconnect in progress when it was stopped) must not keep the process alive.
 */
const exitSoon = (code: number) => {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2000).unref();
};

main(process.argv.slice(2)).then(exitSoon, (err: unknown) => {
  if (err instanceof ConfigError) console.error(err.message);
  else if (err instanceof FlotillaError) console.error(`flotilla: ${err.message}`);
  else console.error(err);
  exitSoon(1);
});
