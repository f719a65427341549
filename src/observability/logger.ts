import { pino } from 'pino';

export type Logger = pino.Logger;

/** JSON logs on stderr (stdout is for records), level from FLOTILLA_LOG_LEVEL. */
export function createLogger(bindings: Record<string, unknown> = {}): Logger {
  return pino(
    { level: process.env.FLOTILLA_LOG_LEVEL ?? 'info', base: { ...bindings } },
    pino.destination(2),
  );
}
