import { embeddedSource } from './embedded.js';
import { generatorSource } from './generator.js';

/** Every source kind. A new source is one file plus its entry here. */
export const sourceKinds = [embeddedSource, generatorSource] as const;
