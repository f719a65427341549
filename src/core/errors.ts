/** Base of every error Flotilla raises on purpose: typed, with the context to act on it. */
export class FlotillaError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Where in a topology file a problem is. Line and column are 1-based. */
export interface SourceLocation {
  file: string;
  line?: number;
  column?: number;
  /** The YAML path, e.g. `steps[2].expr`. */
  path: string;
}

export interface ConfigProblem extends SourceLocation {
  message: string;
}

/** One or more problems in a topology file, each with its file, line and YAML path. */
export class ConfigError extends FlotillaError {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.problems = problems;
  }
}

export function formatProblem(p: ConfigProblem): string {
  const at = p.line ? `${p.file}:${p.line}:${p.column ?? 1}` : p.file;
  return `${at}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

/** A record a step could not handle; it goes to the dead-letter topic with this reason. */
export class RecordError extends FlotillaError {
  constructor(
    message: string,
    readonly reason: string = 'error',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
