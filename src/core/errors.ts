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

/**
 * A component config that validates but cannot be used when the component is created (a module
 * that does not load, an unreadable schema file, no registry URL). `key` is the option at fault,
 * so whoever builds the topology can name its YAML path, e.g. `steps[2].module`.
 */
export class ComponentConfigError extends FlotillaError {
  constructor(
    readonly key: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * An outage the operation can ride out by waiting (a service unreachable). A step that throws
 * it must not have changed its records or its state: the worker runs it again after a backoff.
 */
export class TransientError extends FlotillaError {
  readonly transient = true;
}

/**
 * The partition's state was claimed by another worker (this one was evicted from the group —
 * frozen, partitioned off — and has not noticed yet). Its writes are refused; it must give the
 * partition up without committing anything of it.
 */
export class StateFencedError extends FlotillaError {
  constructor(
    readonly store: string,
    readonly partition: number,
    options?: { cause?: unknown },
  ) {
    super(
      `state of ${store}[${partition}] was claimed by another worker; this one no longer owns the partition`,
      options,
    );
  }
}

/**
 * By brand, not only by class: a code step's module may be loaded in its own module graph
 * (tsx), with its own copy of TransientError.
 */
export function isTransient(err: unknown): boolean {
  return err instanceof TransientError || (err as { transient?: unknown } | null)?.transient === true;
}
