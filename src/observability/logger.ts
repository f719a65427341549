import { pino } from 'pino';
import { PinoPretty } from 'pino-pretty';
import { FlotillaError } from '../core/errors.js';

export type Logger = pino.Logger;

export type LogFormat = 'json' | 'pretty';

/** FLOTILLA_LOG_FORMAT=json|pretty; unset: pretty when stderr is a terminal, JSON otherwise. */
export function logFormat(
  env: NodeJS.ProcessEnv = process.env,
  isTTY = process.stderr.isTTY === true,
): LogFormat {
  const format = env.FLOTILLA_LOG_FORMAT;
  if (format === undefined || format === '') return isTTY ? 'pretty' : 'json';
  if (format === 'json' || format === 'pretty') return format;
  throw new FlotillaError(`FLOTILLA_LOG_FORMAT: expected 'json' or 'pretty', got '${format}'`);
}

/** FLOTILLA_LOG_LEVEL, default info. */
export function logLevel(env: NodeJS.ProcessEnv = process.env): pino.LevelWithSilent {
  const level = env.FLOTILLA_LOG_LEVEL || 'info';
  const known = [...Object.keys(pino.levels.values), 'silent'];
  if (!known.includes(level)) {
    throw new FlotillaError(`FLOTILLA_LOG_LEVEL: expected one of ${known.join(', ')}, got '${level}'`);
  }
  return level as pino.LevelWithSilent;
}

// One stream per format for the whole process; synchronous so the last lines before an exit are written.
const destinations = new Map<LogFormat, pino.DestinationStream>();

function destination(format: LogFormat): pino.DestinationStream {
  let stream = destinations.get(format);
  if (!stream) {
    stream =
      format === 'json'
        ? pino.destination({ dest: 2, sync: true })
        : PinoPretty({
            destination: 2,
            sync: true,
            colorize: process.stderr.isTTY === true,
            translateTime: 'SYS:HH:MM:ss.l',
            ignore: 'pid,hostname',
            singleLine: true,
          });
    destinations.set(format, stream);
  }
  return stream;
}

/**
 * Logs on stderr (stdout is for records): JSON lines, or pretty on a terminal (see logFormat).
 * `bindings` (topology, partition, component...) are on every line.
 */
export function createLogger(bindings: Record<string, unknown> = {}): Logger {
  return pino({ level: logLevel() }, destination(logFormat())).child(bindings);
}
