import { FlotillaError } from '../core/errors.js';

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
